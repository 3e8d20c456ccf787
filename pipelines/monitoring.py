"""Continuous monitoring, the pure steps: what a window of served predictions says, and what to do about it.

A *window* is the rows the prediction service logged for one interval of event time (or serving time, when
clients send no event time). For each window this module measures data drift and prediction drift against
the champion's training snapshot (``pipelines.drift``), data quality, and, once the delayed labels have
arrived, realized performance; then the retrain policy of the model config turns the history of windows
into one decision. No I/O here: ``pipelines.monitoring_tasks`` reads and writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from pipelines.config import ModelConfig, MonitoringConfig, training_dag_id
from pipelines.drift import ReferenceProfile, dataset_drift
from pipelines.metrics import json_safe
from pipelines.monitoring_limits import Limits

PREDICTION = "prediction"


def prediction_values(scores, kind: str) -> pd.Series:
    """The logged scores as drift measures them: numbers (a probability, a value), or the predicted class's
    index as a category."""
    series = pd.Series(scores)
    if kind == "categorical":
        return series.astype("Int64").astype(str).where(series.notna(), None)
    return series.astype("float64")


@dataclass
class WindowMeasurement:
    """One window's numbers, as stored in the ``monitoring_metrics`` table."""

    window_start: date
    window_end: date
    model_version: str | None
    rows: int
    drift_share: float | None = None
    dataset_drift: bool | None = None
    drift_scores: dict[str, float | None] = field(default_factory=dict)
    drift_methods: dict[str, str] = field(default_factory=dict)
    drifted_columns: list[str] = field(default_factory=list)
    prediction_drift: float | None = None
    missing_shares: dict[str, float] = field(default_factory=dict)
    quality_alerts: list[str] = field(default_factory=list)
    labelled_rows: int = 0
    pending_labels: int = 0
    realized: dict[str, float | None] = field(default_factory=dict)
    realized_slices: list[dict] = field(default_factory=list)
    estimated: dict[str, float | None] = field(default_factory=dict)  # before the labels land
    estimate_note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class WindowScan:
    """A window of served rows, reduced as it is read (in chunks: a 10M-row window never sits in memory as
    rows): per-column value counts (the window's own profile), missing counts, the rows needed to join the
    labels, and a uniform sample for Evidently's report."""

    rows: int
    profile: ReferenceProfile
    missing: dict[str, int]
    served: pd.DataFrame  # request_id, row_index, prediction and the slice columns
    sample: pd.DataFrame


def scan_chunks(cfg: ModelConfig, chunks, sample_rows: int, seed: int = 0) -> WindowScan:
    """Reduce an iterable of row frames (feature columns + ``prediction``, ``request_id``, ``row_index``)."""
    from pipelines.drift import ColumnProfile, combine, profile_reference

    prediction_kind = cfg.task_type.prediction_kind
    numeric = [*cfg.features.numeric, *([PREDICTION] if prediction_kind == "numeric" else [])]
    categorical = [*cfg.features.categorical, *([PREDICTION] if prediction_kind == "categorical" else [])]
    keep = ["request_id", "row_index", PREDICTION, *[c for c in cfg.features.slices if c in categorical + numeric]]
    rng = np.random.default_rng(seed)
    rows, missing = 0, dict.fromkeys(numeric + categorical, 0)
    # Chunk profiles in levels: eight of one level merge into one of the next, so each value is merged once
    # per level (log8 of the chunks), not once per merge as when the running total takes in every new chunk.
    levels: list[list[dict]] = [[]]
    served, sample = [], pd.DataFrame()
    for chunk in chunks:
        if chunk.empty:
            continue
        rows += len(chunk)
        part = profile_reference(chunk.assign(**{PREDICTION: prediction_values(chunk[PREDICTION], prediction_kind)}),
                                 numeric, categorical)
        levels[0].append(part.columns)
        for level, parts in enumerate(levels):
            if len(parts) < 8:
                break
            merged = {c: combine(*(p[c] for p in parts)) for c in parts[0]}
            parts.clear()
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(merged)
        for column in missing:
            missing[column] += int(chunk[column].isna().sum())
        served.append(chunk[keep].astype({c: "category" for c in keep if c in categorical}))
        # A uniform sample of the whole window: every row draws a key, the smallest keys are kept.
        keys = rng.random(len(chunk))
        picked = np.argpartition(keys, sample_rows)[:sample_rows] if len(chunk) > sample_rows else slice(None)
        keyed = chunk.iloc[picked].assign(_key=keys[picked])
        sample = pd.concat([sample, keyed]).nsmallest(sample_rows, "_key") if len(sample) else \
            keyed.nsmallest(sample_rows, "_key")
    parts = [p for level in levels for p in level]
    if parts:
        profile = {c: combine(*(p[c] for p in parts)) for c in parts[0]}
    else:
        profile = {c: ColumnProfile(c, "numeric" if c in numeric else "categorical", np.array([]),
                                    np.zeros(0, dtype=np.int64)) for c in numeric + categorical}
    served_frame = pd.concat(served, ignore_index=True) if served else pd.DataFrame(columns=keep)
    for column in served_frame.columns:
        if isinstance(served_frame[column].dtype, pd.CategoricalDtype):
            served_frame[column] = served_frame[column].astype(object)
    return WindowScan(rows, ReferenceProfile(profile, rows), missing, served_frame,
                      sample.drop(columns="_key", errors="ignore").reset_index(drop=True))


