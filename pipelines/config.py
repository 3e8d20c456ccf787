"""One typed configuration per model, loaded from YAML in ``include/models``.

Defaults live here; the YAML holds only the knobs people change. This module is imported by DAG
files at parse time, so it must import nothing heavier than pydantic and PyYAML.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parents[1]
INCLUDE_DIR = PROJECT_ROOT / "include"
MODELS_DIR = INCLUDE_DIR / "models"

ColumnType = Literal["int", "float", "string", "datetime"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Strict):
    """A source of raw files in the landing zone: one file per day named ``YYYY-MM-DD.{csv,parquet}``."""

    name: str
    columns: dict[str, ColumnType] = Field(description="Every column a landed file must have, with its type.")
    key: list[str] = Field(description="Columns that identify one record; duplicates are dropped on ingest.")

    @model_validator(mode="after")
    def _key_in_columns(self) -> FeedConfig:
        missing = [c for c in self.key if c not in self.columns]
        if missing:
            raise ValueError(f"feed {self.name!r}: key columns {missing} are not in its columns")
        return self


class FeaturesConfig(_Strict):
    """The model's inputs. ``builder`` turns the feeds of one interval into one row per example."""

    builder: str = Field(description="Dotted path to a function(feeds: dict[str, DataFrame]) -> DataFrame.")
    numeric: list[str]
    categorical: list[str]
    target: str
    event_time: str = Field(description="Timestamp column that orders examples for the time-based split.")
    slices: list[str] = Field(default_factory=list, description="Columns whose values are evaluated apart.")

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
        return self


class SplitConfig(_Strict):
    """Time-based split: train on the past, select on the next weeks, hold out the latest weeks."""

    holdout_days: int = Field(14, ge=1)
    validation_days: int = Field(7, ge=1)
    training_window_days: int | None = Field(
        None, ge=1, description="Look back at most this many days from the interval end; None = all history."
    )


class SearchConfig(_Strict):
    """Hyperparameter candidates: the product of ``grid``, each trained as its own mapped task."""

    estimator: Literal["hist_gradient_boosting", "logistic_regression"] = "hist_gradient_boosting"
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    selection_metric: Literal["roc_auc", "pr_auc", "log_loss", "brier"] = "roc_auc"
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
    column: str
    metric: Literal["roc_auc", "pr_auc", "f1"] = "roc_auc"
    floor: float
    value: str | None = Field(None, description="One slice value; None applies the floor to every value.")
    min_rows: int = Field(200, ge=1, description="Slices smaller than this are reported but not gated.")


class GatePolicy(_Strict):
    """What a candidate must show before it may replace the champion."""

    floors: dict[Literal["roc_auc", "pr_auc", "f1"], float] = Field(
        default_factory=lambda: {"roc_auc": 0.6}, description="Absolute floors on higher-is-better metrics."
    )
    ceilings: dict[Literal["log_loss", "brier"], float] = Field(
        default_factory=dict, description="Absolute ceilings on lower-is-better metrics."
    )
    margin_metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    min_margin: float = Field(
        0.0, description="Candidate must beat the champion on the same holdout by at least this much."
    )
    slice_floors: list[SliceFloor] = Field(default_factory=list)


class ServingConfig(_Strict):
    url: str = Field("http://127.0.0.1:8000", description="Overridden by $MLOPS_SERVING_URL.")
    reload_timeout_s: float = 60.0
    rollout: Literal["direct", "shadow", "canary"] = Field(
        "direct", description="direct: a candidate that passes the gate becomes champion at once. shadow / "
        "canary: it becomes the challenger, scored beside the champion (shadow) or answering canary_share of "
        "the requests, until an operator promotes or retires it with the promote_<model> DAG.")
    canary_share: float = Field(0.1, gt=0, lt=1, description="Share of requests a canary challenger answers.")


class DriftPolicy(_Strict):
    """Evidently's per-column drift tests (defaults: normed Wasserstein / Jensen-Shannon at 0.1)."""

    drift_share: float = Field(0.5, gt=0, le=1, description="Dataset drift when this share of columns drifts.")
    methods: dict[str, str] = Field(default_factory=dict, description="Per-column Evidently stat test name.")
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-column drift threshold.")
    key_features: dict[str, float] = Field(
        default_factory=dict, description="Features whose drift score alone is a breach above this value.")
    prediction_threshold: float = Field(0.2, description="Breach when the scores' normed Wasserstein distance "
                                        "to the reference's scores reaches this.")


