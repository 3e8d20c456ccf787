"""The monitoring page's chart, drawn on the server as inline SVG: the model's primary metric per window,
realized (once the labels landed) and estimated (before), against the champion's baseline band (its holdout
value, give or take the window's noise and the practical margin); the drifted share of columns per window
against the champion's dataset-drift limit; every retrain the monitor started (green when it registered a
version) and every change of champion.

The series come from ``pipelines.timeline`` (the replay report's PNG draws the same ones). The SVG needs no
script and no ``<style>`` (the page's stylesheet colours it by class; its lines carry their colours as attributes
too), so it renders under the page's Content-Security-Policy; every text from the store (model name, metric,
reasons, versions) is escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import pandas as pd
from markupsafe import Markup

from pipelines import timeline
from pipelines.operator_ui.monitoring_view import NO_VERDICT
from pipelines.timeline import Retrain

WIDTH, HEIGHT = 960, 360
LEFT, RIGHT = 64, 16  # room for the y axes' labels
PERFORMANCE = (34, 190)  # the panels' top and bottom, in SVG units
DRIFT = (214, 310)
AXIS = 328  # the dates' baseline


@dataclass(frozen=True)
class Scale:
    """A value range mapped onto a panel's height (SVG's y grows downwards)."""

    low: float
    high: float
    top: float
    bottom: float

    def __call__(self, value: float) -> float:
        return self.bottom - (value - self.low) / (self.high - self.low) * (self.bottom - self.top)


def monitoring_chart(model: str, windows: pd.DataFrame, retrains: list[Retrain],
                     default_drift_limit: float | None = None) -> Markup:
    """The chart of ``windows`` (``timeline.windows_frame``: oldest first) as a ``<figure>`` holding the SVG and
    its key; an empty string when no window has been monitored."""
    if windows.empty:
        return Markup("")
    metric = timeline.primary_metric(windows)
    ends = list(windows["window_end"])
    xs = _x_positions(ends)
    edges = _edges(xs)
    realized = timeline.realized(windows, metric) if metric else _missing(windows)
    estimated = timeline.estimated(windows, metric) if metric else _missing(windows)
    baseline, band = timeline.baseline_band(windows, metric) if metric else (_missing(windows), _missing(windows))
    drift = pd.to_numeric(windows["drift_share"], errors="coerce")
    limit = timeline.drift_share_limit(windows, default_drift_limit)
    signals = [{s.get("name") for s in d.get("signals") or [] if isinstance(s, dict)} for d in windows["details"]]
    performance = _performance_scale(realized, estimated, baseline, band)
    share = Scale(0.0, 1.0, *DRIFT)
    shown = escape(metric or "metric")
    values = {"realized": realized.tolist(), "estimated": estimated.tolist(), "baseline": baseline.tolist(),
              "band": band.tolist(), "drift": drift.tolist(), "limit": limit.tolist()}

    parts = [f'<rect class="panel" x="{LEFT}" y="{PERFORMANCE[0]}" width="{WIDTH - LEFT - RIGHT}" '
             f'height="{PERFORMANCE[1] - PERFORMANCE[0]}"/>',
             f'<rect class="panel" x="{LEFT}" y="{DRIFT[0]}" width="{WIDTH - LEFT - RIGHT}" '
             f'height="{DRIFT[1] - DRIFT[0]}"/>',
             f'<text class="panel-title" x="{LEFT}" y="{PERFORMANCE[0] - 8}">{shown}: realized and estimated '
             f'against the champion\'s baseline band</text>',
             f'<text class="panel-title" x="{LEFT}" y="{DRIFT[0] - 6}">drifted share of columns against its '
             f'limit</text>']
    if performance:
        parts += _y_axis(performance, _ticks(performance.low, performance.high))
        band_boxes = _steps(edges, values["baseline"], values["band"], performance)
        parts += [_path("band", band_boxes, fill="#8c959f", fill_opacity="0.25"),
                  _path("baseline", _levels(edges, values["baseline"], performance), stroke="#1f2328"),
                  _path("realized line", _line(xs, values["realized"], performance), stroke="#0969da"),
                  _path("estimated line", _line(xs, values["estimated"], performance), stroke="#8250df")]
    else:
        parts.append(f'<text class="empty" x="{LEFT + 12}" y="{(PERFORMANCE[0] + PERFORMANCE[1]) // 2}">no realized '
                     f'or estimated {shown} yet: the windows\' labels have not landed</text>')
    parts += _y_axis(share, [0.0, 0.25, 0.5, 0.75, 1.0])
    parts += [_path("limit", _levels(edges, values["limit"], share), stroke="#cf222e"),
              _path("drift line", _line(xs, values["drift"], share), stroke="#bc4c00")]
    parts += _x_axis(ends, xs)

    days = [end.date() for end in ends]
    said = zip(windows["window_start"].tolist(), days, windows["model_version"].tolist(),
               windows["decision"].tolist(), strict=True)
    for i, (start, end, version, decision) in enumerate(said):
        at = {kind: series[i] for kind, series in values.items()}
        marks = [f'<rect class="hover" x="{edges[i]:.1f}" y="{PERFORMANCE[0]}" width="{edges[i + 1] - edges[i]:.1f}" '
                 f'height="{DRIFT[1] - PERFORMANCE[0]}"/>']
        if performance:
            marks += _point("realized", xs[i], at["realized"], performance, "performance" in signals[i])
            marks += _point("estimated", xs[i], at["estimated"], performance, "estimated_performance" in signals[i])
        marks += _point("drift", xs[i], at["drift"], share, "dataset_drift" in signals[i])
        summary = _window_summary(f"{start} → {end}", version, decision, metric, at)
        parts.append(f'<g class="window" data-end="{end}"><title>{escape(summary)}</title>{"".join(marks)}</g>')

    x_of = dict(zip(days, xs, strict=True))
    drawn = [(r, x_of[pd.Timestamp(r.window_end).date()]) for r in retrains
             if pd.Timestamp(r.window_end).date() in x_of]
    for retrain, x in drawn:
        outcome = f"registered v{retrain.version}" if retrain.version else (
            f"gate {retrain.gate_decision}" if retrain.gate_decision else retrain.run_state or "no version registered")
        said = f"retrain after the window ending {retrain.window_end} ({retrain.reason}): {outcome}"
        going = not retrain.version and retrain.run_state == NO_VERDICT
        label = f"v{retrain.version}" if retrain.version else "…" if going else "✗"
        state = "registered" if retrain.version else "running" if going else "not-registered"
        parts.append(f'<g class="retrain {state}" '
                     f'data-end="{escape(str(retrain.window_end))}"><title>{escape(said)}</title>'
                     f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PERFORMANCE[0]}" y2="{DRIFT[1]}" stroke="#8c959f"/>'
                     f'<text x="{x + 3:.1f}" y="{PERFORMANCE[0] + 11}">↻ {escape(label)}</text></g>')
    changes = timeline.champion_changes(windows)
    for end, before, after in changes:
        said = f"champion v{before} → v{after} from the window ending {end.date()}"
        parts.append(f'<g class="champion" data-end="{end.date()}"><title>{escape(said)}</title>'
                     f'<path d="M{x_of[end.date()]:.1f} {DRIFT[1] + 1}l-5 8h10z"/></g>')

    title = (f"{model}: {metric or 'metric'} per window against the champion's baseline band, drift share "
             f"against its limit, {len(drawn)} retrains")
    description = (f"{len(windows)} windows ending {ends[0].date()} to {ends[-1].date()}; {len(drawn)} retrains "
                   f"({sum(bool(r.version) for r, _ in drawn)} registered a version); {len(changes)} changes of "
                   f"champion. The table below holds every window's numbers.")
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-labelledby="chart-title chart-description"><title id="chart-title">{escape(title)}</title>'
           f'<desc id="chart-description">{escape(description)}</desc>{"".join(parts)}</svg>')
    key = _key(shown, realized, estimated, baseline, limit, [r for r, _ in drawn], changes)
    return Markup(f'<figure class="chart">{svg}<figcaption>{key}</figcaption></figure>')


def _missing(windows: pd.DataFrame) -> pd.Series:
    return pd.Series(float("nan"), index=windows.index)


def _x_positions(ends: list[pd.Timestamp]) -> list[float]:
    """Each window's end on the time axis (one window: in the middle)."""
    first, last = ends[0], ends[-1]
    span = (last - first).total_seconds()
    if span <= 0:
        return [(LEFT + WIDTH - RIGHT) / 2] * len(ends)
    width = WIDTH - LEFT - RIGHT - 16
    return [LEFT + 8 + (end - first).total_seconds() / span * width for end in ends]


