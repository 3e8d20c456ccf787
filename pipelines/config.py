"""One typed configuration per model, loaded from YAML in ``include/models``.

Defaults live here; the YAML holds only the knobs people change. This module is imported by DAG
files at parse time, so it must import nothing heavier than pydantic, PyYAML and the task-type registry
(``pipelines.task_types``, as light: the names of the task types a config may take come from it).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.metric_tests import TEST_OF_METRIC
from pipelines.settings import PROJECT_ROOT as PROJECT_ROOT  # the project root, for its importers
from pipelines.settings import stack_settings
from pipelines.task_types import TASK_TYPES, TaskType, task_type_named
from pipelines.task_types.labels import label_text


def include_dir() -> Path:
    """Model configs (``models/``) and their suites (``expectations/``): ``$MLOPS_INCLUDE_DIR``, else the
    project's ``include/``. Read on each call, so a process can point at another folder."""
    return stack_settings().include_dir.resolve()

ColumnType = Literal["int", "float", "string", "datetime"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Strict):
    """A source of raw files in the landing zone: one file per day named ``YYYY-MM-DD.{csv,parquet}``."""

    name: str
    columns: dict[str, ColumnType] = Field(description="Every column a landed file must have, with its type.")
    key: list[str] = Field(default_factory=list, description="Columns that identify one record; duplicates "
                           "are dropped on ingest. Empty: rows are kept as they are.")
    max_duplicate_share: float = Field(0.1, ge=0, le=1, description="A batch where more rows than this share "
                                       "repeat a key is refused (a file landed twice under two days' names).")

    @model_validator(mode="after")
    def _key_in_columns(self) -> FeedConfig:
        missing = [c for c in self.key if c not in self.columns]
        if missing:
            raise ValueError(f"feed {self.name!r}: key columns {missing} are not in its columns")
        return self


