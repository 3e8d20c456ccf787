"""The Airflow Assets of a model, by URI: the data landed for it, its training snapshot, the model it serves
and its monitored windows. The training DAG reads the first (and may be scheduled on it) and makes the
snapshot and the served model (as do the promote and rollback DAGs); the land commands announce the landed
data through Airflow's REST API; the monitoring DAG reads the served model (its traffic) and makes a
monitored window per run (and starts a retrain when the model goes stale). The UI's Assets pages show each
Asset's producing and consuming tasks: landing -> training -> serving -> monitoring.

Plain strings, so the land commands and the DAG files share them without importing Airflow here.
"""

from __future__ import annotations

from pipelines.config import ModelConfig

SCHEME = "x-mlops"  # Airflow leaves URIs of an "x-" scheme as they are


def landed_data(cfg: ModelConfig) -> str:
    """Files landed in the model's landing zone (shared by the models that read the same zone)."""
    return f"{SCHEME}://landed/{cfg.landing_name}"


def training_snapshot(cfg: ModelConfig) -> str:
    """The DVC-versioned training snapshot of the model."""
    return f"{SCHEME}://snapshot/{cfg.name}"


def served_model(cfg: ModelConfig) -> str:
    """The registered model whose champion the prediction service answers with."""
    return f"{SCHEME}://served/{cfg.model_name}"


def monitored_window(cfg: ModelConfig) -> str:
    """A window of the model's live traffic, judged by its monitoring DAG."""
    return f"{SCHEME}://monitored/{cfg.name}"

