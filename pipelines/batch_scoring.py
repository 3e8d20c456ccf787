"""Batch scoring: the champion scores every example of a landed interval, written as Parquet, for users
who serve in batch rather than over HTTP."""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

import pandas as pd

from pipelines.config import ModelConfig, StatePaths
from pipelines.task_types import TaskType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchScores:
    path: str
    rows: int
    model_name: str
    model_version: str


def score_examples(model, examples: pd.DataFrame, task: TaskType, chunk_rows: int = 50_000) -> pd.DataFrame:
    """The task type's batch columns (a score, a predicted class, a value) for every example, scored in
    chunks to bound memory."""
    from pipelines.task_types import model_classes
    from pipelines.training import model_inputs

    inputs = model_inputs(examples, task.features)
    classes = model_classes(model)
    parts = [pd.DataFrame(task.batch_columns(task.output(model, inputs.iloc[i:i + chunk_rows]), classes))
             for i in range(0, len(inputs), chunk_rows)]
    scored = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    scored.index = examples.index
    return scored


def score_interval(cfg: ModelConfig, state: StatePaths, start: date, end: date, alias: str = "champion") -> dict:
    """Ingest the landed files of [start, end) (without touching the training batches), score them with
    ``<model>@<alias>`` and write ``$MLOPS_HOME/predictions/<model>/<start>_<end>.parquet``."""
    import mlflow

    from pipelines.ingest import ingest_model_examples
    from pipelines.storage import fresh_temp_dir, write_parquet_atomic
    from pipelines.tracking import configure_mlflow, load_sklearn_model

    configure_mlflow(state)
    version = mlflow.MlflowClient().get_model_version_by_alias(cfg.model_name, alias)
    model = load_sklearn_model(f"models:/{cfg.model_name}/{version.version}")
    key = f"{start.isoformat()}_{end.isoformat()}"
    scratch = fresh_temp_dir(state.root / "scoring" / cfg.name / key)
    try:
        _, examples = ingest_model_examples(cfg, state, start, end, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    from pipelines.features import example_id_column

    keep = [c for c in (example_id_column(cfg.features, examples), cfg.features.event_time, *cfg.features.slices)
            if c and c in examples.columns]
    scored = pd.concat([examples[list(dict.fromkeys(keep))], score_examples(model, examples, cfg.task_type)], axis=1)
    scored["model_name"], scored["model_version"] = cfg.model_name, str(version.version)
    scored["scored_at"] = datetime.now(UTC)
    path = write_parquet_atomic(scored, state.root / "predictions" / cfg.name / f"{key}.parquet")
    result = BatchScores(str(path), len(scored), cfg.model_name, str(version.version))
    log.info("scored %d examples of %s with %s v%s -> %s", result.rows, key, cfg.model_name, version.version, path)
    return asdict(result)

