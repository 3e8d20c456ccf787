"""Rollback: one manual trigger per model moves ``champion`` back and the prediction service follows.

Wiring only; the steps live in ``pipelines.training_tasks``.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, get_current_context, task

from pipelines.config import ModelConfig, StatePaths, list_model_configs

DOC = """\
### Roll back `{name}`

Moves the MLflow alias `champion` of `{model}` back to the version behind `previous` (or to the version
you name), makes the demoted version `previous` (so a rollback can be undone the same way), records your
reason on both versions, and waits until the prediction service serves the restored version.
"""


def build_rollback_dag(cfg: ModelConfig) -> DAG:
    with DAG(
        dag_id=f"rollback_{cfg.name}",
        description=f"Roll back the champion of {cfg.model_name}",
        doc_md=DOC.format(name=cfg.name, model=cfg.model_name),
        schedule=None,
        start_date=cfg.start_datetime,
        catchup=False,
        max_active_runs=1,
        tags=["deployment", "rollback", cfg.name],
        default_args={"owner": cfg.owner, "retries": 1, "retry_delay": timedelta(seconds=10)},
        params={
            "reason": Param("", type="string", minLength=3, title="Reason",
                            description="Why the champion is rolled back; stored on both versions."),
            "to_version": Param(None, type=["null", "string"], pattern="^[0-9]+$", title="Version",
                                description="Registry version to restore; empty = the 'previous' alias."),
        },
    ) as dag:
        state = StatePaths.from_env

        @task(retries=0)  # an operator's decision, not a transient failure: never replayed by itself
        def move_champion_back() -> dict:
            from pipelines import training_tasks as t

            params = get_current_context()["params"]
            return t.rollback(cfg, state(), params["reason"], params.get("to_version"))

        @task
        def deploy(promotion: dict) -> dict:
            from pipelines import training_tasks as t

            return t.deploy(cfg, promotion)

        deploy(move_champion_back())
    return dag


for _cfg in list_model_configs():
    globals()[f"rollback_{_cfg.name}"] = build_rollback_dag(_cfg)
