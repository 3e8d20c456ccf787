"""Release decisions an operator takes from the Airflow UI, one form each, per model config:

- ``rollback_<model>`` moves ``champion`` back, and the prediction service follows;
- ``promote_<model>`` promotes or retires the challenger a shadow or canary rollout staged.

Wiring only; the steps live in ``pipelines.training_tasks``.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, get_current_context, task

from pipelines.alerts import failure_callback
from pipelines.config import ModelConfig, StatePaths, list_model_configs

ROLLBACK_DOC = """\
### Roll back `{name}`

Moves the MLflow alias `champion` of `{model}` back to the version behind `previous` (or to the version
you name), makes the demoted version `previous` (so a rollback can be undone the same way), records your
reason on both versions, and waits until the prediction service serves the restored version.
"""


def build_rollback_dag(cfg: ModelConfig) -> DAG:
    with DAG(
        dag_id=f"rollback_{cfg.name}",
        description=f"Roll back the champion of {cfg.model_name}",
        doc_md=ROLLBACK_DOC.format(name=cfg.name, model=cfg.model_name),
        schedule=None,
        start_date=cfg.start_datetime,
        catchup=False,
        max_active_runs=1,
        tags=["deployment", "rollback", cfg.name],
        default_args={"owner": cfg.owner, "retries": 1, "retry_delay": timedelta(seconds=10),
                      "on_failure_callback": failure_callback(cfg)},
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

        @task(retries=0)  # see training_tasks.deploy: a retry would report the restored aliases as deployed
        def deploy(promotion: dict) -> dict:
            from pipelines import training_tasks as t

            return t.deploy(cfg, promotion, state())

        deploy(move_champion_back())
    return dag


PROMOTE_DOC = """\
### Promote or retire the challenger of `{name}`

With `serving.rollout: shadow` or `canary` in the model config, a candidate that passes the gate becomes the
`challenger` of `{model}`: the prediction service scores it beside the champion (shadow) or answers a share
of the requests with it (canary), and both are in the prediction log by model version (`route` column).
Compare them there, then decide here:

- **promote**: `challenger` becomes `champion`, the former champion becomes `previous`;
- **retire**: the challenger stops being scored, `champion` is untouched.

Your reason is stored on the version; the run ends when every service worker serves the new state.
"""


def build_promote_dag(cfg: ModelConfig) -> DAG:
    with DAG(
        dag_id=f"promote_{cfg.name}",
        description=f"Promote or retire the challenger of {cfg.model_name}",
        doc_md=PROMOTE_DOC.format(name=cfg.name, model=cfg.model_name),
        schedule=None,
        start_date=cfg.start_datetime,
        catchup=False,
        max_active_runs=1,
        tags=["deployment", "promote", cfg.name],
        default_args={"owner": cfg.owner, "retries": 1, "retry_delay": timedelta(seconds=10),
                      "on_failure_callback": failure_callback(cfg)},
        params={
            "action": Param("promote", type="string", enum=["promote", "retire"], title="Decision",
                            description="promote: challenger becomes champion. retire: drop the challenger."),
            "reason": Param("", type="string", minLength=3, title="Reason",
                            description="What the shadow or canary traffic showed; stored on the version."),
        },
    ) as dag:
        state = StatePaths.from_env

        @task(retries=0)  # an operator's decision, not a transient failure
        def move_aliases() -> dict:
            from pipelines import training_tasks as t

            params = get_current_context()["params"]
            return t.release_challenger(cfg, state(), params["action"], params["reason"])

        @task(retries=0)  # see training_tasks.deploy: a retry would report the restored aliases as deployed
        def deploy(promotion: dict) -> dict:
            from pipelines import training_tasks as t

            return t.deploy(cfg, promotion, state())

        deploy(move_aliases())
    return dag


for _cfg in list_model_configs():
    globals()[f"rollback_{_cfg.name}"] = build_rollback_dag(_cfg)
    globals()[f"promote_{_cfg.name}"] = build_promote_dag(_cfg)
