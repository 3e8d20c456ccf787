"""The data steps of a training run: ingest the interval's landed files, validate the batch, version the
training snapshot, split it.

Each step loads its inputs by reference, runs its work through the step cache and returns the record the
next step takes (``results``). Nothing here imports Airflow.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config import ModelConfig, StatePaths
from pipelines.run_context import RunContext, training_window_start
from pipelines.step_cache import cached_step, config_digest

if TYPE_CHECKING:
    from pipelines.training_steps.results import Ingested, Snapshot, Splits, Validated

log = logging.getLogger(__name__)


def _incoming(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> Path:
    return state.curated(cfg.name) / "incoming" / ctx.interval_key


def _validated(cfg: ModelConfig, state: StatePaths) -> Path:
    return state.curated(cfg.name) / "validated"


# ingest -------------------------------------------------------------------------------------------------
def ingest(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> Ingested:
    """The interval's landed files of every feed -> one Parquet partition per feed and the examples."""
    from pipelines.features import examples_builder
    from pipelines.ingest import landed_files
    from pipelines.step_cache import code_digest, files_digest
    from pipelines.training_steps.results import Ingested
    from pipelines.training_steps.run_records import cache_notes, step_run

    landed = {f"data:{feed.name}": files_digest({path.name: path for path in landed_files(
        state.landing(cfg.landing_name, feed.name), ctx.start, ctx.end)}) for feed in cfg.feeds}
    cached = _ingest_examples(step_run(cfg, ctx, state), {
        **landed, "config": config_digest(*cfg.feeds, cfg.features.builder),
        "code": code_digest(_ingest_examples, examples_builder(cfg).__module__)}, cfg, ctx, state)
    # The batch moves in whole: a failure on the second feed never leaves a new first feed beside stale files.
    incoming = cached.place(_incoming(cfg, ctx, state))
    ingested = Ingested(ctx.interval_key, str(incoming), cached.result["examples"], cached.result["feeds"],
                        cache_notes({}, cached))
    log.info("ingested %s", json.dumps(ingested.to_dict()))
    return ingested


@cached_step("ingest")
def _ingest_examples(folder: Path, cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> dict:
    from pipelines.ingest import ingest_model_examples
    from pipelines.storage import write_parquet_atomic

    batches, examples = ingest_model_examples(cfg, state, ctx.start, ctx.end, folder)
    write_parquet_atomic(examples, folder / "examples.parquet")
    return {"examples": len(examples),
            "feeds": {n: {"files": b.files, "rows": b.rows, "duplicates_dropped": b.duplicates_dropped}
                      for n, b in batches.items()}}


# validate -----------------------------------------------------------------------------------------------
def validate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, ingested: Ingested) -> Validated:
    """Validate the interval's examples. Pass: the batch joins the validated store. Fail: it moves to
    quarantine, the report is kept, and DataValidationError names each failed expectation."""
    from pipelines.step_cache import file_digest
    from pipelines.training_steps.results import Validated
    from pipelines.training_steps.run_records import cache_notes, step_run
    from pipelines.validated_store import add_batch, usual_rows_per_day

    incoming = _incoming(cfg, ctx, state)
    examples_path = incoming / "examples.parquet"
    if not examples_path.exists():
        raise FileNotFoundError(f"no ingested batch at {examples_path}: run ingest for {ctx.interval_key} first")
    usual = usual_rows_per_day(_validated(cfg, state), ctx.start, cfg.validation.volume_lookback_days) \
        if cfg.features.event_time and cfg.validation.min_volume_ratio else None
    cached = _validate_examples(step_run(cfg, ctx, state), {
        "data": file_digest(examples_path), "suite": file_digest(cfg.expectation_suite_path),
        "usual_volume": str(usual), "checks": config_digest(cfg.validation),
        "config": config_digest(cfg.task, cfg.features.target, cfg.features.classes, cfg.features.positive_class),
    }, cfg, ctx, state, usual)
    report = _publish_report(cached.folder, _validation_report(cfg, ctx, state))
    validated = add_batch(_validated(cfg, state), incoming, ctx.start, ctx.end, ctx.run_id)
    return Validated(str(validated.examples), str(report), cached.result["evaluated"],
                     cache_notes(ingested.cache, cached))


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
        write_text_atomic(report.read_text(), incoming / "validation_report.html")
        target = replace_dir(incoming, state.quarantine(cfg.name) / f"{ctx.interval_key}__{ctx.run_key}")
        log.error("batch %s quarantined at %s", ctx.interval_key, target)
        raise DataValidationError(outcome, report, f"the batch of {ctx.start}..{ctx.end - timedelta(days=1)} "
                                                   f"landed under {state.landing_root(cfg.landing_name)}")
    return {"evaluated": outcome.evaluated}


def _validation_report(cfg: ModelConfig, ctx: RunContext, state: StatePaths) -> Path:
    return state.reports(cfg.name) / "validation" / f"{ctx.interval_key}__{ctx.run_key}.html"


