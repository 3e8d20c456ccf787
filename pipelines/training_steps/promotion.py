"""The release steps of a training run: the gate's decision, infra validation of the candidate served by
a staging instance of the prediction service, a person's approval (``serving.approval: required``), and
registering the version with its alias."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import ModelConfig, StatePaths, training_dag_id
from pipelines.run_context import RunContext
from pipelines.step_cache import cached_step, config_digest

if TYPE_CHECKING:
    from pipelines.registry import Promotion
    from pipelines.training_steps.results import Evaluation, GateDecision, InfraChecked, Splits

log = logging.getLogger(__name__)


# gate ----------------------------------------------------------------------------------------------------
HOLDOUT_TAG = "holdout_digest"  # on the parent run the gate judged: which holdout it looked at


def gate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: Splits, evaluation: Evaluation) -> GateDecision:
    """Decide whether the candidate may replace the champion (``gate.decide_promotion``: with a champion, paired
    tests on both models' per-row predictions, the evaluation's ``paired_predictions``), counting this attempt
    on the holdout, and end the parent MLflow run with the decision."""
    import mlflow

    from pipelines.gate import decide_promotion
    from pipelines.holdout_pairs import HoldoutPairs
    from pipelines.tracking import configure_mlflow
    from pipelines.training_outcomes import NOT_PROMOTED, PASSED
    from pipelines.training_steps.results import GateDecision
    from pipelines.training_steps.run_records import record_step_verdict

    configure_mlflow(state)
    client = mlflow.MlflowClient()
    holdout = splits.digests.get("holdout")  # None: a holdout of unknown content, its attempts not counted
    pairs = HoldoutPairs.read(evaluation.paired_predictions, cfg.task_type) \
        if evaluation.champion is not None and evaluation.paired_predictions else None
    attempt = _earlier_attempts(client, splits, holdout) + 1 if holdout else None
    decision = decide_promotion(evaluation.candidate, evaluation.champion, cfg.gate_policy, cfg.task_type.metrics,
                                champion_error=evaluation.champion_error, pairs=pairs, attempt=attempt)
    record = GateDecision(**decision.to_dict(), champion_note=evaluation.champion_note,
                          candidate_run_id=evaluation.best_run_id)
    for line in [decision.summary(), *(f"  {'PASS' if r.passed else 'FAIL'} {r.message}" for r in decision.reasons)]:
        (log.info if decision.promote else log.warning)(line)
    record_step_verdict(cfg, state, splits.lineage, "gate", *(
        (PASSED, f"gate passed: all {len(decision.reasons)} checks") if decision.promote
        else (NOT_PROMOTED, f"gate refused: {decision.failed_checks()}")))
    for run_id in (splits.parent_run_id, evaluation.best_run_id):
        client.set_tag(run_id, "gate_decision", decision.verdict)
        client.set_tag(run_id, "gate_summary", decision.summary()[:4900])
    if holdout:
        client.set_tag(splits.parent_run_id, HOLDOUT_TAG, holdout)
        client.set_tag(splits.parent_run_id, "gate_attempt", str(attempt))
    client.log_dict(splits.parent_run_id, record.to_dict(), "gate/decision.json")
    client.set_terminated(splits.parent_run_id, status="FINISHED")
    if not decision.promote:
        from pipelines.alerts import alert

        alert(cfg, "gate_rejected", f"{ctx.dag_id} {ctx.run_id}: {decision.summary()}"[:2000],
              {"run_id": ctx.run_id, "reason": ctx.reason, "parent_run_id": splits.parent_run_id})
    return record


def _earlier_attempts(client, splits: Splits, holdout: str) -> int:
    """Gate decisions other training runs of the model made on this holdout (their parent runs carry its
    digest once the gate has judged them); a retry of this run's own gate does not count again."""
    runs = client.search_runs([splits.experiment_id], f"tags.{HOLDOUT_TAG} = '{holdout}'", max_results=10_000)
    return sum(1 for run in runs if run.info.run_id != splits.parent_run_id and "gate_decision" in run.data.tags)


