"""The monitoring timeline: drift, realized performance and the champion over time, with every retrain.

Reads the ``monitoring_metrics`` rows (``pipelines.monitoring_store``) and the retrain outcomes, and
renders a PNG and a self-contained HTML page (the PNG inline, and the tables).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.config import ModelConfig


@dataclass(frozen=True)
class Retrain:
    window_end: str
    reason: str
    run_id: str
    run_state: str        # the training run's state in Airflow
    gate_decision: str    # approved / rejected / (none: the run stopped before the gate)
    gate_summary: str
    version: str | None   # the registered version, when approved

    @classmethod
    def started(cls, window_end, reason: str, run_id: str, run_state: str, made) -> Retrain:
        """The retrain a window started, with what it made (a ``training_outcomes`` outcome; None: not known)."""
        return cls(str(window_end), reason, run_id, run_state, made.gate_decision if made else "",
                   made.gate_summary[:300] if made else "", made.version if made else None)


def windows_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["window_end"] = pd.to_datetime(frame["window_end"])
    frame["details"] = frame["details"].map(lambda d: json.loads(d) if isinstance(d, str) else (d or {}))
    return frame.sort_values("window_end").reset_index(drop=True)


def realized(windows: pd.DataFrame, metric: str) -> pd.Series:
    """One realized metric per window (the task type's metrics are kept in each window's details; the primary
    metric's is also the row's ``realized`` column)."""
    values = pd.to_numeric(windows["details"].map(lambda d: (d.get("realized") or {}).get(metric)), errors="coerce")
    return values.fillna(_of_metric(windows, "realized", metric))


def primary_metric(windows: pd.DataFrame) -> str | None:
    """The metric the newest window was judged on (its realized, estimated and baseline columns are of it)."""
    named = windows["metric"].dropna() if "metric" in windows.columns else pd.Series(dtype=object)
    return str(named.iloc[-1]) if len(named) else None


def estimated(windows: pd.DataFrame, metric: str) -> pd.Series:
    """The metric estimated from each window's scores before its labels landed."""
    return _of_metric(windows, "estimated", metric)


def baseline_band(windows: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series]:
    """The champion's holdout value each window was judged against, and how far from it the window may be
    (its noise and the practical margin) before the performance rules call it worse."""
    band = pd.to_numeric(windows["details"].map(lambda d: d.get("baseline_band")), errors="coerce").fillna(0.0)
    return _of_metric(windows, "baseline", metric), band


def drift_share_limit(windows: pd.DataFrame, default: float | None = None) -> pd.Series:
    """The champion's own dataset-drift limit, as each window was judged with it (calibrated per version, or
    the config's ``default``)."""
    limit = pd.to_numeric(windows["details"].map(lambda d: d.get("drift_share_limit")), errors="coerce")
    return limit.fillna(default) if default is not None else limit


def champion_changes(windows: pd.DataFrame) -> list[tuple[pd.Timestamp, str, str]]:
    """Each window whose champion differs from the window before's: (its end, the version before, the new one)."""
    changes = []
    previous = None
    for end, version in zip(windows["window_end"], windows["model_version"], strict=True):
        version = None if pd.isna(version) else str(version)
        if previous and version and version != previous:
            changes.append((end, previous, version))
        previous = version or previous
    return changes


def _of_metric(windows: pd.DataFrame, column: str, metric: str) -> pd.Series:
    """A primary-metric column, where the row's metric is ``metric`` (a row of another metric has none)."""
    if column not in windows.columns:
        return pd.Series(float("nan"), index=windows.index)
    values = pd.to_numeric(windows[column], errors="coerce")
    return values.where(windows["metric"] == metric) if "metric" in windows.columns else values


