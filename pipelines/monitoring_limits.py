"""What a normal window looks like for one model version, and the limits its monitor judges with: the
``Calibration`` that ``pipelines.calibration.calibrate`` measures on the version's own history (per-column
drift limits, the dataset-drift share, the prediction-drift limit, each metric's baseline and the task type's
estimator of performance before the labels land), and ``resolve``, which combines it with the config: any
limit the config sets wins; without a calibration (a version registered without one) the config's values or
Evidently's defaults apply.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.task_types.estimation import ErrorProfile, Estimator

if TYPE_CHECKING:
    from pipelines.config import ModelConfig

DEFAULT_COLUMN_LIMIT = 0.1  # Evidently's default for both distances
DEFAULT_DRIFT_SHARE = 0.5  # Evidently's DataDriftPreset
DEFAULT_PREDICTION_LIMIT = 0.2


@dataclass(frozen=True)
class MetricBaseline:
    """The champion's holdout value of one metric, and how much a window of ``rows`` labelled rows varies."""

    metric: str
    value: float
    higher_is_better: bool
    spread: float  # standard deviation of the metric over bootstrap windows of ``rows`` holdout rows
    rows: int
    holdout_rows: int | None = None  # the rows the value itself was measured on

    def noise(self, rows: int) -> float:
        """The standard deviation of a window's metric at ``rows`` rows less the baseline's: the window's own
        sampling noise and the holdout value's (each ~ 1 / sqrt(rows))."""
        own = self.rows / max(rows, 1)
        baseline = self.rows / self.holdout_rows if self.holdout_rows else 0.0
        return self.spread * math.sqrt(own + baseline)

    def worse_by(self, value: float) -> float:
        """How much worse ``value`` is than the baseline (negative: better)."""
        return (self.value - value) if self.higher_is_better else (value - self.value)


@dataclass(frozen=True)
class Calibration:
    """A version's monitoring limits as measured on its own history (stored with the version)."""

    method: str  # how the reference windows were drawn
    windows: int
    window_rows: int  # median rows of a reference window
    column_limits: dict[str, float]
    column_scores: dict[str, list[float]]  # the reference windows' drift scores, per column
    drift_share: float
    prediction_limit: float | None
    baselines: dict[str, MetricBaseline] = field(default_factory=dict)
    estimator: Estimator | None = None
    estimate_note: str = ""
    window_days: int | None = None  # the monitoring window it was made for (None: made before this was kept)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        data = dict(data)
        data["baselines"] = {k: MetricBaseline(**v) for k, v in (data.get("baselines") or {}).items()}
        estimator = data.get("estimator")
        data["estimator"] = Estimator(**{**estimator, "profiles": [ErrorProfile(**p) for p in
                                                                    estimator.get("profiles") or []]}) \
            if estimator else None
        return cls(**data)

    def tags(self) -> dict[str, str]:
        """A summary for the MLflow version's tags (the whole calibration is the ``monitoring`` artifact)."""
        return {"monitoring_calibration": f"{self.windows} {self.method} of {self.window_rows} rows",
                "monitoring_drift_share": f"{self.drift_share:.3f}",
                **({"monitoring_prediction_limit": f"{self.prediction_limit:.4f}"}
                   if self.prediction_limit is not None else {}),
                "monitoring_estimate": self.estimate_note[:480]}


@dataclass(frozen=True)
class Limits:
    """What the monitoring rules judge a window with: the calibration, with the config's overrides."""

    column_limits: dict[str, float]
    drift_share: float
    prediction_limit: float
    key_features: dict[str, float]
    floors: dict[str, float]
    ceilings: dict[str, float]
    baselines: dict[str, MetricBaseline]
    performance_metrics: list[str]
    confidence_z: float
    practical_margin: float
    estimator: Estimator | None
    min_rows: int
    min_labelled_rows: int
    source: str  # "calibrated on <...>" or "config and Evidently's defaults"
    estimate_note: str = ""  # why the calibration made no estimator, when it made none

    def column_limit(self, column: str) -> float:
        return self.column_limits.get(column, DEFAULT_COLUMN_LIMIT)


def resolve(cfg: ModelConfig, calibration: Calibration | None) -> Limits:
    """The limits a window of ``cfg``'s champion is judged with: the config where it sets a value, else the
    champion's calibration, else Evidently's defaults."""
    drift = cfg.monitoring.drift
    performance = cfg.monitoring.performance
    columns = [*cfg.features.numeric, *cfg.features.categorical]
    calibrated = calibration.column_limits if calibration else {}
    column_limits = {c: drift.thresholds.get(c, calibrated.get(c, DEFAULT_COLUMN_LIMIT)) for c in columns}
    drift_share = drift.drift_share if drift.drift_share is not None else \
        (calibration.drift_share if calibration else DEFAULT_DRIFT_SHARE)
    prediction = drift.prediction_threshold if drift.prediction_threshold is not None else \
        (calibration.prediction_limit if calibration and calibration.prediction_limit is not None
         else DEFAULT_PREDICTION_LIMIT)
    metrics = performance.metrics if performance.metrics is not None else [cfg.margin_metric]
    baselines = {m: b for m, b in (calibration.baselines if calibration else {}).items() if m in metrics}
    source = (f"calibrated on {calibration.windows} {calibration.method} of {calibration.window_rows} rows"
              if calibration else "config and Evidently's defaults (the version has no calibration)")
    return Limits(column_limits, drift_share, prediction, dict(drift.key_features), cfg.realized_floors,
                  cfg.realized_ceilings, baselines, metrics, performance.confidence_z, performance.margin,
                  calibration.estimator if calibration else None, cfg.monitoring.min_rows,
                  performance.min_labelled_rows, source, calibration.estimate_note if calibration else "")
