"""The I/O edge of the training DAG.

Each function here loads its inputs by reference (paths, run ids, model URIs), calls the pure steps,
saves what they produce and returns a small JSON-able dict for XCom. Nothing here imports Airflow: the
DAG passes in a ``RunContext`` built from its task context, so every function runs in a plain test too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pipelines.config import PROJECT_ROOT, ModelConfig, StatePaths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """Who is running and on what: the Airflow run id and the data interval [start, end)."""

    dag_id: str
    run_id: str
    start: date
    end: date
    reason: str = ""
    shuffle_labels: bool = False

    @property
    def run_key(self) -> str:
        return run_key(self.run_id)

    @property
    def interval_key(self) -> str:
        return f"{self.start.isoformat()}_{self.end.isoformat()}"


def run_key(run_id: str) -> str:
    """An Airflow run id as a safe file or tag name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_")


def _as_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def run_context_from(context: dict[str, Any], cfg: ModelConfig) -> RunContext:
    """Build a RunContext from an Airflow task context (any mapping with the same keys works).

    A scheduled or backfill run trains on its data interval. Any other run (manual, triggered by another
    DAG) takes the ``data_interval_start``/``data_interval_end`` Params or conf, else the model's
    ``default_interval``.
    """
    params = dict(context.get("params") or {})
    dag_run = context.get("dag_run")
    run_type = getattr(dag_run, "run_type", None)
    run_type = str(getattr(run_type, "value", run_type) or "")
    if run_type in ("scheduled", "backfill") and context.get("data_interval_start") is not None:
        # The schedule owns the interval; the Params' defaults only prefill the manual trigger form.
        start, end = _as_date(context["data_interval_start"]), _as_date(context["data_interval_end"])
    else:
        start, end = _as_date(params.get("data_interval_start")), _as_date(params.get("data_interval_end"))
        if (start is None or end is None) and cfg.default_interval is not None:
            start, end = start or cfg.default_interval[0], end or cfg.default_interval[1]
        if start is None or end is None:
            start = start or _as_date(context.get("data_interval_start"))
            end = end or _as_date(context.get("data_interval_end"))
    if start is None or end is None or start >= end:
        raise ValueError(f"data interval [{start}, {end}) is empty or unset: give data_interval_start < "
                         "data_interval_end (intervals are whole days; schedules run at most daily)")
    dag = context.get("dag")
    return RunContext(
        dag_id=getattr(dag, "dag_id", None) or context.get("dag_id", "manual"),
        run_id=str(context.get("run_id", "manual")),
        start=start,
        end=end,
        reason=str(params.get("reason") or ""),
        shuffle_labels=bool(params.get("gate_drill_shuffle_labels", False)),
    )


def git_commit() -> str:
    """The project's code version, marked ``-dirty`` when tracked files differ from the commit."""
    try:
        head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
                              check=True, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               check=True, capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("MLOPS_GIT_COMMIT", "unknown")