# infra validation ----------------------------------------------------------------------------------------
def infra_validate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: Splits, evaluation: Evaluation,
                   sample_rows: int = 200) -> InfraChecked:
    """Serve the candidate from a staging instance of the prediction service and check it answers with the
    evaluated predictions. A failure is recorded on the run and stops the promotion; a pass is reused for
    the same model, holdout and serving code."""
    import mlflow

    from pipelines.tracking import configure_mlflow
    from pipelines.training_outcomes import NOT_PROMOTED, PASSED
    from pipelines.training_steps.results import InfraChecked
    from pipelines.training_steps.run_records import cache_tag, record_step_verdict, step_run

    configure_mlflow(state)
    cached = _serve_in_staging(step_run(cfg, ctx, state), {
        "model": evaluation.model_uri, "data": splits.digests["holdout"], "rows": str(sample_rows),
        "config": config_digest(cfg.features),
    }, cfg, splits.path("holdout"), Path(evaluation.holdout_output), evaluation.model_uri, sample_rows)
    outcome = InfraChecked(**cached.result, cache=cached.note.to_dict())
    (log.info if outcome.passed else log.error)("infra validation %s: %s",
                                                "passed" if outcome.passed else "FAILED", outcome.reason)
    record_step_verdict(cfg, state, splits.lineage, "infra_validate", *(
        (PASSED, f"infra validation passed: {outcome.reason}") if outcome.passed
        else (NOT_PROMOTED, f"infra validation failed: {outcome.reason}")))
    client = mlflow.MlflowClient()
    for run_id in (splits.parent_run_id, evaluation.best_run_id):
        client.set_tag(run_id, "infra_validation", "passed" if outcome.passed else "failed")
        client.set_tag(run_id, "infra_validation_reason", outcome.reason[:4900])
    client.set_tag(splits.parent_run_id, "cache.infra_validate", cache_tag(outcome.cache))
    return outcome


@cached_step("infra_validate", usable=lambda outcome: outcome["passed"])
def _serve_in_staging(_folder: Path, cfg: ModelConfig, holdout_path: Path, output_path: Path, model_uri: str,
                      sample_rows: int) -> dict:
    import numpy as np
    import pandas as pd

    from pipelines.infra_validation import InfraValidation, serving_example_of, validate_in_staging
    from pipelines.training import model_inputs

    holdout = pd.read_parquet(holdout_path)
    output = np.load(output_path)
    sample = holdout.sample(n=min(sample_rows, len(holdout)), random_state=0)
    try:
        example = serving_example_of(model_uri)
    except Exception as exc:
        return asdict(InfraValidation(False, f"cannot read the model's artifacts: {exc}"))
    return asdict(validate_in_staging(cfg.model_name, model_uri, model_inputs(sample, cfg.features),
                                      output[sample.index.to_numpy()], example))


# a person's approval (serving.approval: required) --------------------------------------------------------
def approval_request(cfg: ModelConfig, state: StatePaths, splits: Mapping[str, Any], decision: Mapping[str, Any],
                     evaluation: Mapping[str, Any]) -> str:
    """What the approver reads: the gate's decision and the candidate's metrics against the champion's (the
    records as XCom holds them)."""
    from pipelines.approval import approval_body
    from pipelines.tracking import mlflow_client, mlflow_run_url
    from pipelines.training_steps.results import Splits

    run_id = Splits.from_dict(splits).parent_run_id
    experiment_id = mlflow_client(state).get_run(run_id).info.experiment_id
    return approval_body(cfg.model_name, decision, evaluation, mlflow_run_url(experiment_id, run_id))


def record_approval(cfg: ModelConfig, state: StatePaths, split_record: Mapping[str, Any],
                    response: dict) -> dict[str, str]:
    """The approver's answer (or the time-out) as tags on the candidate's MLflow run; ``register`` copies
    them to the model version. A rejection raises an ``approval_rejected`` alert. ``split_record``: the
    ``Splits`` as XCom holds it."""
    from mlflow.entities import RunTag

    from pipelines.approval import ApprovalOutcome
    from pipelines.tracking import mlflow_client
    from pipelines.training_outcomes import NOT_PROMOTED, PASSED
    from pipelines.training_steps.results import Splits
    from pipelines.training_steps.run_records import record_step_verdict

    splits = Splits.from_dict(split_record)
    outcome = ApprovalOutcome.from_response(response, cfg.serving.approval_timeout_hours)
    (log.info if outcome.approved else log.warning)("candidate %s", outcome.summary())
    record_step_verdict(cfg, state, splits.lineage, "approve", *(
        (PASSED, outcome.summary()) if outcome.approved else (NOT_PROMOTED, f"approval {outcome.summary()}")))
    try:
        mlflow_client(state).log_batch(splits.parent_run_id,
                                       tags=[RunTag(key, value) for key, value in outcome.tags().items()])
    except Exception as exc:  # the answer stays in Airflow (the Required Action) and, approved, on the version
        log.error("the answer could not be stored on MLflow run %s: %s", splits.parent_run_id, exc)
    if not outcome.approved:
        from pipelines.alerts import alert

        alert(cfg, "approval_rejected", f"{cfg.model_name} candidate {outcome.summary()}"[:2000],
              {"parent_run_id": splits.parent_run_id})
    return outcome.tags()


