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
from pipelines.run_context import RunContext, git_commit, training_window_start
from pipelines.step_cache import StepRun, cached_step, config_digest

log = logging.getLogger(__name__)


def _incoming(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> Path:
    return state.curated(cfg.name) / "incoming" / ctx.interval_key


def _validated(cfg: ModelConfig, state: StatePaths) -> Path:
    return state.curated(cfg.name) / "validated"


def _steps(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> StepRun:
    from pipelines.step_cache import StepCache

    return StepRun(StepCache(state.cache(cfg.name)), ctx.run_id, ctx.force)


def _notes(upstream: dict, cached) -> dict:
    """The cache notes of the steps so far, passed along until the parent MLflow run records them."""
    return {**upstream.get("cache", {}), cached.note.step: cached.note.to_dict()}


# 1. ingest ----------------------------------------------------------------------------------------------
def ingest(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> dict:
    """The interval's landed files of every feed -> one Parquet partition per feed and the examples."""
    from pipelines.features import examples_builder
    from pipelines.ingest import landed_files
    from pipelines.step_cache import code_digest, files_digest

    landed = {f"data:{feed.name}": files_digest({path.name: path for path in landed_files(
        state.landing(cfg.landing_name, feed.name), ctx.start, ctx.end)}) for feed in cfg.feeds}
    cached = _ingest_examples(_steps(cfg, ctx, state), {
        **landed, "config": config_digest(*cfg.feeds, cfg.features.builder),
        "code": code_digest(_ingest_examples, examples_builder(cfg).__module__)}, cfg, ctx, state)
    # The batch moves in whole: a failure on the second feed never leaves a new first feed beside stale files.
    incoming = cached.place(_incoming(cfg, ctx, state))
    summary = {"interval": ctx.interval_key, "incoming": str(incoming), **cached.result, "cache": _notes({}, cached)}
    log.info("ingested %s", json.dumps(summary))
    return summary


@cached_step("ingest")
def _ingest_examples(folder: Path, cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> dict:
    from pipelines.ingest import ingest_model_examples
    from pipelines.storage import write_parquet_atomic

    batches, examples = ingest_model_examples(cfg, state, ctx.start, ctx.end, folder)
    write_parquet_atomic(examples, folder / "examples.parquet")
    return {"examples": len(examples),
            "feeds": {n: {"files": b.files, "rows": b.rows, "duplicates_dropped": b.duplicates_dropped}
                      for n, b in batches.items()}}


# 2. validate --------------------------------------------------------------------------------------------
def validate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, ingested: dict) -> dict:
    """Validate the interval's examples. Pass: the batch joins the validated store. Fail: it moves to
    quarantine, the report is kept, and DataValidationError names each failed expectation."""
    from pipelines.step_cache import file_digest
    from pipelines.validated_store import add_batch, usual_rows_per_day

    incoming = _incoming(cfg, ctx, state)
    examples_path = incoming / "examples.parquet"
    if not examples_path.exists():
        raise FileNotFoundError(f"no ingested batch at {examples_path}: run ingest for {ctx.interval_key} first")
    usual = usual_rows_per_day(_validated(cfg, state), ctx.start, cfg.validation.volume_lookback_days) \
        if cfg.features.event_time and cfg.validation.min_volume_ratio else None
    cached = _validate_examples(_steps(cfg, ctx, state), {
        "data": file_digest(examples_path), "suite": file_digest(cfg.expectation_suite_path),
        "usual_volume": str(usual), "checks": config_digest(cfg.validation),
        "config": config_digest(cfg.task, cfg.features.target, cfg.features.classes, cfg.features.positive_class),
    }, cfg, ctx, state, usual)
    report = _publish_report(cached.folder, _validation_report(cfg, ctx, state))
    validated = add_batch(_validated(cfg, state), incoming, ctx.start, ctx.end, ctx.run_id)
    return {"examples": str(validated.examples), "report": str(report),
            "evaluated": cached.result["evaluated"], "cache": _notes(ingested, cached)}


@cached_step("validate")
def _validate_examples(folder: Path, cfg: ModelConfig, ctx: RunContext, state: StatePaths,
                       usual: float | None) -> dict:
    import pandas as pd

    from pipelines.storage import replace_dir, write_text_atomic
    from pipelines.validation import (
        DataValidationError,
        load_suite_spec,
        render_report,
        validate_frame,
        with_batch_checks,
    )

    incoming = _incoming(cfg, ctx, state)
    examples = pd.read_parquet(incoming / "examples.parquet")
    outcome = validate_frame(examples, load_suite_spec(cfg.expectation_suite_path))
    outcome = with_batch_checks(outcome, examples, cfg.task_type, (ctx.end - ctx.start).days, usual,
                                cfg.validation.min_volume_ratio,
                                f"over the {cfg.validation.volume_lookback_days} days before {ctx.start}")
    write_text_atomic(render_report(outcome, f"{cfg.name} batch {ctx.interval_key}"), folder / "report.html")
    write_text_atomic(json.dumps([asdict(o) for o in outcome.outcomes], default=str, indent=1),
                      folder / "report.json")
    if not outcome.success:
        report = _publish_report(folder, _validation_report(cfg, ctx, state))
        shutil.copy(report, incoming / "validation_report.html")
        target = replace_dir(incoming, state.quarantine(cfg.name) / f"{ctx.interval_key}__{ctx.run_key}")
        log.error("batch %s quarantined at %s", ctx.interval_key, target)
        raise DataValidationError(outcome, report, f"the batch of {ctx.start}..{ctx.end - timedelta(days=1)} "
                                                   f"landed under {state.landing_root(cfg.landing_name)}")
    return {"evaluated": outcome.evaluated}


def _validation_report(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> Path:
    return state.reports(cfg.name) / "validation" / f"{ctx.interval_key}__{ctx.run_key}.html"


def _publish_report(folder: Path, report: Path) -> Path:
    """The validation report of ``folder`` where operators read it (``report``, with its JSON beside it)."""
    report.parent.mkdir(parents=True, exist_ok=True)
    for name in ("report.html", "report.json"):
        shutil.copyfile(folder / name, report.with_suffix(Path(name).suffix))
    log.info("validation report: %s", report)
    return report


# 3. version ---------------------------------------------------------------------------------------------
def snapshot(cfg: ModelConfig, ctx: RunContext, state: StatePaths, validated: dict) -> dict:
    """Assemble the training snapshot (every validated example up to the interval end) and version it."""
    from pipelines.step_cache import files_digest
    from pipelines.validated_store import window
    from pipelines.versioning import tag_revision

    window_start = training_window_start(cfg, ctx.end) or date.min
    parts = [batch.examples for batch in window(_validated(cfg, state), window_start, ctx.end)]
    if not parts:
        raise FileNotFoundError(f"no validated batches up to {ctx.end} under {_validated(cfg, state)}")
    cached = _version_snapshot(_steps(cfg, ctx, state), {
        "data": files_digest({f"{n:05d} {p.parent.name}": p for n, p in enumerate(parts)}),  # in their order
        "config": config_digest(cfg.split.training_window_days, cfg.features.event_time, cfg.features.example_id),
    }, cfg, ctx, state, parts)
    if cached.note.status == "hit":
        tag_revision(state.dvc_repo, cached.result["rev"], _snapshot_tag(cfg, ctx))
    local = cached.place(state.work(cfg.name, ctx.run_key) / "snapshot") / "snapshot.parquet"
    version = cached.result
    log.info("snapshot %s rows, dvc md5 %s, rev %s", version["rows"], version["md5"], version["rev"])
    return {**version, "local_path": str(local), "cache": _notes(validated, cached)}


@cached_step("version", usable=lambda version: Path(version["remote_url"]).is_file())
def _version_snapshot(folder: Path, cfg: ModelConfig, ctx: RunContext, state: StatePaths, parts: list[Path]) -> dict:
    import pandas as pd

    from pipelines.features import example_id_column
    from pipelines.storage import write_parquet_atomic
    from pipelines.versioning import version_snapshot

    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    id_column = example_id_column(cfg.features, frame)
    # Batches of overlapping intervals hold the same examples (a table without time is ingested whole by
    # each run): each example once, from the latest validated batch. Without an id, an example is its
    # content.
    frame = frame.drop_duplicates(subset=[id_column] if id_column else None, keep="last")
    order = [c for c in (cfg.features.event_time, id_column) if c]
    if order:
        frame = frame.sort_values(order, kind="stable")
    local = write_parquet_atomic(frame.reset_index(drop=True), folder / "snapshot.parquet")
    return asdict(version_snapshot(
        local, state.dvc_repo, state.dvc_remote, target=f"data/{cfg.name}/training_snapshot.parquet",
        message=f"{cfg.name}: training snapshot up to {ctx.end} ({ctx.dag_id} {ctx.run_id})",
        tag=_snapshot_tag(cfg, ctx)))


def _snapshot_tag(cfg: ModelConfig, ctx: RunContext) -> str:
    return f"{cfg.name}/{ctx.run_key}"


# 4. split -----------------------------------------------------------------------------------------------
def split(cfg: ModelConfig, ctx: RunContext, state: StatePaths, data: dict) -> dict:
    """Split the snapshot (by time, or randomly when the data has no event time), and open the parent MLflow
    run every candidate logs under; it records how each step so far used the cache."""
    import mlflow
    from mlflow.entities import Param, RunTag

    from pipelines.tracking import ensure_experiment

    cached = _split_snapshot(_steps(cfg, ctx, state), {
        "data": data["md5"],
        "config": config_digest(cfg.split, cfg.task, cfg.features.target, cfg.features.event_time,
                                cfg.features.example_id),
    }, cfg, Path(data["local_path"]))
    work = cached.place(state.work(cfg.name, ctx.run_key) / "split")
    notes = _notes(data, cached)
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
        **cached.result["describe"], "estimator": cfg.search.estimator,
    }.items()], tags=[RunTag(f"cache.{step}", _cache_tag(note)) for step, note in notes.items()])
    return {**{name: str(work / f"{name}.parquet") for name in PARTS}, "parent_run_id": parent_run_id,
            "experiment_id": experiment_id, "lineage": lineage, "holdout_start": cached.result["holdout_start"],
            "split_method": cached.result["split_method"], "digests": cached.result["digests"], "cache": notes}


PARTS = ("train", "validation", "holdout")


@cached_step("split")
def _split_snapshot(folder: Path, cfg: ModelConfig, snapshot_path: Path) -> dict:
    import pandas as pd

    from pipelines.features import example_id_column
    from pipelines.splitting import split_by_time, split_randomly
    from pipelines.step_cache import file_digest
    from pipelines.storage import write_parquet_atomic

    frame = pd.read_parquet(snapshot_path)
    if cfg.features.event_time:
        parts = split_by_time(frame, cfg.features.event_time, cfg.split)
    else:
        parts = split_randomly(frame, cfg.split, cfg.task_type.stratify_by(frame[cfg.features.target]),
                               example_id_column(cfg.features, frame))
    digests = {name: file_digest(write_parquet_atomic(getattr(parts, name), folder / f"{name}.parquet"))
               for name in PARTS}
    return {"holdout_start": parts.holdout_start.isoformat() if parts.holdout_start is not None else None,
            "split_method": parts.method, "describe": parts.describe(), "digests": digests}


def _cache_tag(note: dict) -> str:
    return f"{note['status']}: {note['detail']}"[:4900]


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


def _record(cfg: ModelConfig, state: StatePaths, lineage: dict, step: str, outcome: str, reason: str,
            version: str | None = None) -> None:
    """The run's verdict as ``step`` decided it (the run is named by its lineage tags). A task that fails for
    good records its own, from the DAG's failure callback."""
    from pipelines.training_outcomes import RunVerdict, record_verdict

    record_verdict(state, cfg.name, RunVerdict(lineage["airflow_dag_id"], lineage["airflow_run_id"], step, outcome,
                                               reason, version))


# 5. train (one mapped task per candidate) ---------------------------------------------------------------
def train(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, params: dict) -> dict:
    """Fit one candidate and log it as a child run. A candidate already trained on the same rows with the
    same settings and code is not fitted again: its child run points at the model trained then."""
    import mlflow

    from pipelines.step_cache import value_digest
    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    cached = _train_candidate(_steps(cfg, ctx, state), {
        "data": value_digest([splits["digests"]["train"], splits["digests"]["validation"]]),
        "config": config_digest(cfg.search.estimator, cfg.search.random_state, cfg.task, cfg.features),
        "params": value_digest(params),
        "gate_drill": str(ctx.shuffle_labels),
    }, cfg, ctx, splits, params)
    result = dict(cached.result)
    if cached.note.status == "hit":
        with _candidate_run(splits, params) as run:
            mlflow.log_params(_candidate_settings(cfg, ctx, params))
            mlflow.log_metrics({f"val_{k}": v for k, v in result["validation_metrics"].items() if v is not None})
            mlflow.set_tags({"cached_from_run_id": result["run_id"], "model_uri": result["model_uri"]})
        result["run_id"] = run.info.run_id
    mlflow.MlflowClient().set_tag(result["run_id"], "cache", _cache_tag(cached.note.to_dict()))
    return {**result, "cache": cached.note.to_dict()}


@cached_step("train", identity=("params",), usable=lambda result: _model_exists(result["model_uri"]))
def _train_candidate(_folder: Path, cfg: ModelConfig, ctx: RunContext, splits: dict, params: dict) -> dict:
    import mlflow
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from pipelines.metrics import json_safe
    from pipelines.tracking import log_sklearn_model
    from pipelines.training import model_inputs, train_candidate

    train_frame, validation = pd.read_parquet(splits["train"]), pd.read_parquet(splits["validation"])
    # Candidates train side by side: without a limit each would start one OpenMP thread per core and
    # they would fight over the cores (measured: 5x slower on 2 cores with 4 candidates).
    threads = max(1, (os.cpu_count() or 1) // cfg.search.max_parallel)
    started = time.perf_counter()
    with threadpool_limits(limits=threads):
        trained = train_candidate(train_frame, validation, cfg.task_type, cfg.search, params,
                                  shuffle_labels=ctx.shuffle_labels)
    fit_seconds = time.perf_counter() - started
    with _candidate_run(splits, params) as run:
        mlflow.log_params(_candidate_settings(cfg, ctx, params))
        mlflow.log_metrics({f"val_{k}": v for k, v in json_safe(trained.validation_metrics).items()
                            if v is not None})
        mlflow.log_metrics({"fit_seconds": fit_seconds, "threads": threads,
                            **({"threshold": trained.threshold} if trained.threshold is not None else {})})
        info = log_sklearn_model(trained.model, model_inputs(validation.head(5), cfg.features), cfg.task_type)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "params": params,
            "validation_metrics": json_safe(trained.validation_metrics), "threshold": trained.threshold}


def _candidate_settings(cfg: ModelConfig, ctx: RunContext, params: dict) -> dict:
    return {**params, "estimator": cfg.search.estimator, "shuffled_labels": ctx.shuffle_labels}


def _candidate_run(splits: dict, params: dict):
    """A candidate's child run under the run's parent."""
    import mlflow

    return mlflow.start_run(experiment_id=splits["experiment_id"],
                            run_name="candidate " + " ".join(f"{k}={v}" for k, v in params.items()),
                            parent_run_id=splits["parent_run_id"], tags=splits["lineage"])


def _model_exists(model_uri: str) -> bool:
    """A model an earlier run logged is still there (its run was not deleted)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return bool(mlflow.artifacts.list_artifacts(artifact_uri=model_uri))
    except (MlflowException, OSError):
        return False


# 6. evaluate --------------------------------------------------------------------------------------------
def evaluate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, candidates: list[dict]) -> dict:
    """Pick the best candidate on validation, then score it and the champion on the same holdout. Scoring a
    model on a holdout it has scored before, and drawing the same plots again, reuse the earlier outputs."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.entities import Metric, RunTag

    from pipelines.evaluation import plot_evaluation
    from pipelines.gate import EvaluationReport
    from pipelines.monitoring_tasks import calibration_for
    from pipelines.registry import CHAMPION, alias_version
    from pipelines.step_cache import code_digest
    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    task = cfg.task_type
    metric = cfg.selection_metric
    sign = 1 if task.metrics[metric] else -1
    scored = [c for c in candidates if c["validation_metrics"].get(metric) is not None]
    if not scored:
        raise ValueError(f"no candidate has a validation {metric}: is the validation window one class only?")
    best = max(scored, key=lambda c: sign * c["validation_metrics"][metric])
    holdout = pd.read_parquet(splits["holdout"])
    folder = state.work(cfg.name, ctx.run_key) / "evaluation"
    notes = {}
    steps = _steps(cfg, ctx, state)

    def holdout_scoring(model_uri: str, threshold: float | None, role: str):
        cached = _score_on_holdout(steps, {
            "model": model_uri, "data": splits["digests"]["holdout"], "threshold": str(threshold),
            "config": config_digest(cfg.task, cfg.features)}, cfg, holdout, model_uri, threshold)
        notes[f"evaluate.{role}"] = cached.note.to_dict()
        place = cached.place(folder / role)
        return (EvaluationReport.from_dict(cached.result["report"]), cached.result["classes"],
                np.load(place / "output.npy"), cached.note.key)

    candidate, classes, output, candidate_key = holdout_scoring(best["model_uri"], best["threshold"], "candidate")
    candidate = replace(candidate, data_hash=splits["lineage"]["data_hash"], holdout_start=splits["holdout_start"])

    client = mlflow.MlflowClient()
    champion, champion_output, champion_error, champion_key = None, None, None, None
    champion_note = "no champion yet"
    champion_version = alias_version(client, cfg.model_name, CHAMPION)
    if champion_version is not None:
        registered = client.get_model_version(cfg.model_name, champion_version)
        tags = registered.tags
        try:
            champion_report, champion_classes, champion_output, champion_key = holdout_scoring(
                registered.source, float(tags["threshold"]) if tags.get("threshold") else None, "champion")
        except Exception as exc:  # e.g. a champion on another feature set: the gate will refuse to guess
            champion_error = f"champion v{champion_version} could not score this holdout: {exc}"
            champion_note = champion_error
            champion_output = None
            log.warning(champion_error)
        else:
            champion = replace(champion_report, model_version=champion_version, data_hash=tags.get("data_hash"),
                               holdout_start=tags.get("holdout_start"))
            champion_note = f"champion v{champion_version} scored on the same holdout"
            if champion_classes != classes:
                champion_output, champion_key = None, None  # not drawn on the same axes

    plots = _draw_plots(steps, {"candidate": candidate_key, "champion": str(champion_key),
                                "code": code_digest(plot_evaluation)},
                        task, holdout, output, classes, candidate, champion_output)
    notes["evaluate.plots"] = plots.note.to_dict()
    plot_paths = [plots.place(folder / "plots") / name for name in plots.result["plots"]]
    calibration = _calibrate(steps, {
        "model": best["model_uri"], "threshold": str(best["threshold"]),
        "data": "+".join(splits["digests"][name] for name in PARTS),
        "config": config_digest(cfg.task, cfg.features, cfg.monitoring), "code": code_digest(calibration_for),
    }, cfg, splits, best["model_uri"], best["threshold"])
    notes["evaluate.calibrate"] = calibration.note.to_dict()
    limits_path = calibration.place(folder / "monitoring") / "limits.json"
    client.log_artifact(best["run_id"], str(limits_path), artifact_path="monitoring")
    result = {
        "best_run_id": best["run_id"], "model_uri": best["model_uri"], "params": best["params"],
        "threshold": best["threshold"], "classes": classes, "candidate": asdict(candidate),
        "champion": asdict(champion) if champion else None, "champion_note": champion_note,
        "champion_error": champion_error,
        "candidates": [{"run_id": c["run_id"], "params": c["params"], metric: c["validation_metrics"][metric]}
                       for c in candidates],
        # What the candidate answered for every holdout row: infra validation compares the service with it.
        "holdout_output": str(folder / "candidate" / "output.npy"),
        "monitoring_tags": calibration.result["tags"],
        "cache": notes,
    }
    (folder / "evaluation.json").write_text(json.dumps(result, indent=1, default=str, allow_nan=False))
    pd.DataFrame(candidate.slices).to_csv(folder / "slices.csv", index=False)
    holdout_metrics = [Metric(f"holdout_{k}", v, int(time.time() * 1000), 0)
                       for k, v in candidate.metrics.items() if v is not None]
    client.log_batch(best["run_id"], metrics=holdout_metrics)
    client.log_batch(splits["parent_run_id"], metrics=holdout_metrics, tags=[
        RunTag("best_candidate_run_id", best["run_id"]),
        *(RunTag(f"cache.{step}", _cache_tag(note)) for step, note in notes.items())])
    for path in [*plot_paths, folder / "evaluation.json", folder / "slices.csv"]:
        client.log_artifact(splits["parent_run_id"], str(path), artifact_path="evaluation")
    return result


@cached_step("calibrate")
def _calibrate(folder: Path, cfg: ModelConfig, splits: dict, model_uri: str, threshold: float | None) -> dict:
    """The candidate's monitoring calibration on its own snapshot (``limits.json``), computed once per model
    and data: its monitor judges windows with it once it is champion."""
    import pandas as pd

    from pipelines.monitoring_tasks import calibration_for
    from pipelines.storage import write_text_atomic
    from pipelines.tracking import load_sklearn_model

    parts = {name: pd.read_parquet(splits[name]) for name in PARTS}
    snapshot = pd.concat(parts.values(), ignore_index=True)
    if cfg.features.event_time:
        snapshot = snapshot.sort_values(cfg.features.event_time, kind="stable").reset_index(drop=True)
    calibration = calibration_for(cfg, snapshot, parts["holdout"], load_sklearn_model(model_uri), threshold)
    write_text_atomic(json.dumps(calibration.as_dict(), allow_nan=False), folder / "limits.json")
    return {"tags": calibration.tags()}


@cached_step("score")
def _score_on_holdout(folder: Path, cfg: ModelConfig, holdout, model_uri: str, threshold: float | None) -> dict:
    """One model's output and report on the holdout (``output.npy``), computed once per model and holdout."""
    import numpy as np

    from pipelines.evaluation import evaluate_output
    from pipelines.tracking import load_sklearn_model
    from pipelines.training import model_classes, model_inputs

    model = load_sklearn_model(model_uri)
    classes = model_classes(model)
    output = cfg.task_type.output(model, model_inputs(holdout, cfg.features))
    np.save(folder / "output.npy", output)
    return {"report": asdict(evaluate_output(cfg.task_type, holdout, output, classes, threshold)),
            "classes": classes}


@cached_step("plots")
def _draw_plots(folder: Path, task, holdout, output, classes, candidate, champion_output) -> dict:
    from pipelines.evaluation import plot_evaluation

    paths = plot_evaluation(task, holdout, output, classes, candidate, folder, champion_output)
    return {"plots": [p.name for p in paths]}


# 7. gate ------------------------------------------------------------------------------------------------
def gate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, evaluation: dict) -> dict:
    import mlflow

    from pipelines.gate import EvaluationReport, decide_promotion
    from pipelines.tracking import configure_mlflow
    from pipelines.training_outcomes import NOT_PROMOTED, PASSED

    configure_mlflow(state)
    champion = EvaluationReport.from_dict(evaluation["champion"]) if evaluation["champion"] else None
    decision = decide_promotion(EvaluationReport.from_dict(evaluation["candidate"]), champion, cfg.gate_policy,
                                cfg.task_type.metrics, champion_error=evaluation.get("champion_error"))
    record = {**decision.to_dict(), "champion_note": evaluation["champion_note"],
              "candidate_run_id": evaluation["best_run_id"]}
    for line in [decision.summary(), *(f"  {'PASS' if r.passed else 'FAIL'} {r.message}" for r in decision.reasons)]:
        (log.info if decision.promote else log.warning)(line)
    _record(cfg, state, splits["lineage"], "gate", *(
        (PASSED, f"gate passed: all {len(decision.reasons)} checks") if decision.promote
        else (NOT_PROMOTED, f"gate refused: {decision.failed_checks()}")))
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
    evaluated predictions. A failure is recorded on the run and stops the promotion; a pass is reused for
    the same model, holdout and serving code."""
    import mlflow

    from pipelines.tracking import configure_mlflow
    from pipelines.training_outcomes import NOT_PROMOTED, PASSED

    configure_mlflow(state)
    cached = _serve_in_staging(_steps(cfg, ctx, state), {
        "model": evaluation["model_uri"], "data": splits["digests"]["holdout"], "rows": str(sample_rows),
        "config": config_digest(cfg.features),
    }, cfg, Path(splits["holdout"]), Path(evaluation["holdout_output"]), evaluation["model_uri"], sample_rows)
    outcome = cached.result
    (log.info if outcome["passed"] else log.error)("infra validation %s: %s",
                                                   "passed" if outcome["passed"] else "FAILED", outcome["reason"])
    _record(cfg, state, splits["lineage"], "infra_validate", *(
        (PASSED, f"infra validation passed: {outcome['reason']}") if outcome["passed"]
        else (NOT_PROMOTED, f"infra validation failed: {outcome['reason']}")))
    client = mlflow.MlflowClient()
    for run_id in (splits["parent_run_id"], evaluation["best_run_id"]):
        client.set_tag(run_id, "infra_validation", "passed" if outcome["passed"] else "failed")
        client.set_tag(run_id, "infra_validation_reason", outcome["reason"][:4900])
    client.set_tag(splits["parent_run_id"], "cache.infra_validate", _cache_tag(cached.note.to_dict()))
    return {**outcome, "cache": cached.note.to_dict()}


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


# 7c. a person's approval (serving.approval: required) ---------------------------------------------------
def approval_request(cfg: ModelConfig, state: StatePaths, splits: dict, decision: dict, evaluation: dict) -> str:
    """What the approver reads: the gate's decision and the candidate's metrics against the champion's."""
    from pipelines.approval import approval_body
    from pipelines.tracking import mlflow_client, mlflow_run_url

    run_id = splits["parent_run_id"]
    experiment_id = mlflow_client(state).get_run(run_id).info.experiment_id
    return approval_body(cfg.model_name, decision, evaluation, mlflow_run_url(experiment_id, run_id))


