"""Task types: the one place that knows what binary classification, multiclass classification and
regression do differently.

A task type owns the estimators, what the target must look like, the metrics and their direction, the
decision threshold (binary), what the served model answers (class probabilities or a value) and the one
number per row the prediction log keeps, the per-row predictions the gate pairs with the champion's, the
plots that fit the task and the metrics monitoring can compute once the labels land. Every other module
asks the model's task type (``cfg.task_type``) or this registry (the task names a config and the command
line take, the task type a target column fits) and never branches on the task.

Importable at DAG parse time: numpy, pandas and scikit-learn are imported inside the methods. Task types
know nothing of the model config: they are given its features (``TaskFeatures``) and asked about the
metrics it names. Adding a task type is one module here and one line in ``TASK_TYPES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.task_types.base import TargetError, TargetShape, TaskFeatures, TaskType, model_classes
from pipelines.task_types.binary import BinaryClassification
from pipelines.task_types.multiclass import MulticlassClassification
from pipelines.task_types.regression import Regression

if TYPE_CHECKING:
    import pandas as pd

TASK_TYPES: dict[str, type[TaskType]] = {
    BinaryClassification.name: BinaryClassification,
    MulticlassClassification.name: MulticlassClassification,
    Regression.name: Regression,
}

__all__ = ["TASK_TYPES", "BinaryClassification", "LoggedFeatures", "MulticlassClassification", "Regression",
           "TargetError", "TaskFeatures", "TaskType", "infer_task_type", "model_classes", "task_type_named",
           "task_type_of_model"]


def task_type_named(name: str) -> type[TaskType]:
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown task type {name!r}: use one of {sorted(TASK_TYPES)}") from None


def infer_task_type(values: pd.Series) -> tuple[type[TaskType], str]:
    """The task type a target column (holding at least one value) fits, and why; a TargetError giving each
    task type's reason when none fits."""
    shape = TargetShape.of(values)
    refusals = []
    for task_type in TASK_TYPES.values():
        fits, why = task_type.target_fit(shape)
        if fits:
            return task_type, why
        refusals.append(f"{task_type.name}: {why}")
    raise TargetError(f"target column {values.name!r} fits no task type ({'; '.join(refusals)})")


@dataclass(frozen=True)
class LoggedFeatures:
    """A logged model's features as its signature and metadata tell them (``TaskFeatures``)."""

    numeric: list[str]
    categorical: list[str]
    target: str
    event_time: str | None = None
    classes: list[str] | None = None
    positive_class: str | None = None


def task_type_of_model(metadata: dict | None, model, numeric: list[str], categorical: list[str]) -> TaskType:
    """The task type of a logged model, from its MLmodel metadata (``TaskType.model_metadata``); for a model
    logged without it, from the estimator: a regressor, or a classifier of two or more classes (the
    positive class of two being the second, as scikit-learn orders them)."""
    metadata = dict(metadata or {})
    classes = getattr(model, "classes_", None)
    if "task" not in metadata:
        if classes is None or not hasattr(model, "predict_proba"):
            metadata["task"] = Regression.name
        else:
            metadata["task"] = BinaryClassification.name if len(classes) == 2 else MulticlassClassification.name
            if len(classes) == 2:
                metadata["positive_class"] = str(classes[1])
    features = LoggedFeatures(numeric=list(numeric), categorical=list(categorical),
                              target=metadata.get("target") or "_target", positive_class=metadata.get("positive_class"))
    return task_type_named(metadata["task"])(features)
