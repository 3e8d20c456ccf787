"""What the approver reads, and what an answer (or no answer) becomes on the candidate's run and version."""

from datetime import UTC, datetime

from pipelines.approval import REASON, ApprovalOutcome, approval_body

DECISION = {
    "promote": True, "verdict": "approved", "summary": "approved: all 2 checks passed",
    "champion_note": "champion v3 on the same holdout",
    "reasons": [
        {"check": "floor:roc_auc", "passed": True, "observed": 0.71234, "required": ">= 0.6", "message": "ok"},
        {"check": "margin:roc_auc", "passed": True, "observed": None, "required": ">= +0", "message": "no champion"},
    ],
}
EVALUATION = {"candidate": {"metrics": {"roc_auc": 0.71234, "log_loss": 0.5}},
              "champion": {"metrics": {"roc_auc": 0.7}}}


def test_the_approver_sees_every_gate_check_and_the_metrics_against_the_champion():
    body = approval_body("flights_delay", DECISION, EVALUATION, "http://mlflow/#/experiments/1/runs/abc")
    assert "approved: all 2 checks passed" in body and "champion v3 on the same holdout" in body
    assert "| floor:roc_auc | pass | 0.7123 | >= 0.6 |" in body
    assert "| margin:roc_auc | pass | n/a | >= +0 |" in body
    assert "| >= +0 | no champion |" in body  # each check's detail: a paired test's difference, interval, p-value
    assert "| roc_auc | 0.7123 | 0.7000 |" in body and "| log_loss | 0.5000 | n/a |" in body
    assert "http://mlflow/#/experiments/1/runs/abc" in body


def test_a_first_candidate_has_no_champion_column_values():
    body = approval_body("penguins", {**DECISION, "champion_note": None}, {"candidate": {"metrics": {"f1": 0.9}},
                                                                           "champion": None})
    assert "| f1 | 0.9000 | n/a |" in body and "Compared with" not in body


def test_an_answer_is_stored_with_who_gave_it_and_why():
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    approved = ApprovalOutcome.from_response({"chosen_options": ["Approve"], "params_input": {REASON: " looks good "},
                                              "responded_by_user": {"id": "1", "name": "admin"},
                                              "responded_at": at}, timeout_hours=72)
    assert approved.approved and approved.summary() == "approved by admin: looks good"
    assert approved.tags() == {"approval": "approved", "approval_by": "admin", "approval_at": at.isoformat(),
                               "approval_reason": "looks good"}
    rejected = ApprovalOutcome.from_response({"chosen_options": ["Reject"], "params_input": {REASON: "too slow"},
                                              "responded_by_user": {"id": "7", "name": "ops"}, "responded_at": at}, 72)
    assert not rejected.approved and rejected.tags()["approval"] == "rejected"
    assert rejected.summary() == "rejected by ops: too slow"


def test_no_answer_in_time_is_a_rejection_that_says_so():
    outcome = ApprovalOutcome.from_response({"chosen_options": ["Reject"], "params_input": {REASON: ""},
                                             "responded_by_user": None, "responded_at": None, "timedout": True}, 1.5)
    assert not outcome.approved and outcome.decision == "timed out"
    assert outcome.tags()["approval_reason"] == "no answer within 1.5 h" and outcome.by == ""