# register and promote ------------------------------------------------------------------------------------
def _refuse_if_the_champion_moved(client, cfg: ModelConfig, ctx: RunContext, judged: str | None) -> None:
    """The gate judged the candidate against the champion of that moment (version ``judged``, None for no
    champion); if another version is champion now (a rollback or a promotion while the candidate waited for
    its approval), the comparison no longer holds."""
    from pipelines.errors import StaleComparisonError
    from pipelines.registry import CHAMPION, alias_version

    current = alias_version(client, cfg.model_name, CHAMPION)
    if str(current or "") == str(judged or ""):
        return
    if current and client.get_model_version(cfg.model_name, current).tags.get("airflow_run_id") == ctx.run_id:
        return  # this run's own version, made champion by an earlier try of this task
    raise StaleComparisonError(
        f"{cfg.model_name}'s champion is {f'v{current}' if current else 'gone'} now; the gate compared this "
        f"candidate with {f'v{judged}' if judged else 'no champion'}: nothing registered. Run "
        f"{training_dag_id(cfg.name)} again to judge a candidate against the current champion")


def register(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: Splits, evaluation: Evaluation,
             decision: GateDecision, approval: dict[str, str] | None = None) -> Promotion:
    """Register the candidate as a model version with its lineage, the gate's decision and the approval (when
    one was asked), and move its alias: ``champion``, or ``challenger`` for a shadow or canary rollout."""
    import mlflow

    from pipelines.registry import CHAMPION, promote_version, register_version, stage_challenger
    from pipelines.tracking import configure_mlflow
    from pipelines.training_outcomes import REGISTERED
    from pipelines.training_steps.run_records import record_step_verdict

    if not decision.promote:
        raise RuntimeError(f"refusing to register a rejected candidate: {decision.summary}")
    configure_mlflow(state)
    client = mlflow.MlflowClient()
    _refuse_if_the_champion_moved(client, cfg, ctx, evaluation.champion.model_version if evaluation.champion else None)
    margin = cfg.margin_metric
    tags = {
        **splits.lineage,
        "gate_decision": decision.verdict,
        "gate_summary": decision.summary[:4900],
        "infra_validation": "passed",
        f"holdout_{margin}": f"{evaluation.candidate.metrics[margin]:.4f}",
        "mlflow_parent_run_id": splits.parent_run_id,
        **(approval or {}),
        **evaluation.monitoring_tags,
        **({"threshold": str(evaluation.threshold)} if evaluation.threshold is not None else {}),
        **({"holdout_start": splits.holdout_start} if splits.holdout_start else {}),
        **({"classes": json.dumps(evaluation.classes)} if evaluation.classes else {}),
    }
    version = register_version(client, cfg.model_name, evaluation.model_uri, tags,
                               description=f"{cfg.description.strip()} Trained by {ctx.dag_id} {ctx.run_id}.")
    if cfg.serving.rollout == "direct":
        promotion = promote_version(client, cfg.model_name, version)
        log.info("%s v%s is champion (previous: %s)", cfg.model_name, version, promotion.previous_version)
    else:
        promotion = stage_challenger(client, cfg.model_name, version, cfg.serving.rollout, cfg.serving.canary_share)
        log.info("%s v%s is challenger in %s (champion stays v%s); promote or retire it with promote_%s",
                 cfg.model_name, version, cfg.serving.rollout, promotion.previous_version, cfg.name)
    record_step_verdict(cfg, state, splits.lineage, "register", REGISTERED,
                        f"registered v{version} as {promotion.alias}"
                        + (f" ({cfg.serving.rollout}; champion stays v{promotion.previous_version})"
                           if promotion.alias != CHAMPION else ""), str(version))
    return promotion




# deploy --------------------------------------------------------------------------------------------------
def deploy(cfg: ModelConfig, ctx: RunContext, state: StatePaths, promoted: Promotion) -> dict:
    """Have the prediction service follow the aliases ``register`` moved (``deployment.deploy``)."""
    from pipelines.deployment import deploy as follow_aliases

    return follow_aliases(cfg, asdict(promoted), state)