def record_approval(cfg: ModelConfig, state: StatePaths, splits: dict, response: dict) -> dict[str, str]:
    """The approver's answer (or the time-out) as tags on the candidate's MLflow run; ``register`` copies
    them to the model version. A rejection raises an ``approval_rejected`` alert."""
    from mlflow.entities import RunTag

    from pipelines.approval import ApprovalOutcome
    from pipelines.tracking import mlflow_client
    from pipelines.training_outcomes import NOT_PROMOTED, PASSED

    outcome = ApprovalOutcome.from_response(response, cfg.serving.approval_timeout_hours)
    (log.info if outcome.approved else log.warning)("candidate %s", outcome.summary())
    _record(cfg, state, splits["lineage"], "approve", *(
        (PASSED, outcome.summary()) if outcome.approved else (NOT_PROMOTED, f"approval {outcome.summary()}")))
    try:
        mlflow_client(state).log_batch(splits["parent_run_id"],
                                       tags=[RunTag(key, value) for key, value in outcome.tags().items()])
    except Exception as exc:  # the answer stays in Airflow (the Required Action) and, approved, on the version
        log.error("the answer could not be stored on MLflow run %s: %s", splits["parent_run_id"], exc)
    if not outcome.approved:
        from pipelines.alerts import alert

        alert(cfg, "approval_rejected", f"{cfg.model_name} candidate {outcome.summary()}"[:2000],
              {"parent_run_id": splits["parent_run_id"]})
    return outcome.tags()


