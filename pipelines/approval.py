"""A person's approval (``serving.approval: required``) of a candidate, or of a release the monitoring DAG
proposes for a challenger: what the approver is shown, and what their answer (or its absence) becomes on the
candidate's MLflow run and, when approved, on its model version or in the release's reason.

Pure: the Airflow operator that asks (``pipelines.airflow_edge.approval_operator``) and the step that records
the answer (``training_steps.promotion.record_approval``) do the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

APPROVE, REJECT = "Approve", "Reject"  # the ApprovalOperator's two options
REASON = "approval_reason"  # the approver's one form field


@dataclass(frozen=True)
class ApprovalOutcome:
    approved: bool
    by: str  # who answered; empty when no one did before the time-out
    at: str  # ISO time of the answer (or of the time-out)
    reason: str
    timed_out: bool = False

    @property
    def decision(self) -> str:
        return "approved" if self.approved else "timed out" if self.timed_out else "rejected"

    @classmethod
    def from_response(cls, response: Mapping[str, Any], timeout_hours: float) -> ApprovalOutcome:
        """From the operator's answer (``chosen_options``, ``params_input``, ``responded_by_user``,
        ``responded_at``, ``timedout``). A time-out answers with the default, Reject, and no user."""
        user = response.get("responded_by_user") or {}
        by = str(user.get("name") or user.get("id") or "") if isinstance(user, Mapping) else str(user)
        at = response.get("responded_at")
        reason = str((response.get("params_input") or {}).get(REASON) or "").strip()
        timed_out = bool(response.get("timedout")) or not by  # the scheduler answered with the default
        if timed_out:
            reason = f"no answer within {timeout_hours:g} h" + (f"; {reason}" if reason else "")
        return cls(approved=not timed_out and list(response.get("chosen_options") or []) == [APPROVE], by=by,
                   at=at.isoformat() if isinstance(at, datetime) else str(at or ""), reason=reason,
                   timed_out=timed_out)

    def summary(self) -> str:
        who = f" by {self.by}" if self.by else ""
        return f"{self.decision}{who}" + (f": {self.reason}" if self.reason else "")

    def tags(self) -> dict[str, str]:
        """The answer as MLflow tags, on the candidate's training run and on its model version."""
        return {"approval": self.decision, "approval_by": self.by, "approval_at": self.at,
                "approval_reason": self.reason[:4900]}


def approval_body(model_name: str, decision: Mapping[str, Any], evaluation: Mapping[str, Any],
                  mlflow_run_url: str | None = None) -> str:
    """The Markdown the approver reads: the gate's verdict with every check, and the candidate's holdout
    metrics beside the champion's."""
    lines = [f"**{model_name}**: {decision.get('summary', '')}", ""]
    if decision.get("champion_note"):
        lines += [f"Compared with: {decision['champion_note']}", ""]
    lines += ["| Check | Result | Observed | Required | Detail |", "|---|---|---|---|---|"]
    for reason in decision.get("reasons", []):
        observed = reason.get("observed")
        lines.append(f"| {reason['check']} | {'pass' if reason['passed'] else 'FAIL'} | "
                     f"{_number(observed)} | {reason.get('required', '')} | "
                     f"{str(reason.get('message', '')).replace('|', '/')} |")
    candidate = (evaluation.get("candidate") or {}).get("metrics", {})
    champion = (evaluation.get("champion") or {}).get("metrics", {})
    lines += ["", "| Holdout metric | Candidate | Champion |", "|---|---|---|"]
    for metric in sorted(candidate):
        theirs = champion.get(metric)
        lines.append(f"| {metric} | {_number(candidate[metric])} | {_number(theirs)} |")
    if mlflow_run_url:
        lines += ["", f"Its training run in MLflow: {mlflow_run_url}"]
    lines += ["", "**Approve** registers and deploys it; **Reject** ends the run. Say why in *Reason*: it is "
              "stored with the decision."]
    return "\n".join(lines)


def release_subject(model_name: str, proposal: Mapping[str, Any]) -> str:
    """The question a proposed release asks: ``Promote challenger v3 of flights_delay?``."""
    return f"{str(proposal['action']).capitalize()} challenger v{proposal.get('version') or '?'} of {model_name}?"


def release_body(model_name: str, proposal: Mapping[str, Any]) -> str:
    """The Markdown the approver of a proposed release reads: who proposed what, and why."""
    action = proposal["action"]
    effect = ("the challenger becomes champion and the champion becomes previous" if action == "promote"
              else "the challenger stops being scored; the champion is untouched")
    return "\n".join([
        f"**{model_name}**: `{proposal.get('proposed_by')}` proposes to **{action}** challenger "
        f"v{proposal.get('version') or '?'} ({effect}).", "",
        f"Its comparison with the champion on labelled live rows: {proposal.get('reason', '')}", "",
        f"**Approve** {action}s it, and your reason is stored on the version with the proposal's; **Reject** "
        "moves nothing and stores nothing on the version (Airflow keeps your answer with this run)."])


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4f}"