def _incoming(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> Path:
    return state.curated(cfg.name) / "incoming" / ctx.interval_key


def _validated(cfg: ModelConfig, state: StatePaths) -> Path:
    return state.curated(cfg.name) / "validated"


# 1. ingest ----------------------------------------------------------------------------------------------
def ingest(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> dict:
    from pipelines.features import load_builder
    from pipelines.ingest import ingest_examples
    from pipelines.storage import fresh_temp_dir, replace_dir, write_parquet_atomic

    incoming = _incoming(cfg, ctx, state)
    # Build the whole batch in a scratch folder and move it in at the end: a failure on the second feed
    # must not leave a new first feed beside stale files.
    scratch = fresh_temp_dir(incoming)
    try:
        batches, examples = ingest_examples(cfg.feeds, lambda feed: state.landing(cfg.name, feed), ctx.start,
                                            ctx.end, scratch, load_builder(cfg.features.builder))
        write_parquet_atomic(examples, scratch / "examples.parquet")
        replace_dir(scratch, incoming)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
    summary = {
        "interval": ctx.interval_key,
        "incoming": str(incoming),
        "examples": len(examples),
        "feeds": {n: {"files": b.files, "rows": b.rows, "duplicates_dropped": b.duplicates_dropped}
                  for n, b in batches.items()},
    }
    log.info("ingested %s", json.dumps(summary))
    return summary


# 2. validate --------------------------------------------------------------------------------------------
def validate(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> dict:
    """Validate the interval's examples. Pass: the batch joins the validated store. Fail: it moves to
    quarantine, the report is kept, and DataValidationError names each failed expectation."""
    import pandas as pd

    from pipelines.storage import replace_dir, write_text_atomic
    from pipelines.validation import DataValidationError, load_suite_spec, render_report, validate_frame

    incoming = _incoming(cfg, ctx, state)
    examples_path = incoming / "examples.parquet"
    if not examples_path.exists():
        raise FileNotFoundError(f"no ingested batch at {examples_path}: run ingest for {ctx.interval_key} first")
    outcome = validate_frame(pd.read_parquet(examples_path), load_suite_spec(cfg.expectation_suite_path))
    report_dir = state.reports(cfg.name) / "validation"
    report = report_dir / f"{ctx.interval_key}__{ctx.run_key}.html"
    write_text_atomic(render_report(outcome, f"{cfg.name} batch {ctx.interval_key}"), report)
    write_text_atomic(json.dumps([asdict(o) for o in outcome.outcomes], default=str, indent=1),
                      report.with_suffix(".json"))
    log.info("validation report: %s", report)
    if not outcome.success:
        shutil.copy(report, incoming / "validation_report.html")
        target = replace_dir(incoming, state.quarantine(cfg.name) / f"{ctx.interval_key}__{ctx.run_key}")
        log.error("batch %s quarantined at %s", ctx.interval_key, target)
        raise DataValidationError(outcome, report)
    validated = replace_dir(incoming, _validated(cfg, state) / ctx.interval_key)
    return {"examples": str(validated / "examples.parquet"), "report": str(report),
            "evaluated": outcome.evaluated}


# 3. version ---------------------------------------------------------------------------------------------
def snapshot(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> dict:
    """Assemble the training snapshot (every validated example up to the interval end) and version it."""
    import pandas as pd

    from pipelines.storage import write_parquet_atomic
    from pipelines.versioning import version_snapshot

    window_start = ctx.end - timedelta(days=cfg.split.training_window_days) if cfg.split.training_window_days \
        else date.min
    # Batches are chosen by their data interval, the same calendar the landing zone uses, never by
    # comparing event timestamps across time zones.
    parts = []
    for path in sorted(_validated(cfg, state).glob("*/examples.parquet")):
        _start, _, batch_end = path.parent.name.partition("_")
        if date.fromisoformat(batch_end) <= ctx.end and date.fromisoformat(batch_end) > window_start:
            parts.append(path)
    if not parts:
        raise FileNotFoundError(f"no validated batches up to {ctx.end} under {_validated(cfg, state)}")
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    id_column = "example_id" if "example_id" in frame.columns else None
    if id_column:
        frame = frame.drop_duplicates(subset=[id_column], keep="last")
    frame = frame.sort_values([cfg.features.event_time, *([id_column] if id_column else [])], kind="stable")
    work = state.work(cfg.name, ctx.run_key)
    local = write_parquet_atomic(frame.reset_index(drop=True), work / "snapshot.parquet")
    version = version_snapshot(
        local, state.dvc_repo, state.dvc_remote, target=f"data/{cfg.name}/training_snapshot.parquet",
        message=f"{cfg.name}: training snapshot up to {ctx.end} ({ctx.dag_id} {ctx.run_id})",
        tag=f"{cfg.name}/{ctx.run_key}",
    )
    log.info("snapshot %s rows, dvc md5 %s, rev %s", version.rows, version.md5, version.rev)
    return {**asdict(version), "local_path": str(local)}


# 4. features and split ----------------------------------------------------------------------------------
def split(cfg: ModelConfig, ctx: RunContext, state: StatePaths, data: dict) -> dict:
    """Time-based split of the snapshot, and the parent MLflow run every candidate logs under."""
    import mlflow
    import pandas as pd
    from mlflow.entities import Param

    from pipelines.splitting import split_by_time
    from pipelines.storage import write_parquet_atomic
    from pipelines.tracking import ensure_experiment

    frame = pd.read_parquet(data["local_path"])
    parts = split_by_time(frame, cfg.features.event_time, cfg.split)
    work = state.work(cfg.name, ctx.run_key)
    paths = {name: str(write_parquet_atomic(getattr(parts, name), work / f"{name}.parquet"))
             for name in ("train", "validation", "holdout")}
    experiment_id = ensure_experiment(cfg.name, state)
    lineage = lineage_tags(cfg, ctx, data)
    client = mlflow.MlflowClient()
    # The parent run stays RUNNING through training and evaluation; the gate ends it. A retried or
    # cleared split finds and reopens its own parent instead of starting a second one.
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
    client.log_batch(parent_run_id, params=[Param(k, str(v)) for k, v in {
        "interval_start": ctx.start.isoformat(), "interval_end": ctx.end.isoformat(),
        "rows_train": len(parts.train), "rows_validation": len(parts.validation),
        "rows_holdout": len(parts.holdout), "validation_start": parts.validation_start.isoformat(),
        "holdout_start": parts.holdout_start.isoformat(), "estimator": cfg.search.estimator,
    }.items()])
    return {**paths, "parent_run_id": parent_run_id, "experiment_id": experiment_id, "lineage": lineage,
            "holdout_start": parts.holdout_start.isoformat()}


def lineage_tags(cfg: ModelConfig, ctx: RunContext, data: dict) -> dict[str, str]:
    return {
        "model_config": cfg.name,
        "data_hash": data["md5"],
        "data_rev": data["rev"],
        "data_path": data["path"],
        "data_rows": str(data["rows"]),
        "data_interval": ctx.interval_key,
        "airflow_dag_id": ctx.dag_id,
        "airflow_run_id": ctx.run_id,
        "git_commit": git_commit(),
        "training_reason": ctx.reason[:500] or "none given",
    }


def mark_run_failed(splits: dict | None, reason: str, state: StatePaths | None = None) -> None:
    """Close the parent MLflow run as FAILED when a task after ``split`` fails for good."""
    if not splits or not splits.get("parent_run_id"):
        return
    import mlflow

    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    client = mlflow.MlflowClient()
    client.set_tag(splits["parent_run_id"], "failure", reason[:4900])
    client.set_terminated(splits["parent_run_id"], status="FAILED")


# 5. train (one mapped task per candidate) ---------------------------------------------------------------
def train(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, params: dict) -> dict:
    import mlflow
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from pipelines.metrics import json_safe
    from pipelines.tracking import configure_mlflow, log_sklearn_model
    from pipelines.training import model_inputs, train_candidate

    configure_mlflow(state)
    train_frame, validation = pd.read_parquet(splits["train"]), pd.read_parquet(splits["validation"])
    # Candidates train side by side: without a limit each would start one OpenMP thread per core and
    # they would fight over the cores (measured: 5x slower on 2 cores with 4 candidates).
    threads = max(1, (os.cpu_count() or 1) // cfg.search.max_parallel)
    started = time.perf_counter()
    with threadpool_limits(limits=threads):
        trained = train_candidate(train_frame, validation, cfg.features, cfg.search, params,
                                  shuffle_labels=ctx.shuffle_labels)
    fit_seconds = time.perf_counter() - started
    name = "candidate " + " ".join(f"{k}={v}" for k, v in params.items())
    with mlflow.start_run(experiment_id=splits["experiment_id"], run_name=name,
                          parent_run_id=splits["parent_run_id"], tags=splits["lineage"]) as run:
        mlflow.log_params({**params, "estimator": cfg.search.estimator,
                           "shuffled_labels": ctx.shuffle_labels})
        mlflow.log_metrics({f"val_{k}": v for k, v in json_safe(trained.validation_metrics).items() if v is not None})
        mlflow.log_metrics({"threshold": trained.threshold, "fit_seconds": fit_seconds, "threads": threads})
        info = log_sklearn_model(trained.model, model_inputs(validation.head(5), cfg.features))
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "params": params,
            "validation_metrics": json_safe(trained.validation_metrics), "threshold": trained.threshold}


# 6. evaluate --------------------------------------------------------------------------------------------
def evaluate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, candidates: list[dict]) -> dict:
    """Pick the best candidate on validation, then score it and the champion on the same holdout."""
    import mlflow
    import pandas as pd
    from mlflow.entities import Metric

    from pipelines.evaluation import evaluate_scores, plot_evaluation
    from pipelines.metrics import HIGHER_IS_BETTER
    from pipelines.registry import CHAMPION, alias_version
    from pipelines.tracking import configure_mlflow
    from pipelines.training import model_inputs

    configure_mlflow(state)
    metric = cfg.search.selection_metric
    sign = 1 if HIGHER_IS_BETTER[metric] else -1
    scored = [c for c in candidates if c["validation_metrics"].get(metric) is not None]
    if not scored:
        raise ValueError(f"no candidate has a validation {metric}: is the validation window one class only?")
    best = max(scored, key=lambda c: sign * c["validation_metrics"][metric])
    holdout = pd.read_parquet(splits["holdout"])
    inputs, truth = model_inputs(holdout, cfg.features), holdout[cfg.features.target].to_numpy()
    scores = mlflow.sklearn.load_model(best["model_uri"]).predict_proba(inputs)[:, 1]
    candidate = replace(
        evaluate_scores(holdout, scores, cfg.features.target, cfg.features.slices, best["threshold"]),
        data_hash=splits["lineage"]["data_hash"], holdout_start=splits["holdout_start"],
    )

    client = mlflow.MlflowClient()
    champion, champion_scores, champion_error = None, None, None
    champion_note = "no champion yet"
    champion_version = alias_version(client, cfg.model_name, CHAMPION)
    if champion_version is not None:
        tags = client.get_model_version(cfg.model_name, champion_version).tags
        try:
            model = mlflow.sklearn.load_model(f"models:/{cfg.model_name}/{champion_version}")
            champion_scores = model.predict_proba(inputs)[:, 1]
        except Exception as exc:  # e.g. a champion on another feature set: the gate will refuse to guess
            champion_error = f"champion v{champion_version} could not score this holdout: {exc}"
            champion_note = champion_error
            log.warning(champion_error)
        else:
            champion = replace(
                evaluate_scores(holdout, champion_scores, cfg.features.target, cfg.features.slices,
                                float(tags.get("threshold", 0.5)), model_version=champion_version),
                data_hash=tags.get("data_hash"), holdout_start=tags.get("holdout_start"),
            )
            champion_note = f"champion v{champion_version} scored on the same holdout"

    folder = state.work(cfg.name, ctx.run_key) / "evaluation"
    plots = plot_evaluation(truth, scores, candidate, folder, champion_scores)
    result = {
        "best_run_id": best["run_id"], "model_uri": best["model_uri"], "params": best["params"],
        "threshold": best["threshold"], "candidate": asdict(candidate),
        "champion": asdict(champion) if champion else None, "champion_note": champion_note,
        "champion_error": champion_error,
        "candidates": [{"run_id": c["run_id"], "params": c["params"], metric: c["validation_metrics"][metric]}
                       for c in candidates],
    }
    scores_path = folder / "holdout_scores.parquet"
    pd.DataFrame({"score": scores}).to_parquet(scores_path, index=False)
    result["holdout_scores"] = str(scores_path)
    (folder / "evaluation.json").write_text(json.dumps(result, indent=1, default=str, allow_nan=False))
    pd.DataFrame(candidate.slices).to_csv(folder / "slices.csv", index=False)
    holdout_metrics = [Metric(f"holdout_{k}", v, int(time.time() * 1000), 0)
                       for k, v in candidate.metrics.items() if v is not None]
    for run_id in (splits["parent_run_id"], best["run_id"]):
        client.log_batch(run_id, metrics=holdout_metrics)
    for path in [*plots, folder / "evaluation.json", folder / "slices.csv"]:
        client.log_artifact(splits["parent_run_id"], str(path), artifact_path="evaluation")
    client.set_tag(splits["parent_run_id"], "best_candidate_run_id", best["run_id"])
    return result


# 7. gate ------------------------------------------------------------------------------------------------
def gate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, evaluation: dict) -> dict:
    import mlflow

    from pipelines.gate import EvaluationReport, decide_promotion
    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    champion = EvaluationReport.from_dict(evaluation["champion"]) if evaluation["champion"] else None
    decision = decide_promotion(EvaluationReport.from_dict(evaluation["candidate"]), champion, cfg.gate,
                                champion_error=evaluation.get("champion_error"))
    record = {**decision.to_dict(), "champion_note": evaluation["champion_note"],
              "candidate_run_id": evaluation["best_run_id"]}
    for line in [decision.summary(), *(f"  {'PASS' if r.passed else 'FAIL'} {r.message}" for r in decision.reasons)]:
        (log.info if decision.promote else log.warning)(line)
    client = mlflow.MlflowClient()
    for run_id in (splits["parent_run_id"], evaluation["best_run_id"]):
        client.set_tag(run_id, "gate_decision", decision.verdict)
        client.set_tag(run_id, "gate_summary", decision.summary()[:4900])
    client.log_dict(splits["parent_run_id"], record, "gate/decision.json")
    client.set_terminated(splits["parent_run_id"], status="FINISHED")
    if not decision.promote:
        from pipelines.alerts import alert

        alert(cfg, "gate_rejected", f"{ctx.dag_id} {ctx.run_id}: {decision.summary()}"[:2000],
              {"run_id": ctx.run_id, "reason": ctx.reason, "parent_run_id": splits["parent_run_id"]})
    return record


# 7b. infra validation ----------------------------------------------------------------------------------
def infra_validate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, evaluation: dict,
                   sample_rows: int = 200) -> dict:
    """Serve the candidate from a staging instance of the prediction service and check it answers with the
    evaluated predictions. A failure is recorded on the run and stops the promotion."""
    import mlflow
    import pandas as pd

    from pipelines.infra_validation import InfraValidation, serving_example_of, validate_in_staging
    from pipelines.tracking import configure_mlflow
    from pipelines.training import model_inputs

    configure_mlflow(state)
    holdout = pd.read_parquet(splits["holdout"])
    scores = pd.read_parquet(evaluation["holdout_scores"])["score"].to_numpy()
    sample = holdout.sample(n=min(sample_rows, len(holdout)), random_state=0)
    try:
        example = serving_example_of(evaluation["model_uri"])
    except Exception as exc:
        outcome = InfraValidation(False, f"cannot read the model's artifacts: {exc}")
    else:
        outcome = validate_in_staging(cfg.model_name, evaluation["model_uri"], model_inputs(sample, cfg.features),
                                      scores[sample.index.to_numpy()], example)
    (log.info if outcome.passed else log.error)("infra validation %s: %s",
                                                "passed" if outcome.passed else "FAILED", outcome.reason)
    client = mlflow.MlflowClient()
    for run_id in (splits["parent_run_id"], evaluation["best_run_id"]):
        client.set_tag(run_id, "infra_validation", "passed" if outcome.passed else "failed")
        client.set_tag(run_id, "infra_validation_reason", outcome.reason[:4900])
    return asdict(outcome)


# 8. register and promote --------------------------------------------------------------------------------
def register(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, evaluation: dict,
             decision: dict) -> dict:
    import mlflow

    from pipelines.registry import promote_version, register_version, stage_challenger
    from pipelines.tracking import configure_mlflow

    if not decision.get("promote"):
        raise RuntimeError(f"refusing to register a rejected candidate: {decision.get('summary')}")
    configure_mlflow(state)
    client = mlflow.MlflowClient()
    tags = {
        **splits["lineage"],
        "gate_decision": decision["verdict"],
        "gate_summary": decision["summary"][:4900],
        "threshold": str(evaluation["threshold"]),
        "holdout_start": splits["holdout_start"],
        "infra_validation": "passed",
        "holdout_roc_auc": f"{evaluation['candidate']['metrics']['roc_auc']:.4f}",
        "mlflow_parent_run_id": splits["parent_run_id"],
    }
    version = register_version(client, cfg.model_name, evaluation["model_uri"], tags,
                               description=f"{cfg.description.strip()} Trained by {ctx.dag_id} {ctx.run_id}.")
    if cfg.serving.rollout == "direct":
        promotion = promote_version(client, cfg.model_name, version)
        log.info("%s v%s is champion (previous: %s)", cfg.model_name, version, promotion.previous_version)
    else:
        promotion = stage_challenger(client, cfg.model_name, version, cfg.serving.rollout, cfg.serving.canary_share)
        log.info("%s v%s is challenger in %s (champion stays v%s); promote or retire it with promote_%s",
                 cfg.model_name, version, cfg.serving.rollout, promotion.previous_version, cfg.name)
    return asdict(promotion)


# 9. deploy ----------------------------------------------------------------------------------------------
def serving_url(cfg: ModelConfig) -> str:
    return os.environ.get("MLOPS_SERVING_URL", cfg.serving.url).rstrip("/")


def deploy(cfg: ModelConfig, promotion: dict, state: StatePaths | None = None) -> dict:
    """Tell the prediction service to follow the aliases ``promotion`` moved, and wait until every worker
    serves the registry's ``champion`` (and ``challenger``, when there is one).

    If the service does not get there in ``serving.reload_timeout_s``, the aliases are put back as they were
    before the move (the service keeps, or returns to, the model it served) and the task fails with the
    service's last answer: a failed deploy never leaves ``champion`` on a version nobody serves. The task
    has no retries: a retry would read the restored aliases and report the old state as deployed; it already
    retries the service for ``reload_timeout_s``."""
    import mlflow

    from pipelines.registry import CHALLENGER, CHAMPION, alias_version, restore_aliases
    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    client = mlflow.MlflowClient()
    wanted = {"version": alias_version(client, cfg.model_name, CHAMPION),
              "challenger_version": alias_version(client, cfg.model_name, CHALLENGER)}
    url = serving_url(cfg)
    try:
        answer = wait_until_served(cfg, url, wanted)
    except Exception:  # whatever went wrong (timeout, a garbled answer), the service did not follow
        if promotion.get("before") is not None:
            restore_aliases(client, cfg.model_name, promotion["before"])
            log.error("deploy failed: %s aliases restored to %s", cfg.model_name, promotion["before"])
        raise
    log.info("prediction service at %s serves %s v%s (challenger %s) on all %s worker(s)", url, cfg.model_name,
             wanted["version"], wanted["challenger_version"], answer.get("workers", 1))
    return answer


def serves(answer: dict, wanted: dict[str, str | None]) -> bool:
    """Does one worker's /admin/reload answer show the wanted champion (and challenger, unless it runs none)?"""
    if str(answer.get("version")) != str(wanted["version"]):
        return False
    if answer.get("challenger_mode", "off") == "off":
        return True
    served = answer.get("challenger_version")
    return (None if served is None else str(served)) == wanted["challenger_version"]


def wait_until_served(cfg: ModelConfig, url: str, wanted: dict[str, str | None]) -> dict:
    """POST /admin/reload until every worker process has answered with the wanted versions.

    Each call opens a new connection, so the kernel hands it to any of the service's workers; a worker
    that has not loaded the versions yet loads them on that call."""
    import httpx

    deadline = time.monotonic() + cfg.serving.reload_timeout_s
    ready: set[int] = set()
    last: Any = None
    while time.monotonic() < deadline:
        try:
            response = httpx.post(f"{url}/admin/reload", params={"model": cfg.model_name}, timeout=30)
            last = response.json() if response.headers.get("content-type", "").startswith("application/json") \
                else response.text
            if response.status_code == 200 and isinstance(last, dict) and serves(last, wanted):
                ready.add(last.get("pid", 0))
                if len(ready) >= int(last.get("workers", 1)):
                    return last
                time.sleep(0.05)
                continue
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1)
    raise RuntimeError(f"prediction service at {url} did not serve {cfg.model_name} {wanted} on every worker "
                       f"within {cfg.serving.reload_timeout_s:.0f}s (last answer: {last})")