class FeaturesConfig(_Strict):
    """The model's inputs and its target. ``builder`` turns the feeds of one interval into one row per
    example; without one, the rows of the model's single feed are the examples."""

    builder: str | None = Field(None, description="Dotted path to a function(feeds: dict[str, DataFrame]) -> "
                                "DataFrame; None: the single feed's rows are the examples.")
    numeric: list[str]
    categorical: list[str] = Field(default_factory=list)
    target: str
    event_time: str | None = Field(None, description="Timestamp column that orders examples: a time-based "
                                   "split. None: a seeded random split (stratified for classifiers).")
    example_id: str | None = Field(None, description="Column naming one example: the training snapshot keeps "
                                   "its latest batch. Default: a column called example_id, if there is one.")
    slices: list[str] = Field(default_factory=list, description="Columns whose values are evaluated apart.")
    classes: list[str] | None = Field(None, description="Classifiers: every label value the target may hold "
                                      "(a label outside it is refused at validate).")
    positive_class: str | None = Field(None, description="Binary: the class whose probability is the score. "
                                       "Default: 1, true or yes, when the labels are such a pair.")

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, value: Any) -> Any:
        return [label_text(v) for v in value] if isinstance(value, list) else value

    @field_validator("positive_class", mode="before")
    @classmethod
    def _positive_as_text(cls, value: Any) -> Any:
        return None if value is None else label_text(value)

    @property
    def inputs(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @model_validator(mode="after")
    def _disjoint(self) -> FeaturesConfig:
        overlap = set(self.numeric) & set(self.categorical)
        if overlap:
            raise ValueError(f"columns {sorted(overlap)} are both numeric and categorical")
        if self.target in self.inputs:
            raise ValueError(f"target {self.target!r} must not be an input feature")
        if self.positive_class is not None and self.classes is not None and self.positive_class not in self.classes:
            raise ValueError(f"positive_class {self.positive_class!r} is not one of classes {self.classes}")
        return self


class SplitConfig(_Strict):
    """With an event time: train on the past, select on the next days, hold out the latest days. Without
    one: a seeded random split by fractions, stratified for classifiers."""

    holdout_days: int = Field(14, ge=1)
    validation_days: int = Field(7, ge=1)
    training_window_days: int | None = Field(
        None, ge=1, description="Look back at most this many days from the interval end; None = all history."
    )
    validation_fraction: float = Field(0.15, gt=0, lt=0.5, description="Random split: share of validation rows.")
    holdout_fraction: float = Field(0.15, gt=0, lt=0.5, description="Random split: share of holdout rows.")
    seed: int = Field(42, description="Random split: the same seed puts each example in the same part.")


class ValidationConfig(_Strict):
    """Checks of a batch beyond its expectation suite."""

    min_volume_ratio: float | None = Field(
        0.25, gt=0, le=1, description="With an event time: a batch whose rows per day fall below this share of "
        "the median of the batches validated over the previous volume_lookback_days is refused (a feed cut "
        "short); None: no check.")
    volume_lookback_days: int = Field(28, ge=1)


class SearchConfig(_Strict):
    """Hyperparameter candidates: the product of ``grid``, each trained as its own mapped task."""

    estimator: Literal["gradient_boosting", "linear"] = Field(
        "gradient_boosting", description="gradient_boosting: scikit-learn's histogram gradient boosting; "
        "linear: a regularised linear model (logistic regression for classifiers, ridge for regression).")
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    selection_metric: str | None = Field(None, description="Picks the best candidate on the validation rows; "
                                         "default: the task type's (" + ", ".join(
                                             t.selection_metric for t in TASK_TYPES.values()) + ").")
    random_state: int = 42
    max_parallel: int = Field(
        2, ge=1, description="Candidates trained at once; each gets cpu_count // max_parallel threads."
    )

    def candidates(self) -> list[dict[str, Any]]:
        combos: list[dict[str, Any]] = [{}]
        for name, values in self.grid.items():
            combos = [{**c, name: v} for c in combos for v in values]
        return combos


class SliceFloor(_Strict):
    """A bound on one metric per slice: a floor for a higher-is-better metric, a ceiling for a lower one."""

    column: str
    metric: str | None = Field(None, description="Default: the gate's margin metric.")
    floor: float | None = None
    ceiling: float | None = None
    value: str | None = Field(None, description="One slice value; None applies the bound to every value.")
    min_rows: int = Field(200, ge=1, description="Slices smaller than this are reported but not gated.")
    margin: float | None = Field(
        None, gt=0, description="With a champion, each gated slice (at least min_rows rows) must also pass a paired "
        "non-inferiority test of the metric against the champion on the slice's holdout rows: not worse by more "
        "than this (on the metric's scale), at the guardrails' level (the gate's alpha split between every "
        "guardrail and slice test, Bonferroni). Unset: the slice is only held to its floor or ceiling.")

    @model_validator(mode="after")
    def _one_bound(self) -> SliceFloor:
        if (self.floor is None) == (self.ceiling is None):
            raise ValueError(f"slice bound on {self.column!r} needs exactly one of floor or ceiling")
        if self.margin is not None and self.metric is not None and self.metric not in PAIRED_METRICS:
            raise ValueError(f"slice bound on {self.column!r}: {self.metric!r} has no paired test to compare the "
                             f"slice with the champion (margin); use one of {sorted(PAIRED_METRICS)}")
        return self


# The metrics the gate can compare with the champion row by row
PAIRED_METRICS = frozenset(TEST_OF_METRIC)


class GatePolicy(_Strict):
    """What a candidate must show before it may replace the champion: absolute bounds on the candidate alone,
    and, when there is a champion, paired tests on the same holdout rows (``pipelines.paired_tests``): the
    primary metric (``margin_metric``) by ``framing`` and ``min_margin``, each guardrail for non-inferiority."""

    floors: dict[str, float] | None = Field(
        None, description="Absolute floors on higher-is-better metrics; default: the task type's (" + ", ".join(
            f"{name} {metric} {floor:g}" for name, t in TASK_TYPES.items()
            for metric, floor in t.default_floors.items()) + ").")
    ceilings: dict[str, float] = Field(
        default_factory=dict, description="Absolute ceilings on lower-is-better metrics."
    )
    margin_metric: str | None = Field(None, description="The primary metric: tested against the champion on the "
                                      "same holdout rows; default: the selection metric.")
    framing: Literal["superiority", "non_inferiority"] = Field(
        "superiority", description="superiority: the candidate must be better than the champion by more than "
        "min_margin with confidence 1 - alpha (a new estimator or feature set; with min_margin 0, any shown "
        "improvement). non_inferiority: it must be shown not worse by more than min_margin (a scheduled "
        "retrain on fresh data).")
    min_margin: float = Field(
        0.0, ge=0, description="The margin of the primary test, on the metric's scale in its better direction "
        "(the framing gives it its sign): superiority asks for a difference above it, non_inferiority above "
        "minus it.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="One-sided level of the primary test; the guardrails "
                         "and the slices compared with the champion (slice_floors with a margin) share it "
                         "(Bonferroni: alpha / their number each).")
    power: float = Field(0.8, ge=0.5, lt=1, description="The power the rows-needed figure of each test is sized "
                         "for.")
    min_effect: float | None = Field(
        None, description="The true difference of the primary metric (better direction) the rows-needed figure "
        "is sized for. Default: superiority, min_margin plus 0.01 on a metric bounded by 0 and 1 (ROC AUC, PR "
        "AUC, F1, accuracy, R²) or plus 2% of the champion's value on a loss (log loss, Brier, RMSE, MAE); "
        "non_inferiority, 0 (a candidate as good as the champion). The guardrails are always sized for 0.")
    guardrails: dict[str, float] = Field(
        default_factory=dict, description="Other metrics that must each pass a non-inferiority test against the "
        "champion: metric -> margin (> 0, on the metric's scale: how much worse is tolerated).")
    max_attempts_per_holdout: int = Field(
        20, ge=1, description="Gate decisions against a champion allowed on one holdout (same data digest): each "
        "attempt is one more look at the same rows, so past this many the gate refuses; train on a new "
        "interval for a fresh holdout.")
    slice_floors: list[SliceFloor] = Field(
        default_factory=list, description="Bounds on a metric per slice of the holdout; with a margin, each gated "
        "slice is also a guardrail: a paired non-inferiority test against the champion on the slice's rows.")

    @field_validator("guardrails")
    @classmethod
    def _guardrail_margins(cls, guardrails: dict[str, float]) -> dict[str, float]:
        bad = {metric: margin for metric, margin in guardrails.items() if not margin > 0}
        if bad:
            raise ValueError(f"guardrail margins must be > 0 (a non-inferiority margin of 0 asks for a shown "
                             f"improvement): {bad}")
        return guardrails

    @model_validator(mode="after")
    def _effect_clears_the_margin(self) -> GatePolicy:
        if self.min_effect is not None:
            threshold = self.min_margin if self.framing == "superiority" else -self.min_margin
            if not self.min_effect > threshold:
                raise ValueError(f"gate.min_effect {self.min_effect:g} must exceed the difference the {self.framing} "
                                 f"test must clear ({threshold:+g}): no holdout would show a smaller one")
        if self.margin_metric is not None and self.margin_metric in self.guardrails:
            raise ValueError(f"{self.margin_metric!r} is the primary metric (gate.margin_metric) and cannot also be "
                             "a guardrail")
        return self


class ChallengerPolicy(_Strict):
    """How the monitoring DAG judges a shadow or canary challenger against the champion on labelled live rows:
    an anytime-valid confidence sequence of the mean per-row loss difference (``pipelines.sequential_tests``),
    read after every window."""

    metric: str | None = Field(
        None, description="The metric whose per-row loss is compared, one of the task type's challenger metrics ("
        + "; ".join(f"{t.name}: {', '.join(t.challenger_metrics)}" for t in TASK_TYPES.values()) + "); default: "
        "the gate's primary metric when it is one of them, else the first.")
    framing: Literal["superiority", "non_inferiority"] | None = Field(
        None, description="superiority: promote when the challenger is better by more than margin; "
        "non_inferiority: when it is shown not worse by more than margin. Default: the gate's framing.")
    margin: float = Field(0.0, ge=0, description="The margin, on the loss's own scale (MSE for rmse and r2).")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Level of the confidence sequence: the chance that a "
                         "decision is ever wrong, however often it is looked at.")
    effect: float | None = Field(
        None, description="The true improvement (champion loss minus challenger loss, on the loss's scale) the "
        "requests-still-needed figure is sized for; unset: no such figure.")
    min_rows: int = Field(1000, ge=2, description="Labelled requests (a request's rows count once) before any "
                          "decision (the variance is estimated from them).")
    act: Literal["none", "propose"] = Field(
        "none", description="none: report the comparison only. propose: when it reaches a decision, start "
        "promote_<model> with it (promote or retire) and the summary as reason; with serving.approval "
        "required that run waits in approve_release for a person's answer.")


