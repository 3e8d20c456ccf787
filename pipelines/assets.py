"""The Airflow Assets of a model, by URI: the data landed for it, its training snapshot and the model it
serves. The training DAG reads the first (and may be scheduled on it), makes the other two; the land commands
announce the first through Airflow's REST API. The UI's Asset graph draws them: landing -> training ->
serving.

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
