"""Evaluate: holdout metrics overall and per slice, with the task type's metrics, plus its plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.gate import EvaluationReport
from pipelines.metrics import json_safe
from pipelines.task_types import TaskType


def evaluate_output(
    task: TaskType, holdout: pd.DataFrame, output: np.ndarray, classes: list[str] | None,
    threshold: float | None, model_version: str | None = None,
) -> EvaluationReport:
    """The report of one model's ``output`` on ``holdout`` (overall and per ``features.slices``)."""
    truth = task.labels(holdout[task.features.target])
    metrics = task.evaluate(truth, output, classes, threshold)
    if threshold is not None:
        metrics["threshold"] = float(threshold)
    slices = task.slice_metrics(holdout, truth, output, task.features.slices, classes, threshold)
    return EvaluationReport(metrics=json_safe(metrics), slices=[json_safe(row) for row in slices],
                            model_version=model_version)


def plot_evaluation(task: TaskType, holdout: pd.DataFrame, output: np.ndarray, classes: list[str] | None,
                    report: EvaluationReport, folder: Path, champion_output: np.ndarray | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    truth = task.labels(holdout[task.features.target])
    metrics = {k: (float("nan") if v is None else v) for k, v in report.metrics.items()}
    return task.plot_evaluation(truth, output, classes, metrics, report.slices, folder, champion_output)
