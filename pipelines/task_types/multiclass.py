"""Multiclass classification: a probability per class, judged by macro F1 (and accuracy, log loss). The
prediction log keeps the predicted class (its index in the model's classes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.task_types.base import PairedInputs, TargetDraft, TargetShape
from pipelines.task_types.classification import Classification

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

class MulticlassClassification(Classification):
    name = "multiclass"
    metrics = {"macro_f1": True, "accuracy": True, "log_loss": False, "balanced_accuracy": True}
    selection_metric = "macro_f1"
    default_floors: dict[str, float] = {}
    realized_metrics = frozenset({"macro_f1", "accuracy", "balanced_accuracy"})
    challenger_metrics = ("accuracy",)  # the log keeps the predicted class, not the probabilities
    prediction_kind = "categorical"
    max_classes = 50
    estimate_unavailable = ("the prediction log keeps the predicted class, not the class probabilities, so "
                            "confidence cannot be read from it")

    @classmethod
    def target_fit(cls, shape: TargetShape) -> tuple[bool, str]:
        if shape.many_numbers:
            return False, f"its {shape.distinct} distinct numbers are a quantity, not classes"
        if shape.kind != "multiclass":
            return False, f"scikit-learn reads it as {shape.kind}, not multiclass"
        if shape.distinct > cls.max_classes:
            return False, (f"it holds {shape.distinct} distinct values, more than the {cls.max_classes} classes a "
                           f"{cls.name} classifier takes")
        return True, f"holds {shape.distinct} classes"

    @classmethod
    def draft_target(cls, values: pd.Series) -> TargetDraft:
        import math
        from dataclasses import replace

        majority = float(values.value_counts(normalize=True).iloc[0])
        return replace(super().draft_target(values), gate_floors={"accuracy": math.floor(majority * 100) / 100},
                       gate_reason=f"always answering the most frequent class scores accuracy {majority:.3f}")

    def scores(self, output: np.ndarray, classes: list[str] | None) -> np.ndarray:
        import numpy as np

        return np.argmax(output, axis=1).astype("float64")

    def answer(self, output: np.ndarray, classes: list[str] | None) -> dict[str, Any]:
        import numpy as np

        return {"classes": list(classes), "predicted_class": [classes[i] for i in np.argmax(output, axis=1)],
                "probabilities": output.tolist()}

    def batch_columns(self, output: np.ndarray, classes: list[str] | None) -> dict[str, np.ndarray]:
        import numpy as np

        best = np.argmax(output, axis=1)
        return {"predicted_class": np.asarray(classes, dtype=object)[best], "score": output.max(axis=1)}

    def paired_columns(self, truth, outputs) -> dict[str, np.ndarray]:
        """Per model, ``<model>_predicted`` (the class it answers) and ``<model>_p:<class>`` (its probability of
        each class)."""
        import numpy as np

        columns: dict[str, np.ndarray] = {}
        for model, (output, classes, _) in outputs.items():
            columns[f"{model}_predicted"] = np.asarray(classes, dtype=object)[np.argmax(output, axis=1)]
            for i, name in enumerate(classes):
                columns[f"{model}_p:{name}"] = output[:, i]
        return columns

    def paired_inputs(self, frame, metric, models) -> PairedInputs:
        """The predicted classes; for log loss the probability matrices over the classes both models answer
        (in the same order), on the rows whose class they know."""
        import numpy as np

        truth = frame["truth"].astype(str).to_numpy()
        if metric != "log_loss":
            return PairedInputs(truth, tuple(frame[f"{model}_predicted"].astype(str).to_numpy() for model in models))
        classes = {model: [c.split(":", 1)[1] for c in frame.columns if c.startswith(f"{model}_p:")]
                   for model in models}
        first, *others = models
        for model in others:
            if classes[model] != classes[first]:
                raise ValueError(f"the {first} answers classes {classes[first]}, the {model} "
                                 f"{classes[model]}: their log loss cannot be compared row by row")
        position = {name: i for i, name in enumerate(classes[first])}
        index = np.asarray([position.get(t, -1) for t in truth])
        known = index >= 0  # a class neither model knows has no probability to score (as the evaluation does)
        return PairedInputs(index[known], tuple(
            frame[[f"{model}_p:{c}" for c in classes[model]]].to_numpy(dtype=float)[known] for model in models))

    def loss_truth(self, values: pd.Series, classes: list[str] | None) -> np.ndarray:
        """The outcome's class index (-1 for a class the model never saw: always an error), as the log keeps
        the predicted class's."""
        return self._indices(self.labels(values), self.known_classes(classes))

    def _indices(self, truth: np.ndarray, classes: list[str]) -> np.ndarray:
        import numpy as np

        position = {c: i for i, c in enumerate(classes)}
        return np.asarray([position.get(t, -1) for t in truth], dtype=int)

    def evaluate(self, truth, output, classes, threshold) -> dict[str, float]:
        import numpy as np
        from sklearn.metrics import log_loss

        metrics = self.realized(truth, self.scores(output, classes), classes, threshold)
        index = self._indices(truth, classes)
        known = index >= 0  # a class the model never saw has no probability to score
        if known.any():
            probabilities = np.clip(output[known], 1e-7, 1)
            metrics["log_loss"] = float(log_loss(index[known], probabilities / probabilities.sum(axis=1, keepdims=True),
                                                 labels=list(range(len(classes)))))
        else:
            metrics["log_loss"] = float("nan")
        return metrics

    def realized(self, truth, scores, classes, threshold) -> dict[str, float]:
        import numpy as np
        from sklearn.metrics import balanced_accuracy_score, f1_score

        index = self._indices(truth, classes)
        predicted = np.asarray(scores).astype(int)
        if index.size == 0:
            return {"rows": 0.0}
        return {
            "macro_f1": float(f1_score(index, predicted, average="macro", labels=np.unique(index),
                                       zero_division=0)),
            "accuracy": float(np.mean(index == predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(index, predicted)),
            "rows": float(index.size),
        }

    def plot_evaluation(self, truth, output, classes, metrics, slices, folder: Path,
                        champion_output=None) -> list[Path]:
        import numpy as np
        from sklearn.metrics import confusion_matrix, f1_score

        from pipelines.task_types.plots import figure

        index, predicted = self._indices(truth, classes), np.argmax(output, axis=1)
        ticks = list(range(len(classes)))
        matrix = confusion_matrix(index, predicted, labels=ticks)
        size = max(4, 0.5 * len(classes) + 2)
        with figure(folder / "confusion_matrix.png", (size, size)) as ax:
            ax.imshow(matrix, cmap="Blues")
            for (i, j), count in np.ndenumerate(matrix):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
            ax.set(xticks=ticks, yticks=ticks, xticklabels=classes, yticklabels=classes, xlabel="predicted",
                   ylabel="actual", title=f"Confusion matrix (accuracy {metrics['accuracy']:.3f})")
        per_class = f1_score(index, predicted, average=None, labels=ticks, zero_division=0)
        with figure(folder / "class_f1.png", (6, max(3, 0.3 * len(classes)))) as ax:
            ax.barh(classes, per_class)
            ax.axvline(metrics["macro_f1"], color="k", ls=":", lw=1)
            ax.set(xlabel="F1", xlim=(0, 1), title="F1 per class (dotted: macro F1)")
        return [folder / "confusion_matrix.png", folder / "class_f1.png", *self.plot_slices(metrics, slices, folder)]