def _publish_report(folder: Path, report: Path) -> Path:
    """The validation report of ``folder`` where operators read it (``report``, with its JSON beside it)."""
    from pipelines.storage import write_text_atomic

    for name in ("report.html", "report.json"):
        write_text_atomic((folder / name).read_text(), report.with_suffix(Path(name).suffix))
    log.info("validation report: %s", report)
    return report


# version ------------------------------------------------------------------------------------------------
def snapshot(cfg: ModelConfig, ctx: RunContext, state: StatePaths, validated: Validated | None) -> Snapshot:
    """Assemble the training snapshot (every validated example up to the interval end) and version it."""
    from pipelines.step_cache import files_digest
    from pipelines.training_steps.results import Snapshot
    from pipelines.training_steps.run_records import cache_notes, step_run
    from pipelines.validated_store import window
    from pipelines.versioning import tag_revision

    window_start = training_window_start(cfg, ctx.end) or date.min
    parts = [batch.examples for batch in window(_validated(cfg, state), window_start, ctx.end)]
    if not parts:
        raise FileNotFoundError(f"no validated batches up to {ctx.end} under {_validated(cfg, state)}")
    cached = _version_snapshot(step_run(cfg, ctx, state), {
        "data": files_digest({f"{n:05d} {p.parent.name}": p for n, p in enumerate(parts)}),  # in their order
        "config": config_digest(cfg.split.training_window_days, cfg.features.event_time, cfg.features.example_id),
    }, cfg, ctx, state, parts)
    if cached.note.status == "hit":
        tag_revision(state.dvc_repo, cached.result["rev"], _snapshot_tag(cfg, ctx))
    local = cached.place(state.work(cfg.name, ctx.run_key) / "snapshot") / "snapshot.parquet"
    version = Snapshot(**cached.result, local_path=str(local),
                       cache=cache_notes(validated.cache if validated else {}, cached))
    log.info("snapshot %s rows, dvc md5 %s, rev %s", version.rows, version.md5, version.rev)
    return version


@cached_step("version", usable=lambda version: Path(version["remote_url"]).is_file())
def _version_snapshot(folder: Path, cfg: ModelConfig, ctx: RunContext, state: StatePaths,
                      parts: list[Path]) -> dict:
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


# split --------------------------------------------------------------------------------------------------
def split(cfg: ModelConfig, ctx: RunContext, state: StatePaths, data: Snapshot) -> Splits:
    """Split the snapshot (by time, or randomly when the data has no event time), and open the parent MLflow
    run every candidate logs under; it records how each step so far used the cache."""
    from pipelines.training_steps.results import SPLIT_PARTS, Splits
    from pipelines.training_steps.run_records import cache_notes, lineage_tags, open_parent_run, step_run

    cached = _split_snapshot(step_run(cfg, ctx, state), {
        "data": data.md5,
        "config": config_digest(cfg.split, cfg.task, cfg.features.target, cfg.features.event_time,
                                cfg.features.example_id),
    }, cfg, Path(data.local_path))
    work = cached.place(state.work(cfg.name, ctx.run_key) / "split")
    notes = cache_notes(data.cache, cached)
    lineage = lineage_tags(cfg, ctx, data)
    experiment_id, parent_run_id = open_parent_run(cfg, ctx, state, lineage, {
        "interval_start": ctx.start.isoformat(), "interval_end": ctx.end.isoformat(), "task": cfg.task,
        **cached.result["describe"], "estimator": cfg.search.estimator,
    }, notes)
    return Splits(**{name: str(work / f"{name}.parquet") for name in SPLIT_PARTS}, digests=cached.result["digests"],
                  holdout_start=cached.result["holdout_start"], split_method=cached.result["split_method"],
                  parent_run_id=parent_run_id, experiment_id=experiment_id, lineage=lineage, cache=notes)


@cached_step("split")
def _split_snapshot(folder: Path, cfg: ModelConfig, snapshot_path: Path) -> dict:
    import pandas as pd

    from pipelines.features import example_id_column
    from pipelines.splitting import split_by_time, split_randomly
    from pipelines.step_cache import file_digest
    from pipelines.storage import write_parquet_atomic
    from pipelines.training_steps.results import SPLIT_PARTS

    frame = pd.read_parquet(snapshot_path)
    if cfg.features.event_time:
        parts = split_by_time(frame, cfg.features.event_time, cfg.split)
    else:
        parts = split_randomly(frame, cfg.split, cfg.task_type.stratify_by(frame[cfg.features.target]),
                               example_id_column(cfg.features, frame))
    digests = {name: file_digest(write_parquet_atomic(getattr(parts, name), folder / f"{name}.parquet"))
               for name in SPLIT_PARTS}
    return {"holdout_start": parts.holdout_start.isoformat() if parts.holdout_start is not None else None,
            "split_method": parts.method, "describe": parts.describe(), "digests": digests}
