"""The candidates of a training run: each set of hyperparameters trained (one mapped task each) and logged
as a child of the run's parent MLflow run, and the best of them on validation."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import ModelConfig, StatePaths
from pipelines.run_context import RunContext
from pipelines.step_cache import cached_step, config_digest

if TYPE_CHECKING:
    from pipelines.training_steps.results import Candidate, Splits


def train(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: Splits, params: dict) -> Candidate:
    """Fit one candidate and log it as a child run. A candidate already trained on the same rows with the
    same settings and code is not fitted again: its child run points at the model trained then."""
    import mlflow

    from pipelines.step_cache import value_digest
    from pipelines.tracking import configure_mlflow
    from pipelines.training_steps.results import Candidate
    from pipelines.training_steps.run_records import cache_tag, step_run

    configure_mlflow(state)
    cached = _train_candidate(step_run(cfg, ctx, state), {
        "data": value_digest([splits.digests["train"], splits.digests["validation"]]),
        "config": config_digest(cfg.search.estimator, cfg.search.random_state, cfg.task, cfg.features),
        "params": value_digest(params),
        "gate_drill": str(ctx.shuffle_labels),
    }, cfg, ctx, splits.path("train"), splits.path("validation"), _run_of(splits), params)
    result = dict(cached.result)
    if cached.note.status == "hit":
        with _candidate_run(_run_of(splits), params) as run:
            mlflow.log_params(_candidate_settings(cfg, ctx, params))
            mlflow.log_metrics({f"val_{k}": v for k, v in result["validation_metrics"].items() if v is not None})
            mlflow.set_tags({"cached_from_run_id": result["run_id"], "model_uri": result["model_uri"]})
        result["run_id"] = run.info.run_id
    mlflow.MlflowClient().set_tag(result["run_id"], "cache", cache_tag(cached.note.to_dict()))
    return Candidate(**result, cache=cached.note.to_dict())


@cached_step("train", identity=("params",), usable=lambda result: _model_exists(result["model_uri"]))
def _train_candidate(_folder: Path, cfg: ModelConfig, ctx: RunContext, train_path: Path, validation_path: Path,
                     parent: dict[str, Any], params: dict) -> dict:
    import mlflow
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from pipelines.metrics import json_safe
    from pipelines.tracking import log_sklearn_model
    from pipelines.training import model_inputs, train_candidate

    train_frame, validation = pd.read_parquet(train_path), pd.read_parquet(validation_path)
    # Candidates train side by side: without a limit each would start one OpenMP thread per core and
    # they would fight over the cores (measured: 5x slower on 2 cores with 4 candidates).
    threads = max(1, (os.cpu_count() or 1) // cfg.search.max_parallel)
    started = time.perf_counter()
    with threadpool_limits(limits=threads):
        trained = train_candidate(train_frame, validation, cfg.task_type, cfg.search, params,
                                  shuffle_labels=ctx.shuffle_labels)
    fit_seconds = time.perf_counter() - started
    with _candidate_run(parent, params) as run:
        mlflow.log_params(_candidate_settings(cfg, ctx, params))
        mlflow.log_metrics({f"val_{k}": v for k, v in json_safe(trained.validation_metrics).items()
                            if v is not None})
        mlflow.log_metrics({"fit_seconds": fit_seconds, "threads": threads,
                            **({"threshold": trained.threshold} if trained.threshold is not None else {})})
        info = log_sklearn_model(trained.model, model_inputs(validation.head(5), cfg.features), cfg.task_type)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "params": params,
            "validation_metrics": json_safe(trained.validation_metrics), "threshold": trained.threshold}


def _candidate_settings(cfg: ModelConfig, ctx: RunContext, params: dict) -> dict:
    return {**params, "estimator": cfg.search.estimator, "shuffled_labels": ctx.shuffle_labels}


def _run_of(splits: Splits) -> dict[str, Any]:
    """Where a candidate's child run goes: the parent run, its experiment and the lineage tags."""
    return {"experiment_id": splits.experiment_id, "parent_run_id": splits.parent_run_id, "tags": splits.lineage}


def _candidate_run(parent: dict[str, Any], params: dict):
    """A candidate's child run under the run's parent (``_run_of``)."""
    import mlflow

    return mlflow.start_run(run_name="candidate " + " ".join(f"{k}={v}" for k, v in params.items()), **parent)


def _model_exists(model_uri: str) -> bool:
    """A model an earlier run logged is still there (its run was not deleted)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return bool(mlflow.artifacts.list_artifacts(artifact_uri=model_uri))
    except (MlflowException, OSError):
        return False


def select_best(cfg: ModelConfig, candidates: list[Candidate]) -> Candidate:
    """The candidate with the best validation score on the model's selection metric."""
    metric = cfg.selection_metric
    sign = 1 if cfg.task_type.metrics[metric] else -1
    scored = [c for c in candidates if c.validation_metrics.get(metric) is not None]
    if not scored:
        raise ValueError(f"no candidate has a validation {metric}: is the validation window one class only?")
    return max(scored, key=lambda c: sign * c.validation_metrics[metric])
