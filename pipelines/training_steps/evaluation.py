"""The evaluation step of a training run: the best candidate and the champion scored on the same holdout,
their per-row predictions side by side (``paired_predictions.parquet`` on the candidate's MLflow run: what
the gate's paired tests compare), the plots, the candidate's monitoring calibration, and ``evaluation.json``
on the parent MLflow run.

Scoring a model on a holdout it has scored before, drawing the same plots and calibrating the same model on
the same data again reuse the earlier outputs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import ModelConfig, StatePaths
from pipelines.run_context import RunContext
from pipelines.step_cache import Cached, StepRun, cached_step, config_digest

if TYPE_CHECKING:
    from pipelines.gate import EvaluationReport
    from pipelines.training_steps.results import Candidate, Evaluation, Splits

log = logging.getLogger(__name__)


def evaluate(cfg: ModelConfig, ctx: RunContext, state: StatePaths, splits: Splits,
             candidates: list[Candidate]) -> Evaluation:
    """Pick the best candidate on validation, score it and the champion on the same holdout, draw the plots,
    calibrate the candidate's monitoring, and record it all on the parent MLflow run."""
    import mlflow
    import pandas as pd

    from pipelines.tracking import configure_mlflow
    from pipelines.training_steps.candidates import select_best
    from pipelines.training_steps.results import Evaluation
    from pipelines.training_steps.run_records import step_run

    configure_mlflow(state)
    client = mlflow.MlflowClient()
    steps = step_run(cfg, ctx, state)
    folder = state.work(cfg.name, ctx.run_key) / "evaluation"
    best = select_best(cfg, candidates)
    holdout = pd.read_parquet(splits.holdout)
    candidate = _score(steps, cfg, splits, holdout, best.model_uri, best.threshold, folder / "candidate")
    report = replace(candidate.report, data_hash=splits.lineage["data_hash"], holdout_start=splits.holdout_start)
    champion = _score_champion(client, steps, cfg, splits, holdout, folder / "champion")
    plots, plot_paths = _plot(steps, cfg, holdout, candidate, report, champion, folder / "plots")
    calibration = _calibrate_candidate(steps, cfg, splits, best)
    client.log_artifact(best.run_id, str(calibration.place(folder / "monitoring") / "limits.json"),
                        artifact_path="monitoring")
    paired = _write_pairs(cfg, holdout, candidate, best.threshold, champion, folder / "paired_predictions.parquet")
    if paired is not None:
        client.log_artifact(best.run_id, str(paired), artifact_path="evaluation")
    notes = {"evaluate.candidate": candidate.cached.note.to_dict(),
             **({"evaluate.champion": champion.cached.note.to_dict()} if champion.cached else {}),
             "evaluate.plots": plots.note.to_dict(), "evaluate.calibrate": calibration.note.to_dict()}
    metric = cfg.selection_metric
    evaluation = Evaluation(
        best_run_id=best.run_id, model_uri=best.model_uri, params=best.params, threshold=best.threshold,
        classes=candidate.classes, candidate=report, champion=champion.report, champion_note=champion.note,
        champion_error=champion.error,
        candidates=[{"run_id": c.run_id, "params": c.params, metric: c.validation_metrics[metric]}
                    for c in candidates],
        holdout_output=str(folder / "candidate" / "output.npy"),
        monitoring_tags=calibration.result["tags"], cache=notes,
        paired_predictions=str(paired) if paired is not None else None)
    written = _write_evaluation(folder, evaluation)
    _log_evaluation(client, best.run_id, splits.parent_run_id, report.metrics, notes, [*plot_paths, *written])
    return evaluation


# scoring on the holdout ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Scored:
    """One model's report, classes and output on the holdout, and the cache outcome that holds them."""

    report: EvaluationReport
    classes: list | None
    output: Any  # numpy array, one row per holdout row
    cached: Cached


def _score(steps: StepRun, cfg: ModelConfig, splits: Splits, holdout, model_uri: str, threshold: float | None,
           place: Path) -> _Scored:
    import numpy as np

    from pipelines.gate import EvaluationReport

    cached = _score_on_holdout(steps, {
        "model": model_uri, "data": splits.digests["holdout"], "threshold": str(threshold),
        "config": config_digest(cfg.task, cfg.features)}, cfg, holdout, model_uri, threshold)
    output = np.load(cached.place(place) / "output.npy")
    return _Scored(EvaluationReport.from_dict(cached.result["report"]), cached.result["classes"], output, cached)


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


def _write_pairs(cfg: ModelConfig, holdout, candidate: _Scored, threshold: float | None, champion: _Champion,
                 dest: Path) -> Path | None:
    """Both models' per-row predictions on the holdout (``holdout_pairs.pair_predictions``), written whole or
    not at all; None without a scored champion (nothing to pair)."""
    from pipelines.features import example_id_column
    from pipelines.holdout_pairs import pair_predictions
    from pipelines.storage import write_parquet_atomic

    if champion.scored is None:
        dest.unlink(missing_ok=True)  # a file from an earlier try of this run would pair another champion
        return None
    theirs = champion.scored
    try:
        frame = pair_predictions(cfg.task_type, holdout, example_id_column(cfg.features, holdout), {
            "candidate": (candidate.output, candidate.classes, threshold),
            "champion": (theirs.output, theirs.classes, theirs.report.metrics.get("threshold"))},
            sorted({rule.column for rule in cfg.gate.slice_floors if rule.margin is not None}))
    except Exception as exc:  # the gate then refuses to compare: "cannot compare" never reads as "better"
        log.warning("the candidate's and the champion's predictions cannot be paired: %s", exc)
        dest.unlink(missing_ok=True)
        return None
    return write_parquet_atomic(frame, dest)