class ServingConfig(_Strict):
    url: str | None = Field(None, description="The prediction service this model deploys to; overridden by "
                            "$MLOPS_SERVING_URL; unset: the stack's (StackSettings.prediction_service_url).")
    reload_timeout_s: float = 60.0
    rollout: Literal["direct", "shadow", "canary"] = Field(
        "direct", description="direct: a candidate that passes the gate becomes champion at once. shadow / "
        "canary: it becomes the challenger, scored beside the champion (shadow) or answering canary_share of "
        "the requests, until an operator promotes or retires it with the promote_<model> DAG.")
    canary_share: float = Field(0.1, gt=0, lt=1, description="Share of requests a canary challenger answers.")
    approval: Literal["none", "required"] = Field(
        "none", description="required: a candidate that passes the gate and infra validation waits for a person "
        "to approve it in the Airflow UI (Required Actions) before it is registered and deployed; a reject, or no "
        "answer within approval_timeout_hours, ends the run with the reason on its MLflow run.")
    approval_timeout_hours: float = Field(72, gt=0, description="How long a candidate waits for its approval.")
    challenger: ChallengerPolicy = Field(
        default_factory=ChallengerPolicy, description="How a shadow or canary challenger is judged on live rows "
        "by the monitoring DAG.")


class DriftPolicy(_Strict):
    """Per-column drift (Evidently's stat tests: normed Wasserstein / Jensen-Shannon). Every limit left unset
    comes from the champion's calibration on its own history (``pipelines.monitoring_limits``)."""

    drift_share: float | None = Field(None, gt=0, le=1, description="Dataset drift when this share of columns "
                                      "drifts; default: calibrated so a normal window of the model's history "
                                      "does not reach it.")
    methods: dict[str, str] = Field(default_factory=dict, description="Per-column Evidently stat test name.")
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-column drift limit; default: "
                                         "calibrated (mean + 3 std of the column's score over reference windows).")
    key_features: dict[str, float] = Field(
        default_factory=dict, description="Features whose drift score alone is a breach above this value.")
    prediction_threshold: float | None = Field(None, description="Breach when the scores' drift (normed "
                                               "Wasserstein, or Jensen-Shannon for a class) reaches this; default: "
                                               "calibrated.")


