"""Measure a model version's own history as its monitor would, and derive the limits it is judged with.

``calibrate`` runs the monitor's own measure step (``pipelines.monitoring.measure_window``) over windows of
the version's training snapshot: consecutive windows of ``monitoring.window_days`` of event time, or, for a
table without one, bootstrap windows of ``BOOTSTRAP_ROWS``. From those scores it sets

- per column, the drift limit: the mean plus ``SPREADS`` standard deviations of the column's drift score over
  the reference windows (NannyML's reference-chunk threshold), never below ``MIN_COLUMN_LIMIT``;
- the dataset-drift share: one column more than the most columns any reference window had over their
  limits, and at least ``MIN_DRIFTED_COLUMNS`` columns, so a normal window of the model's own history does
  not fire it;
- the prediction-drift limit, the same way as a column's;
- per metric, the champion's holdout value and its spread over bootstrap windows of the holdout: a window's
  difference from the baseline has the window's sampling noise and the holdout value's own, each scaling
  with one over the square root of its rows;
- the task type's estimator of performance before the labels land, when it has one (binary: confidence
  based, from the holdout's calibration; regression: the holdout's error per stratum of each key feature,
  the features the model relies on most by permutation importance on the holdout).

What it makes (``Calibration``) and how the config overrides it (``resolve``) are in
``pipelines.monitoring_limits``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.monitoring import PREDICTION, measure_window, prediction_values, scan_frame
from pipelines.monitoring_limits import Calibration, MetricBaseline, resolve

if TYPE_CHECKING:
    from pipelines.config import ModelConfig

SPREADS = 3.0  # mean + 3 std of the reference windows' scores
MIN_COLUMN_LIMIT = 0.02
MIN_DRIFTED_COLUMNS = 2
BOOTSTRAP_ROWS = 1000
BOOTSTRAP_WINDOWS = 30
BASELINE_RESAMPLES = 200
MIN_REFERENCE_WINDOWS = 5
DISTANCES = ("wasserstein", "jensenshannon")  # drift scores where higher means more drift


def reference_windows(cfg: ModelConfig, reference: pd.DataFrame, seed: int = 0) -> tuple[str, list[np.ndarray]]:
    """Row positions of the windows a normal stretch of the model's history is made of: consecutive windows
    of ``window_days`` of event time with at least ``min_rows`` rows, or bootstrap windows when the table has
    no event time (or too few such windows)."""
    policy = cfg.monitoring
    event_time = cfg.features.event_time
    if event_time and event_time in reference.columns:
        times = pd.to_datetime(reference[event_time], utc=True, errors="coerce")
        first = times.min()
        if pd.notna(first):
            days = ((times - first.normalize()).dt.days // policy.window_days).to_numpy()
            windows = [np.flatnonzero(days == d) for d in np.unique(days[~np.isnan(days)])]
            windows = [w for w in windows if len(w) >= policy.min_rows]
            if len(windows) >= MIN_REFERENCE_WINDOWS:
                return f"windows of {policy.window_days} day(s)", windows
    rng = np.random.default_rng(seed)
    size = min(len(reference), max(policy.min_rows, min(BOOTSTRAP_ROWS, len(reference) // 5)))
    return "bootstrap windows", [rng.choice(len(reference), size=size, replace=False)
                                 for _ in range(BOOTSTRAP_WINDOWS)]


def calibrate(cfg: ModelConfig, reference: pd.DataFrame, reference_scores: np.ndarray, holdout_truth: np.ndarray,
              holdout_scores: np.ndarray, classes: list[str] | None, threshold: float | None,
              seed: int = 0, holdout: pd.DataFrame | None = None,
              importance: dict[str, float] | None = None) -> Calibration:
    """Measure the version's own history as the monitor would and derive its limits (see the module's doc).

    ``reference`` is the training snapshot and ``reference_scores`` the version's logged scores on it;
    ``holdout_truth`` (as the task type's ``labels`` gives it) and ``holdout_scores`` are the holdout's;
    ``holdout`` its rows and ``importance`` the model's permutation importance per feature on them, for a
    task type whose estimator reads the features (``TaskType.estimate_reads_features``)."""
    from pipelines.drift import ReferenceProfile, profile_reference, without

    task = cfg.task_type
    frame = reference.reset_index(drop=True).assign(**{PREDICTION: np.asarray(reference_scores)})
    numeric = [*cfg.features.numeric, *([PREDICTION] if task.prediction_kind == "numeric" else [])]
    categorical = [*cfg.features.categorical, *([PREDICTION] if task.prediction_kind == "categorical" else [])]
    profile = profile_reference(frame.assign(**{PREDICTION: prediction_values(frame[PREDICTION],
                                                                              task.prediction_kind)}),
                                numeric, categorical)
    method, windows = reference_windows(cfg, frame, seed)
    uncalibrated = resolve(cfg.model_copy(update={"monitoring": cfg.monitoring.model_copy(update={
        "drift": cfg.monitoring.drift.model_copy(update={"thresholds": {}})})}), None)
    scores: dict[str, list[float]] = {}
    methods: dict[str, str] = {}
    predictions: list[float] = []
    for rows in windows:
        # Each window against the rest of the reference (leave one out): a window inside the reference is
        # closer to it than a new window of the same process would be.
        scan = scan_frame(cfg, frame.iloc[rows])
        rest = ReferenceProfile({c: without(p, scan.profile.columns[c]) for c, p in profile.columns.items()},
                                profile.rows - scan.rows)
        m = measure_window(cfg, scan, rest, None, None, None, uncalibrated)
        for column, score in m.drift_scores.items():
            if score is not None:
                scores.setdefault(column, []).append(float(score))
        methods.update(m.drift_methods)
        if m.prediction_drift is not None:
            predictions.append(float(m.prediction_drift))
    limits = {c: _limit(values) for c, values in scores.items() if methods.get(c) in DISTANCES}
    over = [sum(1 for c, values in scores.items() if c in limits and len(values) > i and values[i] >= limits[c])
            for i in range(len(windows))]
    judged = max(len(limits), 1)
    drift_share = min(1.0, max(max(over, default=0) + 1, MIN_DRIFTED_COLUMNS) / judged)
    baselines = metric_baselines(cfg, holdout_truth, holdout_scores, classes, threshold,
                                 rows=int(np.median([len(w) for w in windows])), seed=seed)
    estimator, note = task.fit_estimator(holdout_truth, holdout_scores, classes, cfg.margin_metric, seed=seed,
                                         holdout=holdout, importance=importance)
    return Calibration(method, len(windows), int(np.median([len(w) for w in windows])), limits,
                       {c: [round(v, 6) for v in values] for c, values in scores.items()}, drift_share,
                       _limit(predictions) if len(predictions) >= 2 else None, baselines, estimator, note,
                       cfg.monitoring.window_days)


def _limit(values: list[float]) -> float:
    scores = np.asarray(values, dtype=float)
    return round(float(max(scores.mean() + SPREADS * scores.std(ddof=1 if scores.size > 1 else 0),
                           MIN_COLUMN_LIMIT)), 6)


def metric_baselines(cfg: ModelConfig, truth: np.ndarray, scores: np.ndarray, classes: list[str] | None,
                     threshold: float | None, rows: int, seed: int = 0) -> dict[str, MetricBaseline]:
    """Per realized metric: the holdout's value and its spread over bootstrap windows of ``rows`` rows."""
    task = cfg.task_type
    truth, scores = np.asarray(truth), np.asarray(scores)
    if truth.size == 0:
        return {}
    rows = max(min(rows, truth.size), 2)
    whole = task.realized(truth, scores, classes, threshold)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(BASELINE_RESAMPLES):
        picked = rng.integers(0, truth.size, size=rows)
        for metric, value in task.realized(truth[picked], scores[picked], classes, threshold).items():
            if metric in task.metrics and value is not None and np.isfinite(value):
                draws.setdefault(metric, []).append(float(value))
    return {metric: MetricBaseline(metric, round(float(whole[metric]), 6), task.metrics[metric],
                                   round(float(np.std(values, ddof=1)), 6), rows, int(truth.size))
            for metric, values in draws.items()
            if len(values) > 1 and whole.get(metric) is not None and np.isfinite(whole[metric])}
