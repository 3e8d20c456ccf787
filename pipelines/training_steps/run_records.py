"""What a training run records beside its steps' results: the step cache it uses, the cache notes carried
to its parent MLflow run, the parent run itself with its lineage tags, and the run's verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.config import ModelConfig, StatePaths
from pipelines.run_context import RunContext, git_commit
from pipelines.step_cache import Cached, StepCache, StepRun

if TYPE_CHECKING:
    from pipelines.training_steps.results import CacheNotes, Snapshot


def step_run(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> StepRun:
    """How this run's steps use the model's cache."""
    return StepRun(StepCache(state.cache(cfg.name)), ctx.run_id, ctx.force)


def cache_notes(upstream: CacheNotes, cached: Cached) -> CacheNotes:
    """The cache notes of the steps so far and this one, passed along until the parent MLflow run records them."""
    return {**upstream, cached.note.step: cached.note.to_dict()}


def cache_tag(note: dict) -> str:
    return f"{note['status']}: {note['detail']}"[:4900]


def lineage_tags(cfg: ModelConfig, ctx: RunContext, data: Snapshot) -> dict[str, str]:
    return {
        "model_config": cfg.name,
        "data_hash": data.md5,
        "data_rev": data.rev,
        "data_path": data.path,
        "data_rows": str(data.rows),
        "data_interval": ctx.interval_key,
        "task": cfg.task,
        "split_method": cfg.split_method,
        "airflow_dag_id": ctx.dag_id,
        "airflow_run_id": ctx.run_id,
        "git_commit": git_commit(),
        "training_reason": ctx.reason[:500] or "none given",
    }


def open_parent_run(cfg: ModelConfig, ctx: RunContext, state: StatePaths, lineage: dict[str, str],
                    params: dict, notes: CacheNotes) -> tuple[str, str]:
    """The parent MLflow run every candidate logs under, with the run's params and how each step so far
    used the cache: (experiment id, run id). It stays RUNNING through training and evaluation; the gate
    ends it. A retried or cleared split finds and reopens its own parent instead of starting a second one."""
    import mlflow
    from mlflow.entities import Param, RunTag

    from pipelines.tracking import ensure_experiment

    experiment_id = ensure_experiment(cfg.name, state)
    client = mlflow.MlflowClient()
    own = [r for r in client.search_runs(
        [experiment_id], f"tags.airflow_run_id = '{ctx.run_id}' and tags.airflow_dag_id = '{ctx.dag_id}'")
        if "mlflow.parentRunId" not in r.data.tags]
    if own:
        parent_run_id = own[0].info.run_id
        client.update_run(parent_run_id, status="RUNNING")
        for key, value in lineage.items():
            client.set_tag(parent_run_id, key, value)
    else:
        parent_run_id = client.create_run(experiment_id, run_name=f"train {ctx.interval_key}",
                                          tags=lineage).info.run_id
    client.log_batch(parent_run_id, params=[Param(k, str(v)) for k, v in params.items()],
                     tags=[RunTag(f"cache.{step}", cache_tag(note)) for step, note in notes.items()])
    return experiment_id, parent_run_id


def mark_run_failed(splits: dict | None, reason: str, state: StatePaths | None = None) -> None:
    """Close the parent MLflow run as FAILED when a task after ``split`` fails for good (``splits`` as XCom
    holds the ``Splits``; None when there is none)."""
    if not splits or not splits.get("parent_run_id"):
        return
    import mlflow

    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    client = mlflow.MlflowClient()
    client.set_tag(splits["parent_run_id"], "failure", reason[:4900])
    client.set_terminated(splits["parent_run_id"], status="FAILED")


def record_step_verdict(cfg: ModelConfig, state: StatePaths, lineage: dict[str, str], step: str, outcome: str,
                        reason: str, version: str | None = None) -> None:
    """The run's verdict as ``step`` decided it (the run is named by its lineage tags). A task that fails for
    good records its own, from the DAG's failure callback."""
    from pipelines.training_outcomes import RunVerdict, record_verdict

    record_verdict(state, cfg.name, RunVerdict(lineage["airflow_dag_id"], lineage["airflow_run_id"], step, outcome,
                                               reason, version))