class PerformancePolicy(_Strict):
    """Realized (and estimated) performance against the champion's own holdout value."""

    metrics: list[str] | None = Field(None, description="Metrics compared with the champion's holdout value; "
                                      "default: the gate's margin metric.")
    margin: float = Field(0.05, ge=0, description="Practical margin: a window is worse only when its metric is "
                          "worse than the holdout's by more than this share of the holdout value, and by more "
                          "than the window's sampling noise.")
    confidence_z: float = Field(2.33, gt=0, description="Sampling noise in standard deviations (2.33: one-sided "
                                "99%) at the window's labelled rows.")
    min_labelled_rows: int = Field(100, ge=10, description="The fewest labelled rows a window's metric is "
                                   "compared with the holdout's on: the noise band is wider the fewer they are, "
                                   "so a window whose last days still wait for their labels is judged on the rest.")


class RetrainPolicy(_Strict):
    """When breaches start a retrain: N breaching windows in a row (hysteresis: a window only clears the
    streak when every signal is back under ``clear_ratio`` x its threshold), then no second trigger for
    ``cooldown_days`` of data time."""

    signals: list[Literal["dataset_drift", "key_feature_drift", "prediction_drift", "performance",
                          "estimated_performance", "data_quality"]] = Field(
        default_factory=lambda: ["key_feature_drift", "performance", "estimated_performance"],
        description="The signals that count towards a retrain; the others are shown and alerted only. Dataset "
        "and prediction drift are not counted by default: a season the reference never saw drifts the inputs "
        "without making the model worse (benchmarks/monitoring_quality.py).")
    consecutive_windows: int = Field(2, ge=1)
    clear_ratio: float = Field(0.8, gt=0, le=1)
    cooldown_days: int = Field(14, ge=0)


