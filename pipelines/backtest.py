"""The monitor's measure and decide steps over a stretch of history, in process (no stack): what the
monitoring DAG would have decided, window by window, for a champion trained on the reference.

Used to judge a policy (``benchmarks/monitoring_quality.py``) and by the drills that inject known shifts.
Labels are known ``label_delay_windows`` windows after a window is served: until then the window is judged
on drift and the estimate only, and the late-label refresh re-evaluates its rules once they land, as the
DAG does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from pipelines.config import ModelConfig
from pipelines.monitoring import (
    PREDICTION,
    Decision,
    WindowMeasurement,
    WindowRecord,
    decide,
    estimate_performance,
    measure_window,
    realized_performance,
    record_of,
    scan_frame,
)
from pipelines.monitoring_limits import Limits


@dataclass
class BacktestWindow:
    measurement: WindowMeasurement
    decision: Decision
    valid: bool


def windows_of(cfg: ModelConfig, frame: pd.DataFrame, start: date, end: date) -> list[tuple[date, date]]:
    """Consecutive windows of ``monitoring.window_days`` from ``start`` up to ``end``."""
    step = timedelta(days=cfg.monitoring.window_days)
    bounds, cursor = [], start
    while cursor + step <= end:
        bounds.append((cursor, cursor + step))
        cursor += step
    return bounds


def backtest(cfg: ModelConfig, reference: pd.DataFrame, reference_scores: np.ndarray, later: pd.DataFrame,
             later_scores: np.ndarray, limits: Limits, classes: list[str] | None, threshold: float | None,
             start: date, end: date, label_delay_windows: int = 0,
             invalid: set[tuple[date, date]] | None = None) -> list[BacktestWindow]:
    """Judge every window of ``later`` (rows with the event time, the features, the target; ``later_scores``
    the champion's logged scores for them) in [start, end) as the monitoring DAG would. ``invalid`` names
    windows whose landed data failed validation."""
    from pipelines.drift import profile_reference
    from pipelines.monitoring import prediction_values

    task = cfg.task_type
    numeric = [*cfg.features.numeric, *([PREDICTION] if task.prediction_kind == "numeric" else [])]
    categorical = [*cfg.features.categorical, *([PREDICTION] if task.prediction_kind == "categorical" else [])]
    profile = profile_reference(reference.assign(**{PREDICTION: prediction_values(reference_scores,
                                                                                  task.prediction_kind)}),
                                numeric, categorical)
    times = pd.to_datetime(later[cfg.features.event_time], utc=True)
    frame = later.assign(**{PREDICTION: np.asarray(later_scores)})
    history: list[WindowRecord] = []
    judged: list[BacktestWindow] = []
    for number, (lo, hi) in enumerate(windows_of(cfg, later, start, end)):
        rows = frame[(times >= pd.Timestamp(lo, tz="UTC")) & (times < pd.Timestamp(hi, tz="UTC"))]
        scan = scan_frame(cfg, rows)
        m = measure_window(cfg, scan, profile, lo, hi, "1", limits)
        estimate_performance(cfg, m, rows[PREDICTION], limits, scan.profile)
        labelled = rows if label_delay_windows == 0 else rows.iloc[0:0]
        _realize(cfg, m, labelled, len(rows), classes, threshold)
        valid = (lo, hi) not in (invalid or set())
        decision = decide(cfg, m, history, limits, None if valid else "injected: the window's data failed")
        history.append(record_of(m, cfg, decision.action, limits))
        judged.append(BacktestWindow(m, decision, valid))
        late = number - label_delay_windows
        if label_delay_windows and late >= 0:  # the labels of an earlier window land now
            earlier = judged[late]
            lo_late, hi_late = earlier.measurement.window_start, earlier.measurement.window_end
            rows_late = frame[(times >= pd.Timestamp(lo_late, tz="UTC")) & (times < pd.Timestamp(hi_late, tz="UTC"))]
            _realize(cfg, earlier.measurement, rows_late, len(rows_late), classes, threshold)
            history[late] = record_of(earlier.measurement, cfg, earlier.decision.action, limits)
    return judged


def _realize(cfg: ModelConfig, m: WindowMeasurement, labelled: pd.DataFrame, rows: int, classes, threshold) -> None:
    m.labelled_rows, m.pending_labels = len(labelled), rows - len(labelled)
    m.realized, m.realized_slices = realized_performance(labelled, cfg, classes, threshold)
