"""What a task type's estimator of performance before the labels land is made of: fitted on the holdout by
``TaskType.fit_estimator``, kept with the version's monitoring calibration, read by ``TaskType.estimate``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ErrorProfile:
    """The holdout's mean squared error in each stratum of one feature: numeric values cut at ``edges``
    (stratum i holds values in [edges[i-1], edges[i])), or one stratum per value of ``categories``."""

    feature: str
    kind: str  # "numeric" or "categorical"
    edges: list[float]
    categories: list[str]
    mse: list[float | None]  # None: too few holdout rows in the stratum to say
    importance: float  # the feature's permutation importance on the holdout
    check_error: float  # relative error of the estimate on held-out days (see ``Regression.fit_estimator``)


@dataclass(frozen=True)
class Estimator:
    """Performance estimation before the labels land, fitted on the holdout: confidence based (the holdout's
    calibration of the logged scores, a monotone map as isotonic regression fits it) or, for a regression,
    the holdout's error per stratum of its key features; and how well the estimate matched the holdout."""

    metric: str
    calibration_x: list[float]
    calibration_y: list[float]
    holdout_error: float  # error of the estimate on held-out parts of the holdout
    usable: bool
    note: str
    profiles: list[ErrorProfile] = field(default_factory=list)
    relative_error: bool = False  # holdout_error is a share of the metric's value (else in its units)

    def error_at(self, value: float) -> float:
        """How far off the estimate may be, in the metric's units, around ``value``."""
        return self.holdout_error * abs(value) if self.relative_error else self.holdout_error