class MonitoringConfig(_Strict):
    schedule: str | None = Field("@daily", description="Cron or preset for monitor_<model>; None = manual.")
    window_days: int = Field(1, ge=1, description="Days of logged predictions one run judges.")
    labels_feed: str = Field("outcomes", description="Landed feed of actual outcomes: request_id, row_index "
                             "and the target column, joined to the prediction log by request id.")
    label_lookback_days: int = Field(3, ge=0, description="Earlier windows whose realized metrics are "
                                     "recomputed as their late labels arrive.")
    min_rows: int = Field(200, ge=1, description="Smaller windows are reported but never judged.")
    max_missing_share: float = Field(0.05, description="Data quality alert above this share of missing values.")
    drift: DriftPolicy = DriftPolicy()
    performance_floors: dict[str, float] | None = Field(
        None, description="Absolute realized-metric floors (none by default: the champion's holdout value judges).")
    performance_ceilings: dict[str, float] | None = Field(
        None, description="Absolute realized-metric ceilings (lower-is-better metrics; none by default).")
    performance: PerformancePolicy = PerformancePolicy()
    retrain: RetrainPolicy = RetrainPolicy()
    report_sample_rows: int = Field(20_000, ge=100, description="Rows per side in Evidently's HTML report.")
    alert_webhook: str | None = Field(None, description="POST alerts here as JSON; $MLOPS_ALERT_WEBHOOK too.")
    alert_emails: list[str] = Field(default_factory=list, description="Also e-mail alerts (SMTP from $SMTP_*).")


class ModelConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    task: str = Field("binary", description="One of the task types (" + ", ".join(TASK_TYPES) + "): what the "
                      "model predicts and how it is trained, judged, served and monitored.")
    registered_model_name: str | None = None
    landing_zone: str | None = Field(None, description="Read the landed feeds of this other model (two models "
                                     "of the same data); default: the model's own landing zone.")
    feeds: list[FeedConfig]
    features: FeaturesConfig
    expectation_suite: str | None = Field(None, description="Path to a Great Expectations suite, relative to "
                                          "include/; default: expectations/<name>.json.")
    validation: ValidationConfig = ValidationConfig()
    split: SplitConfig = SplitConfig()
    search: SearchConfig = SearchConfig()
    gate: GatePolicy = GatePolicy()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    schedule: str | None = Field(None, description="Cron expression for scheduled retraining; None = manual.")
    train_on_landing: bool = Field(False, description="Also train whenever data is landed for the model (the "
                                   "land commands update its Airflow Asset), on the days that were landed.")
    start_date: date = date(2013, 1, 1)
    default_interval: tuple[date, date] | None = Field(
        None, description="Interval a manual trigger trains on when none is given: [start, end)."
    )
    owner: str = "ml-platform"
    tags: list[str] = Field(default_factory=list)

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        task_type_named(task)  # a ValueError naming the task types there are
        return task

    @model_validator(mode="after")
    def _slice_floors_use_evaluated_slices(self) -> ModelConfig:
        unknown = [f.column for f in self.gate.slice_floors if f.column not in self.features.slices]
        if unknown:
            raise ValueError(f"gate.slice_floors use columns {unknown} that are not in features.slices "
                             f"{self.features.slices}: those slices are never evaluated")
        return self

    @field_validator("feeds")
    @classmethod
    def _unique_feeds(cls, feeds: list[FeedConfig]) -> list[FeedConfig]:
        names = [f.name for f in feeds]
        if len(names) != len(set(names)) or not names:
            raise ValueError(f"feeds must be a non-empty list of unique names, got {names}")
        return feeds

    @model_validator(mode="after")
    def _monitored_columns_exist(self) -> ModelConfig:
        drift = self.monitoring.drift
        known = {*self.features.numeric, *self.features.categorical}
        unknown = sorted({*drift.methods, *drift.thresholds, *drift.key_features} - known)
        if unknown:
            raise ValueError(f"monitoring.drift names columns {unknown} that are not features of the model "
                             f"({sorted(known)})")
        return self

    @model_validator(mode="after")
    def _metrics_fit_the_task(self) -> ModelConfig:
        """Every metric the config names exists for its task type, a bound points the metric's way (a floor
        for a higher-is-better metric), and monitoring names only what the served predictions measure."""
        task = task_type_named(self.task)
        gate, monitoring = self.gate, self.monitoring
        if self.search.selection_metric is not None:
            task.check_metric(self.search.selection_metric, "search.selection_metric")
        for metric in gate.floors or {}:
            task.check_metric(metric, "gate.floors", higher=True)
        for metric in gate.ceilings:
            task.check_metric(metric, "gate.ceilings", higher=False)
        if gate.margin_metric is not None:
            task.check_metric(gate.margin_metric, "gate.margin_metric")
        if self.margin_metric not in PAIRED_METRICS:
            raise ValueError(f"gate.margin_metric: {self.margin_metric!r} has no paired test to compare it with the "
                             f"champion; set gate.margin_metric to one of "
                             f"{sorted(PAIRED_METRICS & set(task.metrics))}")
        challenger = self.serving.challenger.metric
        if challenger is not None:
            task.check_metric(challenger, "serving.challenger.metric", realized=True)
            if challenger not in task.challenger_metrics:
                raise ValueError(f"serving.challenger.metric: {challenger!r} is not a mean of per-row losses of what "
                                 f"a {task.name} model logs; use one of {list(task.challenger_metrics)}")
        for metric in gate.guardrails:
            task.check_metric(metric, "gate.guardrails")
            if metric not in PAIRED_METRICS:
                raise ValueError(f"gate.guardrails: {metric!r} has no paired test (use one of "
                                 f"{sorted(PAIRED_METRICS & set(task.metrics))})")
            if metric == self.margin_metric:
                raise ValueError(f"gate.guardrails: {metric!r} is the primary metric (gate.margin_metric) and "
                                 "cannot also be a guardrail")
        for bound in gate.slice_floors:
            if bound.metric is not None:
                task.check_metric(bound.metric, f"gate.slice_floors[{bound.column}]", higher=bound.floor is not None)
        for metric in monitoring.performance_floors or {}:
            task.check_metric(metric, "monitoring.performance_floors", higher=True, realized=True)
        for metric in monitoring.performance_ceilings or {}:
            task.check_metric(metric, "monitoring.performance_ceilings", higher=False, realized=True)
        for metric in monitoring.performance.metrics or []:
            task.check_metric(metric, "monitoring.performance.metrics", realized=True)
        if self.features.positive_class is not None and not task.takes_positive_class:
            takers = " or ".join(n for n, t in TASK_TYPES.items() if t.takes_positive_class)
            raise ValueError(f"features.positive_class only applies to {takers} models, not {task.name}")
        return self

    @model_validator(mode="after")
    def _builder_for_several_feeds(self) -> ModelConfig:
        if self.features.builder is None and len(self.feeds) != 1:
            raise ValueError(f"features.builder is required with {len(self.feeds)} feeds: without one, the "
                             "single feed's rows are the examples")
        return self

    @property
    def task_type(self) -> TaskType:
        """The object that owns everything this model's task type changes (see pipelines.task_types)."""
        return task_type_named(self.task)(self.features)

    @property
    def challenger_metric(self) -> str:
        """The per-row loss a shadow or canary challenger is judged on (``serving.challenger.metric``)."""
        if self.serving.challenger.metric is not None:
            return self.serving.challenger.metric
        challenger_metrics = self.task_type.challenger_metrics
        return self.margin_metric if self.margin_metric in challenger_metrics else challenger_metrics[0]

    @property
    def selection_metric(self) -> str:
        return self.search.selection_metric or self.task_type.selection_metric

    @property
    def gate_floors(self) -> dict[str, float]:
        return dict(self.gate.floors if self.gate.floors is not None else self.task_type.default_floors)

    @property
    def margin_metric(self) -> str:
        return self.gate.margin_metric or self.selection_metric

    @property
    def gate_policy(self) -> GatePolicy:
        """The gate with the task type's defaults filled in: floors, the margin metric, slice metrics."""
        margin = self.margin_metric
        return self.gate.model_copy(update={
            "floors": self.gate_floors, "margin_metric": margin,
            "slice_floors": [b.model_copy(update={"metric": b.metric or margin}) for b in self.gate.slice_floors],
        })

    @property
    def realized_floors(self) -> dict[str, float]:
        """Absolute floors on a window's realized metrics: only those the config sets (the champion's own
        holdout value judges every window; a gate floor such as R² >= 0 depends on a window's own spread)."""
        return dict(self.monitoring.performance_floors or {})

    @property
    def realized_ceilings(self) -> dict[str, float]:
        return dict(self.monitoring.performance_ceilings or {})

    @property
    def split_method(self) -> str:
        return "time" if self.features.event_time else "random"

    @property
    def landing_name(self) -> str:
        """Whose landing zone the feeds are read from: ``landing/<landing_name>/<feed>/``."""
        return self.landing_zone or self.name

    @property
    def model_name(self) -> str:
        """Name in the MLflow Model Registry."""
        return self.registered_model_name or self.name

    @property
    def start_datetime(self) -> datetime:
        """``start_date`` as the naive datetime Airflow DAGs take (UTC by Airflow's default)."""
        return datetime(self.start_date.year, self.start_date.month, self.start_date.day)

    @property
    def expectation_suite_path(self) -> Path:
        return include_dir() / (self.expectation_suite or f"expectations/{self.name}.json")


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    """Load ``include/models/<name>.yaml`` (or an explicit path) into a validated ModelConfig."""
    path = Path(name_or_path)
    if not path.suffix:
        path = include_dir() / "models" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"model config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        if isinstance(raw, dict):
            raw.setdefault("name", path.stem)
            # The suite lives beside the config: <include>/expectations/<name>.json.
            include, suite = include_dir(), path.resolve().parents[1] / "expectations" / f"{raw['name']}.json"
            raw.setdefault("expectation_suite", str(suite.relative_to(include) if suite.is_relative_to(include)
                                                    else suite))
        return ModelConfig.model_validate(raw)
    except Exception as exc:  # pydantic's message already names each bad field
        raise ValueError(f"invalid model config {path}:\n{exc}") from exc