def scan_frame(cfg: ModelConfig, frame: pd.DataFrame, sample_rows: int = 1) -> WindowScan:
    """One in-memory frame of rows (feature columns and ``prediction``) as a window scan."""
    chunk = frame.reset_index(drop=True)
    if "request_id" not in chunk.columns:
        chunk = chunk.assign(request_id="", row_index=np.arange(len(chunk)))
    return scan_chunks(cfg, [chunk], sample_rows)


def data_quality(scan: WindowScan, columns: list[str], max_missing_share: float) -> tuple[dict, list[str]]:
    """Share of missing values per column; an alert for each column above ``max_missing_share``."""
    if scan.rows == 0:
        return {}, []
    shares = {c: scan.missing.get(c, scan.rows) / scan.rows for c in columns}
    alerts = [f"{c}: {share:.1%} of rows missing (limit {max_missing_share:.0%})"
              for c, share in shares.items() if share > max_missing_share]
    return shares, alerts


def join_labels(window: pd.DataFrame, labels: pd.DataFrame, target: str) -> tuple[pd.DataFrame, int]:
    """Served rows with their actual outcome, joined on (request id, row index). Rows whose label has not
    arrived are counted, never guessed. A label sent twice counts once (the last one landed wins)."""
    if labels.empty or window.empty:
        return window.iloc[0:0].assign(**{target: pd.Series(dtype=object)}), len(window)
    labels = labels.drop_duplicates(subset=["request_id", "row_index"], keep="last")
    joined = window.merge(labels[["request_id", "row_index", target]], on=["request_id", "row_index"], how="left")
    known = joined[joined[target].notna()]
    return known.reset_index(drop=True), int(joined[target].isna().sum())


def realized_performance(labelled: pd.DataFrame, cfg: ModelConfig, classes: list[str] | None,
                         threshold: float | None) -> tuple[dict, list[dict]]:
    """The task type's realized metrics (overall and per slice) on served rows whose outcome is known;
    ``classes`` and ``threshold`` are the champion's."""
    task = cfg.task_type
    if labelled.empty:
        return {}, []
    truth, scores = task.labels(labelled[cfg.features.target]), labelled[PREDICTION].to_numpy()
    slices = [c for c in cfg.features.slices if c in labelled.columns]
    metrics = {k: v for k, v in task.realized(truth, scores, classes, threshold).items() if k in task.metrics}
    return (json_safe(metrics),
            [json_safe(r) for r in task.slice_metrics(labelled, truth, scores, slices, classes, threshold,
                                                      realized=True)])


