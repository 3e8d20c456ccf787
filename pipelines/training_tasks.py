"""The I/O edge of the training DAG.

Each function here loads its inputs by reference (paths, run ids, model URIs), calls the pure steps,
saves what they produce and returns a small JSON-able dict for XCom. Nothing here imports Airflow: the
DAG passes in a ``RunContext`` built from its task context, so every function runs in a plain test too.
What differs between binary, multiclass and regression models is asked of ``cfg.task_type``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, replace
from datetime import date, timedelta
from pathlib import Path

from pipelines.config import ModelConfig, StatePaths
from pipelines.run_context import RunContext, git_commit

log = logging.getLogger(__name__)


def _incoming(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> Path:
    return state.curated(cfg.name) / "incoming" / ctx.interval_key


def _validated(cfg: ModelConfig, state: StatePaths) -> Path:
    return state.curated(cfg.name) / "validated"


# 1. ingest ----------------------------------------------------------------------------------------------
def ingest(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> dict:
    from pipelines.ingest import ingest_model_examples
    from pipelines.storage import fresh_temp_dir, replace_dir, write_parquet_atomic

    incoming = _incoming(cfg, ctx, state)
    # Build the whole batch in a scratch folder and move it in at the end: a failure on the second feed
    # must not leave a new first feed beside stale files.
    scratch = fresh_temp_dir(incoming)
    try:
        batches, examples = ingest_model_examples(cfg, state, ctx.start, ctx.end, scratch)
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
    examples = pd.read_parquet(examples_path)
    outcome = validate_frame(examples, load_suite_spec(cfg.expectation_suite_path))
    report_dir = state.reports(cfg.name) / "validation"
    report = report_dir / f"{ctx.interval_key}__{ctx.run_key}.html"
    target_problem = (f"target column {cfg.features.target!r} is missing" if cfg.features.target not in examples
                      else cfg.task_type.target_problem(examples[cfg.features.target]))
    if target_problem:
        outcome = outcome.with_failure("target_fits_task", cfg.features.target,
                                       f"does not fit task {cfg.task!r}: {target_problem}")
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

    from pipelines.features import example_id_column
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
    id_column = example_id_column(cfg.features, frame)
    # Batches of overlapping intervals hold the same examples (a table without time is ingested whole by
    # each run): each example once, from the latest batch. Without an id, an example is its content.
    frame = frame.drop_duplicates(subset=[id_column] if id_column else None, keep="last")
    order = [c for c in (cfg.features.event_time, id_column) if c]
    if order:
        frame = frame.sort_values(order, kind="stable")
    work = state.work(cfg.name, ctx.run_key)
    local = write_parquet_atomic(frame.reset_index(drop=True), work / "snapshot.parquet")
    version = version_snapshot(
        local, state.dvc_repo, state.dvc_remote, target=f"data/{cfg.name}/training_snapshot.parquet",
        message=f"{cfg.name}: training snapshot up to {ctx.end} ({ctx.dag_id} {ctx.run_id})",
        tag=f"{cfg.name}/{ctx.run_key}",
    )
    log.info("snapshot %s rows, dvc md5 %s, rev %s", version.rows, version.md5, version.rev)
    return {**asdict(version), "local_path": str(local)}


# 4. split -----------------------------------------------------------------------------------------------
def split(cfg: ModelConfig, ctx: RunContext, state: StatePaths, data: dict) -> dict:
    """Split the snapshot (by time, or randomly when the data has no event time), and open the parent MLflow
    run every candidate logs under."""
    import mlflow
    import pandas as pd
    from mlflow.entities import Param

    from pipelines.features import example_id_column
    from pipelines.splitting import split_by_time, split_randomly
    from pipelines.storage import write_parquet_atomic
    from pipelines.tracking import ensure_experiment

    frame = pd.read_parquet(data["local_path"])
    if cfg.features.event_time:
        parts = split_by_time(frame, cfg.features.event_time, cfg.split)
    else:
        parts = split_randomly(frame, cfg.split, cfg.task_type.stratify_by(frame[cfg.features.target]),
                               example_id_column(cfg.features, frame))
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
        "interval_start": ctx.start.isoformat(), "interval_end": ctx.end.isoformat(), "task": cfg.task,
        **parts.describe(), "estimator": cfg.search.estimator,
    }.items()])
    holdout_start = parts.holdout_start.isoformat() if parts.holdout_start is not None else None
    return {**paths, "parent_run_id": parent_run_id, "experiment_id": experiment_id, "lineage": lineage,
            "holdout_start": holdout_start, "split_method": parts.method}


def lineage_tags(cfg: ModelConfig, ctx: RunContext, data: dict) -> dict[str, str]:
    return {
        "model_config": cfg.name,
        "data_hash": data["md5"],
        "data_rev": data["rev"],
        "data_path": data["path"],
        "data_rows": str(data["rows"]),
        "data_interval": ctx.interval_key,
        "task": cfg.task,
        "split_method": cfg.split_method,
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
        trained = train_candidate(train_frame, validation, cfg.task_type, cfg.search, params,
                                  shuffle_labels=ctx.shuffle_labels)
    fit_seconds = time.perf_counter() - started
    name = "candidate " + " ".join(f"{k}={v}" for k, v in params.items())
    with mlflow.start_run(experiment_id=splits["experiment_id"], run_name=name,
                          parent_run_id=splits["parent_run_id"], tags=splits["lineage"]) as run:
        mlflow.log_params({**params, "estimator": cfg.search.estimator,
                           "shuffled_labels": ctx.shuffle_labels})
        mlflow.log_metrics({f"val_{k}": v for k, v in json_safe(trained.validation_metrics).items() if v is not None})
        mlflow.log_metrics({"fit_seconds": fit_seconds, "threads": threads,
                            **({"threshold": trained.threshold} if trained.threshold is not None else {})})
        info = log_sklearn_model(trained.model, model_inputs(validation.head(5), cfg.features),
                                 cfg.task_type)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "params": params,
            "validation_metrics": json_safe(trained.validation_metrics), "threshold": trained.threshold}


# 6. evaluate --------------------------------------------------------------------------------------------
def evaluate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, candidates: list[dict]) -> dict:
    """Pick the best candidate on validation, then score it and the champion on the same holdout."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.entities import Metric

    from pipelines.evaluation import evaluate_output, plot_evaluation
    from pipelines.registry import CHAMPION, alias_version
    from pipelines.tracking import configure_mlflow
    from pipelines.training import model_classes, model_inputs

    configure_mlflow(state)
    task = cfg.task_type
    metric = cfg.selection_metric
    sign = 1 if task.metrics[metric] else -1
    scored = [c for c in candidates if c["validation_metrics"].get(metric) is not None]
    if not scored:
        raise ValueError(f"no candidate has a validation {metric}: is the validation window one class only?")
    best = max(scored, key=lambda c: sign * c["validation_metrics"][metric])
    holdout = pd.read_parquet(splits["holdout"])
    inputs = model_inputs(holdout, cfg.features)
    model = mlflow.sklearn.load_model(best["model_uri"])
    classes = model_classes(model)
    output = task.output(model, inputs)
    candidate = replace(evaluate_output(task, holdout, output, classes, best["threshold"]),
                        data_hash=splits["lineage"]["data_hash"], holdout_start=splits["holdout_start"])

    client = mlflow.MlflowClient()
    champion, champion_output, champion_error = None, None, None
    champion_note = "no champion yet"
    champion_version = alias_version(client, cfg.model_name, CHAMPION)
    if champion_version is not None:
        tags = client.get_model_version(cfg.model_name, champion_version).tags
        try:
            champion_model = mlflow.sklearn.load_model(f"models:/{cfg.model_name}/{champion_version}")
            champion_classes = model_classes(champion_model)
            champion_output = task.output(champion_model, inputs)
            champion_report = evaluate_output(task, holdout, champion_output, champion_classes,
                                              float(tags["threshold"]) if tags.get("threshold") else None,
                                              model_version=champion_version)
        except Exception as exc:  # e.g. a champion on another feature set: the gate will refuse to guess
            champion_error = f"champion v{champion_version} could not score this holdout: {exc}"
            champion_note = champion_error
            champion_output = None
            log.warning(champion_error)
        else:
            champion = replace(champion_report, data_hash=tags.get("data_hash"),
                               holdout_start=tags.get("holdout_start"))
            champion_note = f"champion v{champion_version} scored on the same holdout"
            if champion_classes != classes:
                champion_output = None  # not drawn on the same axes

    folder = state.work(cfg.name, ctx.run_key) / "evaluation"
    plots = plot_evaluation(task, holdout, output, classes, candidate, folder, champion_output)
    result = {
        "best_run_id": best["run_id"], "model_uri": best["model_uri"], "params": best["params"],
        "threshold": best["threshold"], "classes": classes, "candidate": asdict(candidate),
        "champion": asdict(champion) if champion else None, "champion_note": champion_note,
        "champion_error": champion_error,
        "candidates": [{"run_id": c["run_id"], "params": c["params"], metric: c["validation_metrics"][metric]}
                       for c in candidates],
    }
    # What the candidate answered for every holdout row, as served: infra validation compares the service with it.
    output_path = folder / "holdout_output.npy"
    np.save(output_path, output)
    result["holdout_output"] = str(output_path)
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
    decision = decide_promotion(EvaluationReport.from_dict(evaluation["candidate"]), champion, cfg.gate_policy,
                                cfg.task_type.metrics, champion_error=evaluation.get("champion_error"))
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
    import numpy as np
    import pandas as pd

    from pipelines.infra_validation import InfraValidation, serving_example_of, validate_in_staging
    from pipelines.tracking import configure_mlflow
    from pipelines.training import model_inputs

    configure_mlflow(state)
    holdout = pd.read_parquet(splits["holdout"])
    output = np.load(evaluation["holdout_output"])
    sample = holdout.sample(n=min(sample_rows, len(holdout)), random_state=0)
    try:
        example = serving_example_of(evaluation["model_uri"])
    except Exception as exc:
        outcome = InfraValidation(False, f"cannot read the model's artifacts: {exc}")
    else:
        outcome = validate_in_staging(cfg.model_name, evaluation["model_uri"], model_inputs(sample, cfg.features),
                                      output[sample.index.to_numpy()], example)
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
    margin = cfg.margin_metric
    tags = {
        **splits["lineage"],
        "gate_decision": decision["verdict"],
        "gate_summary": decision["summary"][:4900],
        "infra_validation": "passed",
        f"holdout_{margin}": f"{evaluation['candidate']['metrics'][margin]:.4f}",
        "mlflow_parent_run_id": splits["parent_run_id"],
        **({"threshold": str(evaluation["threshold"])} if evaluation["threshold"] is not None else {}),
        **({"holdout_start": splits["holdout_start"]} if splits["holdout_start"] else {}),
        **({"classes": json.dumps(evaluation["classes"])} if evaluation.get("classes") else {}),
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


