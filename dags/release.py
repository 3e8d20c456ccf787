"""Release decisions an operator takes from the Airflow UI, one form each, per model config:

- ``rollback_<model>`` moves ``champion`` back, and the prediction service follows;
- ``promote_<model>`` promotes or retires the challenger a shadow or canary rollout staged.

Wiring only; the steps live in ``pipelines.release`` and ``pipelines.deployment``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from airflow.sdk import DAG, Asset, Param, get_current_context, task

from pipelines.airflow_edge import assets
from pipelines.airflow_edge.broken_config import stand_in_dag
from pipelines.airflow_edge.callbacks import failure_callback
from pipelines.config import ModelConfig, StatePaths, read_model_configs

ROLLBACK_DOC = """\
### Roll back `{name}`

Moves the MLflow alias `champion` of `{model}` back to the version behind `previous` (or to the version
you name), makes the demoted version `previous` (so a rollback can be undone the same way), records your
reason on both versions, and waits until the prediction service serves the restored version.
"""


def _release_dag(cfg: ModelConfig, kind: str, description: str, doc: str, params: dict, move_task_id: str,
                 move: Callable[[dict], dict], ask_first: bool = False) -> DAG:
    """An operator's release form: ``move`` the aliases from the form's params, then deploy what they say.
    ``ask_first``: a run the monitoring DAG proposed waits for a person's approval before anything moves."""
    with DAG(
        dag_id=f"{kind}_{cfg.name}",
        description=description,
        doc_md=doc,
        schedule=None,
        start_date=cfg.start_datetime,
        catchup=False,
        max_active_runs=1,
        tags=["deployment", kind, cfg.name],
        default_args={"owner": cfg.owner, "retries": 1, "retry_delay": timedelta(seconds=10),
                      "on_failure_callback": failure_callback(cfg)},
        params=params,
    ) as dag:

        @task(task_id=move_task_id, retries=0)  # an operator's decision, not a transient failure
        def move_aliases() -> dict:
            context = get_current_context()
            params = dict(context["params"])
            approval = context["ti"].xcom_pull(task_ids="approve_release", key="approval") if ask_first else None
            if approval:
                params["reason"] = f"{params['reason']} (release {approval})"
            return move(params)

        # See deployment.deploy: a retry would report the restored aliases as deployed.
        @task(retries=0, outlets=[Asset(assets.served_model(cfg))])
        def deploy(promotion: dict) -> dict:
            from pipelines.deployment import deploy

            return deploy(cfg, promotion, StatePaths.from_env())

        moved = move_aliases()
        deploy(moved)
        if ask_first:
            from pipelines.airflow_edge.approval_operator import ReleaseApproval

            ReleaseApproval(task_id="approve_release", cfg=cfg) >> moved
    return dag


def build_rollback_dag(cfg: ModelConfig) -> DAG:
    def move(params: dict) -> dict:
        from pipelines import release

        return release.rollback(cfg, StatePaths.from_env(), params["reason"], params.get("to_version"))

    return _release_dag(cfg, "rollback", f"Roll back the champion of {cfg.model_name}",
                        ROLLBACK_DOC.format(name=cfg.name, model=cfg.model_name), {
                            "reason": Param("", type="string", minLength=3, title="Reason",
                                            description="Why the champion is rolled back; stored on both versions."),
                            "to_version": Param(None, type=["null", "string"], pattern="^[0-9]+$", title="Version",
                                                description="Registry version to restore; empty = the 'previous' "
                                                            "alias."),
                        }, "move_champion_back", move)


PROMOTE_DOC = """\
### Promote or retire the challenger of `{name}`

With `serving.rollout: shadow` or `canary` in the model config, a candidate that passes the gate becomes the
`challenger` of `{model}`: the prediction service scores it beside the champion (shadow) or answers a share
of the requests with it (canary), and both are in the prediction log by model version (`route` column).
Compare them there, then decide here:

- **promote**: `challenger` becomes `champion`, the former champion becomes `previous`;
- **retire**: the challenger stops being scored, `champion` is untouched.

Your reason is stored on the version; the run ends when every service worker serves the new state.

With `serving.challenger.act: propose`, the monitoring DAG starts this DAG itself when its anytime-valid
comparison of the challenger with the champion reaches a decision (`proposed_by` names that run).{approval}
"""

_PROMOTE_APPROVAL_DOC = """ With `serving.approval: required` such a
proposed run waits in `approve_release` for a person's answer (Required Actions); Reject, or no answer within
{hours:g} h, moves nothing. A run you start here is your own decision and does not ask."""


def build_promote_dag(cfg: ModelConfig) -> DAG:
    def move(params: dict) -> dict:
        from pipelines import release

        return release.release_challenger(cfg, StatePaths.from_env(), params["action"], params["reason"],
                                          params.get("version"))

    ask_first = cfg.serving.approval == "required"
    approval = _PROMOTE_APPROVAL_DOC.format(hours=cfg.serving.approval_timeout_hours) if ask_first else ""
    return _release_dag(cfg, "promote", f"Promote or retire the challenger of {cfg.model_name}",
                        PROMOTE_DOC.format(name=cfg.name, model=cfg.model_name, approval=approval), {
                            "action": Param("promote", type="string", enum=["promote", "retire"], title="Decision",
                                            description="promote: challenger becomes champion. retire: drop the "
                                                        "challenger."),
                            "reason": Param("", type="string", minLength=3, title="Reason",
                                            description="What the shadow or canary traffic showed; stored on the "
                                                        "version."),
                            "version": Param(None, type=["null", "string"], pattern="^[0-9]+$", title="Version",
                                             description="The challenger version decided on; empty = whichever "
                                                         "is challenger. Another challenger is refused."),
                            "proposed_by": Param(None, type=["null", "string"], title="Proposed by",
                                                 description="The monitoring run whose comparison proposed this "
                                                             "release; empty when you decide here."),
                        }, "move_aliases", move, ask_first=ask_first)


for _entry in read_model_configs():
    globals()[f"rollback_{_entry.name}"] = build_rollback_dag(_entry.config) if _entry.config \
        else stand_in_dag(f"rollback_{_entry.name}", _entry)
    globals()[f"promote_{_entry.name}"] = build_promote_dag(_entry.config) if _entry.config \
        else stand_in_dag(f"promote_{_entry.name}", _entry)