def plot(cfg: ModelConfig, windows: pd.DataFrame, retrains: list[Retrain]) -> bytes:
    """Panels over window end date: drift share, key features' drift (when the config names key features),
    realized metrics against their floors and ceilings, champion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policy = cfg.monitoring
    key_features = policy.drift.key_features
    heights = [2.2, 2, 2, 1] if key_features else [2.2, 2, 1]
    figure, axes = plt.subplots(len(heights), 1, figsize=(12, 2.4 * len(heights) + 0.4), sharex=True,
                                gridspec_kw={"height_ratios": heights})
    drift_ax, perf_ax, version_ax = axes[0], axes[-2], axes[-1]
    when = windows["window_end"]
    drift_ax.plot(when, windows["drift_share"], color="tab:red", marker="o", ms=3, label="drifted share of columns")
    limit = drift_share_limit(windows, policy.drift.drift_share)
    if limit.notna().any():
        drift_ax.step(when, limit, where="mid", color="tab:red", ls="--", lw=0.8, label="dataset drift limit")
    drift_ax.set_ylabel("drift share")
    drift_ax.set_ylim(0, 1)
    drift_ax.legend(loc="center left", fontsize=8)
    if key_features:
        key_ax = axes[1]
        for (column, limit), color in zip(key_features.items(), ["tab:orange", "tab:purple", "tab:brown", "tab:olive"],
                                          strict=False):
            scores = pd.to_numeric(windows["details"].map(lambda d, c=column: (d.get("drift_scores") or {}).get(c)))
            key_ax.plot(when, scores / limit, color=color, marker="o", ms=3,
                        label=f"{column} drift / its limit {limit:g}")
        key_ax.axhline(1.0, color="grey", ls="--", lw=0.8, label="key feature limit")
        key_ax.set_ylabel("key feature drift\n(1 = limit)")
        key_ax.legend(loc="center left", fontsize=8)
    bounds = [(m, "floor", v) for m, v in cfg.realized_floors.items()] + \
        [(m, "ceiling", v) for m, v in cfg.realized_ceilings.items()]
    for (metric, kind, bound), color in zip(bounds, ["tab:blue", "tab:cyan", "tab:gray", "tab:pink"], strict=False):
        perf_ax.plot(when, realized(windows, metric), color=color, marker="o", ms=3, label=f"realized {metric}")
        perf_ax.axhline(bound, color=color, ls="--", lw=0.8, label=f"{metric} {kind} {bound}")
    metric = cfg.margin_metric
    baseline, band = baseline_band(windows, metric)
    if baseline.notna().any():
        perf_ax.step(when, baseline, where="mid", color="black", lw=0.8, label=f"champion's holdout {metric}")
        perf_ax.fill_between(when, baseline - band, baseline + band, step="mid", color="grey", alpha=0.2,
                             label="its noise and margin")
        if metric not in [m for m, _, _ in bounds]:
            perf_ax.plot(when, realized(windows, metric), color="tab:blue", marker="o", ms=3,
                         label=f"realized {metric}")
    if estimated(windows, metric).notna().any():
        perf_ax.plot(when, estimated(windows, metric), color="tab:purple", ls=":",
                     marker="x", ms=3, label=f"estimated {metric} (before labels)")
    perf_ax.set_ylabel("performance")
    perf_ax.legend(loc="lower left", fontsize=8)
    versions = pd.to_numeric(windows["model_version"], errors="coerce")
    version_ax.step(when, versions, where="mid", color="tab:green")
    version_ax.set_ylabel("champion")
    version_ax.yaxis.get_major_locator().set_params(integer=True)
    for retrain in retrains:
        x = pd.Timestamp(retrain.window_end)
        color = "tab:green" if retrain.gate_decision == "approved" else "tab:grey"
        for ax in axes:
            ax.axvline(x, color=color, lw=1.2, alpha=0.7)
        outcome = f"v{retrain.version}" if retrain.version else (retrain.gate_decision or retrain.run_state)
        label = f"retrain → {outcome}"
        drift_ax.annotate(label, (x, 0.97), rotation=90, va="top", ha="right", fontsize=7, color=color)
    drift_ax.set_title(f"{cfg.name}: monitoring timeline ({len(windows)} windows, {len(retrains)} retrains)")
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def render_html(cfg: ModelConfig, windows: pd.DataFrame, retrains: list[Retrain], png: bytes) -> str:
    def table(headers: list[str], rows: list[list]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                       for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def number(value, digits=3):
        return None if value is None or pd.isna(value) else f"{value:.{digits}f}"

    retrain_rows = [[r.window_end, r.reason, r.run_id, r.run_state, r.gate_decision, r.gate_summary, r.version]
                    for r in retrains]
    metric = cfg.margin_metric
    window_rows = [[str(w.window_start), str(w.window_end.date()), w.model_version, w.rows, number(w.drift_share, 2),
                    number(w.prediction_drift), number((w.details.get("realized") or {}).get(metric)),
                    number(getattr(w, "estimated", None)), number(getattr(w, "baseline", None)), w.labelled_rows,
                    w.pending_labels, w.data_valid, w.decision, w.reason]
                   for w in windows.itertuples()]
    name = html.escape(cfg.name)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{name} monitoring timeline</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:12px;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}}th{{background:#eee}}</style></head>
<body><h1>{name}: monitoring timeline</h1>
<img alt="timeline" src="data:image/png;base64,{base64.b64encode(png).decode()}" style="max-width:100%">
<h2>Retrains ({len(retrains)})</h2>
{table(["window end", "reason", "training run", "run state", "gate", "gate summary", "new version"], retrain_rows)}
<h2>Windows ({len(windows)})</h2>
{table(["start", "end", "champion", "rows", "drift share", "prediction drift", f"realized {metric}",
        f"estimated {metric}", f"holdout {metric}", "labelled", "pending labels", "data valid", "decision",
        "reason"], window_rows)}
</body></html>"""


def write_timeline(cfg: ModelConfig, windows: pd.DataFrame, retrains: list[Retrain], folder: Path) -> dict[str, Path]:
    from pipelines.storage import write_bytes_atomic, write_text_atomic

    png = plot(cfg, windows, retrains)
    png_path = write_bytes_atomic(png, folder / "timeline.png")
    html_path = write_text_atomic(render_html(cfg, windows, retrains, png), folder / "timeline.html")
    retrains_path = write_text_atomic(
        "| window end | reason | run | state | gate | new version |\n|---|---|---|---|---|---|\n" + "".join(
            f"| {r.window_end} | {r.reason} | {r.run_id} | {r.run_state} | {r.gate_decision} | {r.version or ''} |\n"
            for r in retrains), folder / "retrains.md")
    return {"png": png_path, "html": html_path, "retrains": retrains_path}
