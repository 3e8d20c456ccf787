"""Approval steps (``serving.approval: required``): the standard provider's ``ApprovalOperator`` asking, in the
Airflow UI's Required Actions.

- :class:`CandidateApproval` (training DAG): may a candidate that passed the gate and infra validation be
  registered and deployed? It shows the gate's decision and the candidate's metrics against the champion's,
  takes a reason with the answer, and records the answer on the candidate's MLflow run before the operator
  acts on it (Approve lets ``register`` and ``deploy`` run; Reject, or no answer within
  ``serving.approval_timeout_hours``, skips them). While it waits, later runs of the DAG wait too.
- :class:`ReleaseApproval` (``promote_<model>``): may the release the monitoring DAG proposed for a
  challenger (``serving.challenger.act: propose``) go ahead? A run a person started from the form is their
  own decision and passes at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from pipelines.approval import REASON, REJECT, ApprovalOutcome, release_body, release_subject
from pipelines.config import ModelConfig, StatePaths


class _PersonsApproval(ApprovalOperator):
    """Approve or Reject with a reason, Reject when no one answers within ``serving.approval_timeout_hours``."""

    def __init__(self, *, cfg: ModelConfig, subject: str, params: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        # ``params`` arrives holding the DAG's params, which are not questions for the approver: the form asks
        # only for a reason.
        super().__init__(
            subject=subject,
            defaults=[REJECT],
            params={REASON: Param("", type="string", title="Reason", source="task",
                                  description="Why you approve or reject it; stored with the decision.")},
            response_timeout=timedelta(hours=cfg.serving.approval_timeout_hours),
            **kwargs,
        )
        self.cfg = cfg


class CandidateApproval(_PersonsApproval):
    def __init__(self, *, cfg: ModelConfig, **kwargs: Any) -> None:
        super().__init__(cfg=cfg, subject=f"Register and deploy the new {cfg.model_name} candidate?", **kwargs)

    def execute(self, context):
        from pipelines.training_steps.promotion import approval_request

        ti = context["ti"]
        self.body = approval_request(self.cfg, StatePaths.from_env(), ti.xcom_pull(task_ids="split"),
                                       ti.xcom_pull(task_ids="gate", key="decision"),
                                       ti.xcom_pull(task_ids="evaluate"))
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]):
        from pipelines.training_steps.promotion import record_approval

        if "error" not in event:
            self.validate_chosen_options(event["chosen_options"])
            ti = context["ti"]
            # The answer is kept by Airflow (the task's Required Action) whatever happens to MLflow here: a
            # failed write is logged, never a reason to ask the person again.
            answer = record_approval(self.cfg, StatePaths.from_env(), ti.xcom_pull(task_ids="split"), event)
            ti.xcom_push(key="approval", value=answer)
        return super().execute_complete(context, event)


class ReleaseApproval(_PersonsApproval):
    """Asks a person before a release the monitoring DAG proposed (the run's ``proposed_by`` param is set);
    passes at once when a person started the run. Reject, or no answer in time, skips the release."""

    def __init__(self, *, cfg: ModelConfig, **kwargs: Any) -> None:
        super().__init__(cfg=cfg, subject=f"Release the challenger of {cfg.model_name}?", **kwargs)

    def execute(self, context):
        proposal = dict(context["params"])
        if not proposal.get("proposed_by"):
            self.log.info("started by a person from the form: their decision, no approval asked")
            return None
        self.subject = release_subject(self.cfg.model_name, proposal)
        self.body = release_body(self.cfg.model_name, proposal)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]):
        if "error" not in event:
            self.validate_chosen_options(event["chosen_options"])
            answer = ApprovalOutcome.from_response(event, self.cfg.serving.approval_timeout_hours)
            context["ti"].xcom_push(key="approval", value=answer.summary())
        return super().execute_complete(context, event)