def _edges(xs: list[float]) -> list[float]:
    """Where each window's step begins and ends: halfway to its neighbours (the ends: as far out as inside)."""
    if len(xs) == 1:
        return [xs[0] - 8, xs[0] + 8]
    middles = [(a + b) / 2 for a, b in zip(xs, xs[1:], strict=False)]
    return [max(LEFT, xs[0] - (middles[0] - xs[0])), *middles, min(WIDTH - RIGHT, xs[-1] + (xs[-1] - middles[-1]))]


def _performance_scale(*series: pd.Series) -> Scale | None:
    realized, estimated, baseline, band = series
    values = pd.concat([realized, estimated, baseline - band, baseline + band]).dropna()
    if values.empty:
        return None
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.08 or max(abs(high) * 0.05, 0.01)
    return Scale(low - pad, high + pad, *PERFORMANCE)


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round values between ``low`` and ``high``, about ``count`` of them."""
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.ceil(low / step) * step
    return [round(first + k * step, 10) for k in range(int((high - first) / step) + 1)]


def _y_axis(scale: Scale, ticks: list[float]) -> list[str]:
    return [f'<g class="tick"><line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{scale(t):.1f}" y2="{scale(t):.1f}"/>'
            f'<text x="{LEFT - 6}" y="{scale(t) + 4:.1f}" text-anchor="end">{t:g}</text></g>' for t in ticks]


def _x_axis(ends: list[pd.Timestamp], xs: list[float], count: int = 7) -> list[str]:
    """About ``count`` dates under the panels, the first and last window's end among them."""
    picked = sorted({round(k * (len(ends) - 1) / (count - 1)) for k in range(count)}) if len(ends) > 1 else [0]
    anchors = {0: "start", len(ends) - 1: "end"} if len(ends) > 1 else {}
    return [f'<text class="date" x="{xs[i]:.1f}" y="{AXIS}" text-anchor="{anchors.get(i, "middle")}">'
            f'{ends[i].date()}</text>' for i in picked]