# 8. register and promote --------------------------------------------------------------------------------
def _refuse_if_the_champion_moved(client, cfg: ModelConfig, ctx: RunContext, evaluation: dict) -> None:
    """The gate judged the candidate against the champion of that moment; if another version is champion now
    (a rollback or a promotion while the candidate waited for its approval), the comparison no longer holds."""
    from pipelines.errors import StaleComparisonError
    from pipelines.registry import CHAMPION, alias_version

    judged = (evaluation.get("champion") or {}).get("model_version")
    current = alias_version(client, cfg.model_name, CHAMPION)
    if str(current or "") == str(judged or ""):
        return
    if current and client.get_model_version(cfg.model_name, current).tags.get("airflow_run_id") == ctx.run_id:
        return  # this run's own version, made champion by an earlier try of this task
    raise StaleComparisonError(
        f"{cfg.model_name}'s champion is {f'v{current}' if current else 'gone'} now; the gate compared this "
        f"candidate with {f'v{judged}' if judged else 'no champion'}: nothing registered. Run train_{cfg.name} "
        "again to judge a candidate against the current champion")


def register(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: dict, evaluation: dict,
             decision: dict, approval: dict | None = None) -> dict:
    import mlflow

    from pipelines.registry import CHAMPION, promote_version, register_version, stage_challenger
    from pipelines.tracking import configure_mlflow
    from pipelines.training_outcomes import REGISTERED

    if not decision.get("promote"):
        raise RuntimeError(f"refusing to register a rejected candidate: {decision.get('summary')}")
    configure_mlflow(state)
    client = mlflow.MlflowClient()
    _refuse_if_the_champion_moved(client, cfg, ctx, evaluation)
    margin = cfg.margin_metric
    tags = {
        **splits["lineage"],
        "gate_decision": decision["verdict"],
        "gate_summary": decision["summary"][:4900],
        "infra_validation": "passed",
        f"holdout_{margin}": f"{evaluation['candidate']['metrics'][margin]:.4f}",
        "mlflow_parent_run_id": splits["parent_run_id"],
        **(approval or {}),
        **evaluation.get("monitoring_tags", {}),
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
    _record(cfg, state, splits["lineage"], "register", REGISTERED,
            f"registered v{version} as {promotion.alias}"
            + (f" ({cfg.serving.rollout}; champion stays v{promotion.previous_version})"
               if promotion.alias != CHAMPION else ""), str(version))
    return asdict(promotion)