class RetrainPolicy(_Strict):
    """When breaches start a retrain: N breaching windows in a row (hysteresis: a window only clears the
    streak when every signal is back under ``clear_ratio`` x its threshold), then no second trigger for
    ``cooldown_days`` of data time."""

    signals: list[Literal["dataset_drift", "key_feature_drift", "prediction_drift", "performance"]] = Field(
        default_factory=lambda: ["dataset_drift", "key_feature_drift", "performance"])
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
    performance_floors: dict[Literal["roc_auc", "pr_auc", "f1"], float] | None = Field(
        None, description="Realized-metric floors; default: the gate's floors.")
    retrain: RetrainPolicy = RetrainPolicy()
    report_sample_rows: int = Field(20_000, ge=100, description="Rows per side in Evidently's HTML report.")
    alert_webhook: str | None = Field(None, description="POST alerts here as JSON; $MLOPS_ALERT_WEBHOOK too.")
    alert_emails: list[str] = Field(default_factory=list, description="Also e-mail alerts (SMTP from $SMTP_*).")


class ModelConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    registered_model_name: str | None = None
    feeds: list[FeedConfig]
    features: FeaturesConfig
    expectation_suite: str = Field(description="Path to a Great Expectations suite, relative to include/.")
    split: SplitConfig = SplitConfig()
    search: SearchConfig = SearchConfig()
    gate: GatePolicy = GatePolicy()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    schedule: str | None = Field(None, description="Cron expression for scheduled retraining; None = manual.")
    start_date: date = date(2013, 1, 1)
    default_interval: tuple[date, date] | None = Field(
        None, description="Interval a manual trigger trains on when none is given: [start, end)."
    )
    owner: str = "ml-platform"
    tags: list[str] = Field(default_factory=list)

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

    @property
    def realized_floors(self) -> dict[str, float]:
        return dict(self.monitoring.performance_floors if self.monitoring.performance_floors is not None
                    else self.gate.floors)

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
        return INCLUDE_DIR / self.expectation_suite


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    """Load ``include/models/<name>.yaml`` (or an explicit path) into a validated ModelConfig."""
    path = Path(name_or_path)
    if not path.suffix:
        path = MODELS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"model config not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return ModelConfig.model_validate(raw)
    except Exception as exc:  # pydantic's message already names each bad field
        raise ValueError(f"invalid model config {path}:\n{exc}") from exc


def list_model_configs(models_dir: Path = MODELS_DIR) -> list[ModelConfig]:
    return [load_model_config(p) for p in sorted(models_dir.glob("*.yaml"))]


def database_url(env_var: str, folder: str, filename: str) -> str:
    """``$env_var`` (any SQLAlchemy URL: PostgreSQL in production), else a SQLite file under
    ``$MLOPS_HOME/<folder>/`` (the embedded default)."""
    url = os.environ.get(env_var)
    if url:
        return url
    directory = StatePaths.from_env().root / folder
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / filename}"


class StatePaths(BaseModel):
    """Every piece of runtime state lives under one folder: ``$MLOPS_HOME`` (default ``<project>/.state``)."""

    model_config = ConfigDict(frozen=True)
    root: Path

    @classmethod
    def from_env(cls) -> StatePaths:
        return cls(root=Path(os.environ.get("MLOPS_HOME", PROJECT_ROOT / ".state")).resolve())

    def landing(self, model: str, feed: str) -> Path:
        return self.landing_root(model) / feed

    def landing_root(self, model: str) -> Path:
        return self.root / "landing" / model

    def quarantine(self, model: str) -> Path:
        return self.root / "quarantine" / model

    def curated(self, model: str) -> Path:
        return self.root / "curated" / model

    def reports(self, model: str) -> Path:
        return self.root / "reports" / model

    def work(self, model: str, run_key: str) -> Path:
        return self.root / "work" / model / run_key

    @property
    def dvc_repo(self) -> Path:
        return self.root / "dvc" / "repo"

    @property
    def dvc_remote(self) -> Path:
        return self.root / "dvc" / "remote"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"