@dataclass(frozen=True)
class ConfigFile:
    """One file of ``include/models``: its model config, or why it is not one."""

    name: str
    path: Path
    config: ModelConfig | None
    error: str | None = None


def training_dag_id(model: str) -> str:
    """The id of the model's training DAG (``dags/training.py``)."""
    return f"train_{model}"


def monitoring_dag_id(model: str) -> str:
    """The id of the model's monitoring DAG (``dags/monitoring.py``)."""
    return f"monitor_{model}"


def scoring_dag_id(model: str) -> str:
    """The id of the model's batch-scoring DAG (``dags/batch_scoring.py``)."""
    return f"score_{model}"


def model_configs_stamp(models_dir: Path | None = None) -> tuple[tuple[str, int], ...]:
    """The model config files as they are now (names and modification times): equal stamps, same configs.
    What a long-running process (the service, the operator pages) compares to know when to read them again."""
    folder = models_dir or include_dir() / "models"
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.yaml")))


def read_model_configs(models_dir: Path | None = None) -> list[ConfigFile]:
    """Every model config file, each loaded on its own: a broken file names itself and its field, and the
    other models are unaffected (a DAG file builds the good ones and a failing stand-in for the broken)."""
    found = []
    for path in sorted((models_dir or include_dir() / "models").glob("*.yaml")):
        try:
            found.append(ConfigFile(path.stem, path, load_model_config(path)))
        except ValueError as exc:  # YAML syntax, validation: load_model_config names the file and the field
            logging.getLogger(__name__).error(str(exc))
            found.append(ConfigFile(path.stem, path, None, str(exc)))
    return found