@dataclass(frozen=True)
class _Champion:
    """The champion on the candidate's holdout: its report (None without a champion, or when it could not
    score), what the gate is told about it, and its scoring."""

    note: str
    report: EvaluationReport | None = None
    error: str | None = None
    scored: _Scored | None = None

    @property
    def cached(self) -> Cached | None:
        return self.scored.cached if self.scored else None


def _score_champion(client, steps: StepRun, cfg: ModelConfig, splits: Splits, holdout, place: Path) -> _Champion:
    from pipelines.registry import CHAMPION, alias_version

    version = alias_version(client, cfg.model_name, CHAMPION)
    if version is None:
        return _Champion("no champion yet")
    registered = client.get_model_version(cfg.model_name, version)
    tags = registered.tags
    try:
        scored = _score(steps, cfg, splits, holdout, registered.source,
                        float(tags["threshold"]) if tags.get("threshold") else None, place)
    except Exception as exc:  # e.g. a champion on another feature set: the gate will refuse to guess
        error = f"champion v{version} could not score this holdout: {exc}"
        log.warning(error)
        return _Champion(error, error=error)
    report = replace(scored.report, model_version=version, data_hash=tags.get("data_hash"),
                     holdout_start=tags.get("holdout_start"))
    return _Champion(f"champion v{version} scored on the same holdout", report, scored=scored)


# plots and calibration ----------------------------------------------------------------------------------
def _plot(steps: StepRun, cfg: ModelConfig, holdout, candidate: _Scored, report: EvaluationReport, champion: _Champion,
          place: Path) -> tuple[Cached, list[Path]]:
    """The candidate's plots (and their paths at ``place``), with the champion drawn beside it when it answers
    on the same classes."""
    from pipelines.evaluation import plot_evaluation
    from pipelines.step_cache import code_digest

    beside = champion.scored if champion.scored and champion.scored.classes == candidate.classes else None
    cached = _draw_plots(steps, {"candidate": candidate.cached.note.key,
                                 "champion": str(beside.cached.note.key if beside else None),
                                 "code": code_digest(plot_evaluation)},
                         cfg.task_type, holdout, candidate.output, candidate.classes, report,
                         beside.output if beside else None)
    placed = cached.place(place)
    return cached, [placed / name for name in cached.result["plots"]]


@cached_step("plots")
def _draw_plots(folder: Path, task, holdout, output, classes, candidate, champion_output) -> dict:
    from pipelines.evaluation import plot_evaluation

    paths = plot_evaluation(task, holdout, output, classes, candidate, folder, champion_output)
    return {"plots": [p.name for p in paths]}


def _calibrate_candidate(steps: StepRun, cfg: ModelConfig, splits: Splits, best: Candidate) -> Cached:
    from pipelines.monitoring_tasks import calibration_for
    from pipelines.step_cache import code_digest
    from pipelines.training_steps.results import SPLIT_PARTS

    return _calibrate(steps, {
        "model": best.model_uri, "threshold": str(best.threshold),
        "data": "+".join(splits.digests[name] for name in SPLIT_PARTS),
        "config": config_digest(cfg.task, cfg.features, cfg.monitoring), "code": code_digest(calibration_for),
    }, cfg, {name: splits.path(name) for name in SPLIT_PARTS}, best.model_uri, best.threshold)


@cached_step("calibrate")
def _calibrate(folder: Path, cfg: ModelConfig, parts: dict[str, Path], model_uri: str,
               threshold: float | None) -> dict:
    """The candidate's monitoring calibration on its own snapshot (``limits.json``), computed once per model
    and data: its monitor judges windows with it once it is champion."""
    import pandas as pd

    from pipelines.monitoring_tasks import calibration_for
    from pipelines.storage import write_text_atomic
    from pipelines.tracking import load_sklearn_model

    frames = {name: pd.read_parquet(path) for name, path in parts.items()}
    snapshot = pd.concat(frames.values(), ignore_index=True)
    if cfg.features.event_time:
        snapshot = snapshot.sort_values(cfg.features.event_time, kind="stable").reset_index(drop=True)
    calibration = calibration_for(cfg, snapshot, frames["holdout"], load_sklearn_model(model_uri), threshold)
    write_text_atomic(json.dumps(calibration.as_dict(), allow_nan=False), folder / "limits.json")
    return {"tags": calibration.tags()}


# the record ---------------------------------------------------------------------------------------------
def _write_evaluation(folder: Path, evaluation: Evaluation) -> list[Path]:
    """``evaluation.json`` and the candidate's ``slices.csv``, each written whole or not at all."""
    import pandas as pd

    from pipelines.storage import write_text_atomic

    record = json.dumps(evaluation.to_dict(), indent=1, default=str, allow_nan=False)
    return [write_text_atomic(record, folder / "evaluation.json"),
            write_text_atomic(pd.DataFrame(evaluation.candidate.slices).to_csv(index=False), folder / "slices.csv")]


def _log_evaluation(client, best_run_id: str, parent_run_id: str, metrics: dict, notes: dict,
                    artifacts: list[Path]) -> None:
    """The holdout metrics on the best candidate's run and the parent's; the cache notes and the artifacts
    on the parent."""
    from mlflow.entities import Metric, RunTag

    from pipelines.training_steps.run_records import cache_tag

    holdout_metrics = [Metric(f"holdout_{k}", v, int(time.time() * 1000), 0) for k, v in metrics.items()
                       if v is not None]
    client.log_batch(best_run_id, metrics=holdout_metrics)
    client.log_batch(parent_run_id, metrics=holdout_metrics, tags=[
        RunTag("best_candidate_run_id", best_run_id),
        *(RunTag(f"cache.{step}", cache_tag(note)) for step, note in notes.items())])
    for path in artifacts:
        client.log_artifact(parent_run_id, str(path), artifact_path="evaluation")