def measure_window(cfg: ModelConfig, scan: WindowScan, profile: ReferenceProfile, start: date | None,
                   end: date | None, model_version: str | None, limits: Limits) -> WindowMeasurement:
    """Drift of every feature and of the predictions, and data quality, for one window of served rows.

    ``profile`` was built from the champion's training snapshot (with the champion's own scores on it as
    ``prediction``); ``scan`` holds the window's counts; ``limits`` are the champion's."""
    from pipelines.drift import column_drift

    policy = cfg.monitoring
    columns = [*cfg.features.numeric, *cfg.features.categorical]
    measurement = WindowMeasurement(start, end, model_version, scan.rows)
    measurement.missing_shares, measurement.quality_alerts = data_quality(scan, columns, policy.max_missing_share)
    if scan.rows == 0:
        return measurement
    features = ReferenceProfile({c: p for c, p in profile.columns.items() if c != PREDICTION}, profile.rows)
    current = ReferenceProfile({c: p for c, p in scan.profile.columns.items() if c != PREDICTION}, scan.rows)
    summary = dataset_drift(features, current, limits.drift_share, policy.drift.methods, limits.column_limits)
    measurement.drift_share, measurement.dataset_drift = summary.share, summary.dataset_drift
    measurement.drift_scores = {c.column: None if np.isnan(c.score) else round(c.score, 6) for c in summary.columns}
    measurement.drift_methods = {c.column: c.method for c in summary.columns}
    measurement.drifted_columns = summary.drifted()
    if PREDICTION in profile.columns and PREDICTION in scan.profile.columns:
        method = "wasserstein" if cfg.task_type.prediction_kind == "numeric" else "jensenshannon"
        scored = column_drift(profile.columns[PREDICTION], scan.profile.columns[PREDICTION], method=method,
                              threshold=limits.prediction_limit)
        measurement.prediction_drift = None if np.isnan(scored.score) else round(scored.score, 6)
    return measurement


def estimate_performance(cfg: ModelConfig, m: WindowMeasurement, scores, limits: Limits,
                         profile: ReferenceProfile | None = None) -> None:
    """The champion's metric on the window estimated before the labels land from its logged scores (and the
    value counts of its features, ``profile``, the window scan's), when its task type can estimate and its
    estimator passed its check on the holdout."""
    estimator = limits.estimator
    if estimator is None:
        m.estimate_note = limits.estimate_note or f"not estimated: {cfg.task_type.estimate_unavailable}"
        return
    if not estimator.usable:
        m.estimate_note = f"not estimated: {estimator.note}"
        return
    value = cfg.task_type.estimate(np.asarray(scores, dtype=float), estimator, profile)
    if not np.isfinite(value):
        m.estimate_note = "not estimated: the window's values lie mostly where the holdout has too few rows to say"
        return
    m.estimated = json_safe({estimator.metric: value})
    m.estimate_note = estimator.note


@dataclass(frozen=True)
class Signal:
    name: str
    detail: str
    subject: str = ""  # the column or metric it is about, if one (the timeline marks that cell)


# The rules: each looks at one window's measurement with the champion's limits and returns its signals.
# ``scale`` < 1 lowers every drift limit: a window only *clears* a streak when no signal fires even at
# ``clear_ratio`` x the limits (hysteresis).
def dataset_drift_rule(m: WindowMeasurement, limits: Limits, scale: float) -> list[Signal]:
    if m.drift_share is None or m.drift_share < limits.drift_share * scale:
        return []
    return [Signal("dataset_drift", f"{m.drift_share:.0%} of columns drifted ({', '.join(m.drifted_columns)}); "
                   f"limit {limits.drift_share * scale:.0%}")]


def key_feature_drift_rule(m: WindowMeasurement, limits: Limits, scale: float) -> list[Signal]:
    return [Signal("key_feature_drift", f"{column} drift {m.drift_scores[column]:.3f} >= {limit * scale:.3f}", column)
            for column, limit in limits.key_features.items()
            if m.drift_scores.get(column) is not None and m.drift_scores[column] >= limit * scale]


def prediction_drift_rule(m: WindowMeasurement, limits: Limits, scale: float) -> list[Signal]:
    if m.prediction_drift is None or m.prediction_drift < limits.prediction_limit * scale:
        return []
    return [Signal("prediction_drift", f"prediction drift {m.prediction_drift:.3f} >= "
                   f"{limits.prediction_limit * scale:.3f}")]