# rollback ------------------------------------------------------------------------------------------------
def rollback(cfg: ModelConfig, state: StatePaths, reason: str, to_version: str | None) -> dict:
    import mlflow

    from pipelines.registry import rollback as move_back
    from pipelines.tracking import configure_mlflow

    if not reason or len(reason.strip()) < 3:
        raise ValueError("a rollback needs a reason (at least 3 characters): it is stored on both versions")
    configure_mlflow(state)
    promotion = move_back(mlflow.MlflowClient(), cfg.model_name, reason.strip(), to_version or None)
    log.warning("%s rolled back: champion is v%s (was v%s). Reason: %s", cfg.model_name, promotion.version,
                promotion.previous_version, reason)
    return asdict(promotion)


def release_challenger(cfg: ModelConfig, state: StatePaths, action: str, reason: str) -> dict:
    """An operator's verdict on a shadow or canary rollout: ``promote`` the challenger to champion, or
    ``retire`` it (champion untouched). The reason is stored on the version."""
    import mlflow

    from pipelines.registry import promote_challenger, retire_challenger
    from pipelines.tracking import configure_mlflow

    if not reason or len(reason.strip()) < 3:
        raise ValueError("a release decision needs a reason (at least 3 characters): it is stored on the version")
    if action not in ("promote", "retire"):
        raise ValueError(f"action must be promote or retire, got {action!r}")
    configure_mlflow(state)
    move = promote_challenger if action == "promote" else retire_challenger
    promotion = move(mlflow.MlflowClient(), cfg.model_name, reason.strip())
    log.warning("%s challenger %sd: champion is v%s. Reason: %s", cfg.model_name, action, promotion.version, reason)
    return asdict(promotion)