def list_model_configs(models_dir: Path | None = None) -> list[ModelConfig]:
    """The valid model configs; each broken one is reported as a warning naming its file and field."""
    configs = []
    for entry in read_model_configs(models_dir):
        if entry.config is None:
            warnings.warn(entry.error, stacklevel=2)
        else:
            configs.append(entry.config)
    return configs


def database_url(url: str | None, directory: Path, filename: str) -> str:
    """``url`` (any SQLAlchemy URL: PostgreSQL in production), else a SQLite file in ``directory`` (a folder
    of ``StatePaths``: the embedded default)."""
    if url:
        return url
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / filename}"


class StatePaths(BaseModel):
    """Every piece of runtime state lives under one folder: ``$MLOPS_HOME`` (default ``<project>/.state``)."""

    model_config = ConfigDict(frozen=True)
    root: Path

    @classmethod
    def from_env(cls) -> StatePaths:
        return cls(root=stack_settings().state_home.resolve())

    def landing(self, model: str, feed: str) -> Path:
        return self.landing_root(model) / feed

    def landing_root(self, model: str) -> Path:
        return self.root / "landing" / model

    def replaced_landing(self, model: str, feed: str) -> Path:
        """Landed files that a later landing replaced, kept; ingest never reads them (it reads only the day
        files of the feed's folder itself)."""
        return self.landing(model, feed) / "replaced"

    def quarantine(self, model: str) -> Path:
        return self.root / "quarantine" / model

    def curated(self, model: str) -> Path:
        return self.root / "curated" / model

    @property
    def reports_root(self) -> Path:
        return self.root / "reports"

    def reports(self, model: str) -> Path:
        return self.reports_root / model

    def cache(self, model: str) -> Path:
        return self.root / "cache" / model

    def verdicts(self, model: str) -> Path:
        """Each training run's verdict, one file per run (``pipelines.training_outcomes``)."""
        return self.root / "verdicts" / model

    def work(self, model: str, run_key: str) -> Path:
        return self.root / "work" / model / run_key

    @property
    def monitoring_root(self) -> Path:
        """The embedded monitoring store, and each model's monitoring files."""
        return self.root / "monitoring"

    def monitoring(self, model: str) -> Path:
        return self.monitoring_root / model

    @property
    def monitoring_snapshots(self) -> Path:
        return self.monitoring_root / "_snapshots"

    def scoring(self, model: str) -> Path:
        """Batch scoring's scratch files."""
        return self.root / "scoring" / model

    def predictions(self, model: str) -> Path:
        """Batch scoring's scored partitions."""
        return self.root / "predictions" / model

    @property
    def serving(self) -> Path:
        """The prediction service's: the embedded prediction log, its spill files, the request-id tables."""
        return self.root / "serving"

    @property
    def airflow_admin_password(self) -> Path:
        """The Airflow admin password the stack generated at its first start (mode 0600)."""
        return self.root / "airflow" / "admin_password"

    @property
    def dvc_repo(self) -> Path:
        return self.root / "dvc" / "repo"

    @property
    def dvc_remote(self) -> Path:
        return self.root / "dvc" / "remote"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"