def _worse_than_baseline(name: str, label: str, values: dict, rows: int, limits: Limits,
                         estimated: bool = False) -> list[Signal]:
    """A metric worse than the champion's holdout value by more than the window's sampling noise at ``rows``
    rows and by the practical margin; an ``estimated`` value also by more than the estimator's own error (as
    measured on held-out days of the holdout)."""
    found = []
    for metric, baseline in limits.baselines.items():
        value = values.get(metric)
        if value is None or rows < limits.min_labelled_rows:
            continue
        noise = limits.confidence_z * baseline.noise(rows)
        margin = limits.practical_margin * abs(baseline.value)
        own = limits.estimator.error_at(baseline.value) if estimated and limits.estimator else 0.0
        worse = baseline.worse_by(value)
        if worse > max(noise, margin) + own:
            found.append(Signal(name, f"{label} {metric} {value:.4g} against the champion's holdout "
                                f"{baseline.value:.4g}: worse by {worse:.4g}, beyond the noise of {rows} rows "
                                f"({noise:.3g}) and the margin ({margin:.3g})"
                                + (f", plus the estimate's own error ({own:.3g})" if own else ""), metric))
    return found


def performance_rule(m: WindowMeasurement, limits: Limits, scale: float) -> list[Signal]:
    found = _worse_than_baseline("performance", "realized", m.realized, m.labelled_rows, limits)
    if m.labelled_rows < limits.min_rows:
        return found  # the absolute bounds carry no noise band: they judge full windows only
    for metric, floor in limits.floors.items():
        value = m.realized.get(metric)
        if value is not None and value < floor:
            found.append(Signal("performance", f"realized {metric} {value:.3f} < floor {floor:.3f} "
                                f"({m.labelled_rows} labelled rows)", metric))
    for metric, ceiling in limits.ceilings.items():
        value = m.realized.get(metric)
        if value is not None and value > ceiling:
            found.append(Signal("performance", f"realized {metric} {value:.3f} > ceiling {ceiling:.3f} "
                                f"({m.labelled_rows} labelled rows)", metric))
    return found


def estimated_performance_rule(m: WindowMeasurement, limits: Limits, scale: float) -> list[Signal]:
    if m.labelled_rows >= limits.min_labelled_rows and any(k in m.realized for k in m.estimated):
        return []  # the labels have landed: the realized value judges
    return _worse_than_baseline("estimated_performance", "estimated", m.estimated, m.rows, limits, estimated=True)


def data_quality_rule(m: WindowMeasurement, limits: Limits, scale: float) -> list[Signal]:
    return [Signal("data_quality", alert, alert.split(":")[0]) for alert in m.quality_alerts]


RULES = {
    "dataset_drift": dataset_drift_rule,
    "key_feature_drift": key_feature_drift_rule,
    "prediction_drift": prediction_drift_rule,
    "performance": performance_rule,
    "estimated_performance": estimated_performance_rule,
    "data_quality": data_quality_rule,
}


def signals(m: WindowMeasurement, limits: Limits, scale: float = 1.0) -> list[Signal]:
    """Every rule's signals for this window (none for a window too small to judge)."""
    if m.rows < limits.min_rows:
        return []
    return [signal for rule in RULES.values() for signal in rule(m, limits, scale)]


def breaches(m: WindowMeasurement, cfg: ModelConfig, limits: Limits, scale: float = 1.0) -> list[Signal]:
    """The signals that count towards a retrain (the config's ``retrain.signals``)."""
    return [s for s in signals(m, limits, scale) if s.name in cfg.monitoring.retrain.signals]


@dataclass(frozen=True)
class WindowRecord:
    """What the decision needs to know of an earlier window (a row of the time series)."""

    window_start: date
    window_end: date
    breached: bool
    cleared: bool
    decision: str


@dataclass(frozen=True)
class Decision:
    action: str  # "retrain", "hold" (breaching, not yet or not allowed), "ok", "insufficient", "invalid_data"
    signals: list[Signal]
    streak: int
    reason: str

    @property
    def retrain(self) -> bool:
        return self.action == "retrain"

    def as_dict(self) -> dict:
        return {"action": self.action, "signals": [asdict(s) for s in self.signals], "streak": self.streak,
                "reason": self.reason}