def _path(kind: str, d: str, fill: str = "none", **attributes: str) -> str:
    """A path of the chart, coloured by its attributes too (a page without the stylesheet still reads)."""
    drawn = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    return f'<path class="{kind}" fill="{fill}"{drawn} d="{d}"/>'


def _line(xs: list[float], values: list[float], scale: Scale) -> str:
    """A line through the windows' values, broken where a window has none."""
    path, drawing = [], False
    for x, value in zip(xs, values, strict=True):
        if not _known(value):
            drawing = False
            continue
        path.append(f"{'L' if drawing else 'M'}{x:.1f} {scale(value):.1f}")
        drawing = True
    return "".join(path)


def _levels(edges: list[float], values: list[float], scale: Scale) -> str:
    """One level per window, across its step (a baseline, a limit)."""
    return "".join(f"M{edges[i]:.1f} {scale(v):.1f}H{edges[i + 1]:.1f}" for i, v in enumerate(values) if _known(v))


def _steps(edges: list[float], middle: list[float], half: list[float], scale: Scale) -> str:
    """One box per window, ``middle`` give or take ``half``, across its step (the baseline band)."""
    return "".join(f"M{edges[i]:.1f} {scale(m + h):.1f}H{edges[i + 1]:.1f}V{scale(m - h):.1f}H{edges[i]:.1f}Z"
                   for i, (m, h) in enumerate(zip(middle, half, strict=True)) if _known(m))


def _point(kind: str, x: float, value: float, scale: Scale, raised: bool) -> list[str]:
    if not _known(value):
        return []
    if raised:
        return [f'<circle class="{kind} signal" cx="{x:.1f}" cy="{scale(value):.1f}" r="4"/>']
    return [f'<circle class="{kind}" cx="{x:.1f}" cy="{scale(value):.1f}" r="2.5"/>']


def _window_summary(window: str, version, decision: str, metric: str | None, at: dict[str, float]) -> str:
    """The window's numbers, as its tooltip says them."""
    said = [window + (f", champion v{version}" if _known(version) else "")]
    if _known(at["realized"]):
        said.append(f"realized {metric} {at['realized']:.4f}")
    if _known(at["estimated"]):
        said.append(f"estimated {metric} {at['estimated']:.4f}")
    if _known(at["baseline"]):
        said.append(f"baseline {at['baseline']:.4f} ± {at['band']:.4f}")
    if _known(at["drift"]):
        limit = f" (limit {at['limit']:.2f})" if _known(at["limit"]) else ""
        said.append(f"drift share {at['drift']:.2f}{limit}")
    said.append(f"decision {decision}")
    return "; ".join(said)


def _known(value) -> bool:
    """Whether a stored value is there (not None, not NaN)."""
    return value is not None and value == value


def _key(metric: str, realized, estimated, baseline, limit, retrains, changes) -> str:
    """The chart's key: only what it draws (``metric`` is escaped already)."""
    keys = [("realized", f"realized {metric}", realized.notna().any()),
            ("estimated", f"estimated {metric} (before the labels)", estimated.notna().any()),
            ("band", "champion's baseline ± noise and margin", baseline.notna().any()),
            ("drift", "drift share", True), ("limit", "drift limit", limit.notna().any()),
            ("signal", "a signal raised", True),
            ("retrain registered", "retrain that registered a version", any(r.version for r in retrains)),
            ("retrain not-registered", "retrain that did not", any(not r.version for r in retrains)),
            ("champion", "champion changed", bool(changes))]
    return " ".join(f'<span class="key {kind}">{text}</span>' for kind, text, drawn in keys if drawn)