def decide(cfg: ModelConfig, m: WindowMeasurement, history: list[WindowRecord], limits: Limits,
           failed_validation: str | None = None, landed: bool = True) -> Decision:
    """A window whose landed data failed validation (``failed_validation`` names the failed expectations) is
    ``invalid_data``, never ok, and starts nothing. Otherwise: retrain when the window breaches and so did
    the ``consecutive_windows - 1`` windows before it (a window that neither breaches nor clears holds the
    streak), unless a retrain was started less than ``cooldown_days`` of data time ago. Only windows since
    the last retrain count, so one long drift starts at most one retrain per cooldown; a window with no landed
    data (``landed`` False) holds instead: there is nothing new to retrain on."""
    policy: MonitoringConfig = cfg.monitoring
    found = signals(m, limits)
    if failed_validation is not None:
        return Decision("invalid_data", [Signal("validation", failed_validation), *found], 0,
                        f"the window's landed data failed validation: {failed_validation}. Next: re-land corrected "
                        f"data (mlops-loop land {cfg.name} FEED FILE --replace), accept the change in a new version of "
                        f"the suite {cfg.expectation_suite}, or retrain anyway (trigger {training_dag_id(cfg.name)})")
    if m.rows < policy.min_rows:
        return Decision("insufficient", [], 0, f"{m.rows} rows served in the window, fewer than {policy.min_rows}")
    retraining = [s for s in found if s.name in policy.retrain.signals]
    noted = [s for s in found if s.name not in policy.retrain.signals]
    if not retraining:
        return Decision("ok", noted, 0, ("no signal" if not noted else
                                         f"no retrain signal; noted: {'; '.join(s.detail for s in noted)}")
                        + _not_judged_yet(m, cfg, limits))
    streak = 1
    last_retrain: date | None = None
    cursor = m.window_start  # windows must follow each other: a gap in the record ends the streak
    for record in sorted(history, key=lambda r: r.window_end, reverse=True):
        if record.window_end >= m.window_end:
            continue
        if record.window_end < cursor:
            break
        cursor = min(cursor, record.window_start)
        if record.decision == "retrain":
            last_retrain = record.window_end
            break
        if record.breached:
            streak += 1
        elif record.cleared:
            break
    if last_retrain is None:
        last_retrain = max((r.window_end for r in history if r.decision == "retrain" and r.window_end < m.window_end),
                           default=None)
    summary = "; ".join(s.detail for s in retraining)
    if streak < policy.retrain.consecutive_windows:
        return Decision("hold", found, streak, f"breach {streak} of {policy.retrain.consecutive_windows} in a row: "
                        f"{summary}")
    if last_retrain is not None and m.window_end < last_retrain + timedelta(days=policy.retrain.cooldown_days):
        return Decision("hold", found, streak, f"cooldown: a retrain started for the window ending {last_retrain}, "
                        f"next allowed from {last_retrain + timedelta(days=policy.retrain.cooldown_days)}: {summary}")
    if not landed:
        return Decision("hold", found, streak, f"{streak} breaching windows in a row, but no data landed for the "
                        f"window to retrain on: {summary}")
    return Decision("retrain", found, streak, f"{streak} breaching windows in a row: {summary}")


def _not_judged_yet(m: WindowMeasurement, cfg: ModelConfig, limits: Limits) -> str:
    """What an ``ok`` could not look at yet: realized performance, when too few of the window's labels have
    landed and nothing estimated it."""
    if "performance" not in cfg.monitoring.retrain.signals or m.labelled_rows >= limits.min_labelled_rows \
            or any(k in m.estimated for k in limits.baselines):
        return ""
    return (f" (realized performance not judged yet: {m.labelled_rows} of {m.rows} rows labelled, fewer than "
            f"{limits.min_labelled_rows}; the labels still to land are judged with the next windows)")


def record_of(m: WindowMeasurement, cfg: ModelConfig, decision: str, limits: Limits) -> WindowRecord:
    """How this window will count in later decisions (too few rows: neither breaches nor clears)."""
    if m.rows < cfg.monitoring.min_rows:
        return WindowRecord(m.window_start, m.window_end, False, False, decision)
    return WindowRecord(m.window_start, m.window_end, bool(breaches(m, cfg, limits)),
                        not breaches(m, cfg, limits, scale=cfg.monitoring.retrain.clear_ratio), decision)
