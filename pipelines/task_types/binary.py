"""Binary classification: the probability of the positive class, judged by ROC AUC (and PR AUC, log loss,
Brier, F1 at a threshold chosen on the validation rows)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.task_types.base import TargetDraft, TargetError
from pipelines.task_types.classification import Classification

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Label pairs whose positive class goes without saying.
TRUTHY = {"1", "true", "yes", "y", "t", "positive", "pos"}


class BinaryClassification(Classification):
    name = "binary"
    metrics = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False, "f1": True, "accuracy": True}
    selection_metric = "roc_auc"
    default_floors = {"roc_auc": 0.6}
    realized_metrics = frozenset(metrics)
    prediction_kind = "numeric"
    max_classes = 2
    too_many_classes = "set task: multiclass or regression"

    def positive_class(self, classes: list[str]) -> str:
        declared = self.features.positive_class
        if declared is not None:
            if declared not in classes:
                raise TargetError(f"positive_class {declared!r} is not among the labels {classes} of "
                                  f"{self.features.target!r}")
            return declared
        truthy = [c for c in classes if c.lower() in TRUTHY]
        if len(classes) == 2 and len(truthy) == 1:
            return truthy[0]
        raise TargetError(f"cannot tell which of the labels {classes} of {self.features.target!r} is the positive "
                          "class: set features.positive_class")

    @classmethod
    def draft_target(cls, values: pd.Series) -> TargetDraft:
        from dataclasses import replace

        drafted = super().draft_target(values)
        classes = drafted.classes
        if len(classes) != 2:
            raise TargetError(f"target column {values.name!r} holds {len(classes)} classes, a binary model needs two")
        truthy = [c for c in classes if c.lower() in TRUTHY]
        if len(truthy) == 1:
            return replace(drafted, positive_class=truthy[0], positive_reason=f"{truthy[0]!r} reads as the positive "
                                                                              "answer")
        return replace(drafted, positive_class=classes[-1], positive_reason=f"no label reads as the positive answer: "
                       f"{classes[-1]!r} (the last in sorted order) was picked, check it")

    def model_metadata(self, classes: list[str] | None) -> dict[str, Any]:
        return {**super().model_metadata(classes), "positive_class": self.positive_class(list(classes))}

    # target ------------------------------------------------------------------------------------------------
    def labels_problem(self, labels: list[str]) -> str | None:
        try:
            self.positive_class(labels)
        except TargetError as exc:
            return str(exc)
        return None

    # output ------------------------------------------------------------------------------------------------
    def scores(self, output: np.ndarray, classes: list[str] | None) -> np.ndarray:
        return output[:, list(classes).index(self.positive_class(list(classes)))]

    def answer(self, output: np.ndarray, classes: list[str] | None) -> dict[str, Any]:
        return {"classes": list(classes), "positive_class": self.positive_class(list(classes)),
                "probabilities": output.tolist()}

    def fit_threshold(self, truth: np.ndarray, output: np.ndarray, classes: list[str] | None) -> float | None:
        import numpy as np
        from sklearn.metrics import precision_recall_curve

        positive = np.asarray(truth) == self.positive_class(list(classes))
        precision, recall, thresholds = precision_recall_curve(positive, self.scores(output, classes))
        if thresholds.size == 0:
            return 0.5
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        return float(thresholds[int(np.argmax(f1))])

    # metrics -----------------------------------------------------------------------------------------------
    def evaluate(self, truth, output, classes, threshold) -> dict[str, float]:
        return self.realized(truth, self.scores(output, classes), classes, threshold)

    def realized(self, truth, scores, classes, threshold) -> dict[str, float]:
        import numpy as np
        from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, log_loss, roc_auc_score

        positive = (np.asarray(truth) == self.positive_class(list(classes))).astype(int)
        scores = np.clip(np.asarray(scores, dtype=float), 1e-7, 1 - 1e-7)
        cut = 0.5 if threshold is None else threshold
        both = np.unique(positive).size == 2
        if positive.size == 0:
            return {"rows": 0.0}
        return {
            "roc_auc": float(roc_auc_score(positive, scores)) if both else float("nan"),
            "pr_auc": float(average_precision_score(positive, scores)) if both else float("nan"),
            "log_loss": float(log_loss(positive, scores, labels=[0, 1])),
            "brier": float(brier_score_loss(positive, scores)),
            "f1": float(f1_score(positive, scores >= cut, zero_division=0)),
            "accuracy": float(np.mean((scores >= cut) == positive)),
            "positive_rate": float(positive.mean()),
            "rows": float(positive.size),
        }

    # plots -------------------------------------------------------------------------------------------------
    def plot_evaluation(self, truth, output, classes, metrics, slices, folder: Path,
                        champion_output=None) -> list[Path]:
        import numpy as np
        from sklearn.calibration import calibration_curve
        from sklearn.metrics import roc_curve

        from pipelines.task_types.plots import figure

        positive = (np.asarray(truth) == self.positive_class(list(classes))).astype(int)
        curves = [("candidate", self.scores(output, classes))]
        if champion_output is not None:
            curves.append(("champion", self.scores(champion_output, classes)))
        with figure(folder / "roc.png") as ax:
            for label, s in curves:
                fpr, tpr, _ = roc_curve(positive, s)
                ax.plot(fpr, tpr, label=label)
            ax.plot([0, 1], [0, 1], "k:", lw=1)
            ax.set(xlabel="false positive rate", ylabel="true positive rate",
                   title=f"ROC (candidate AUC {metrics['roc_auc']:.3f})")
            ax.legend()
        with figure(folder / "calibration.png") as ax:
            for label, s in curves:
                observed, predicted = calibration_curve(positive, s, n_bins=10, strategy="quantile")
                ax.plot(predicted, observed, marker="o", label=label)
            ax.plot([0, 1], [0, 1], "k:", lw=1)
            ax.set(xlabel="predicted probability", ylabel="observed frequency",
                   title=f"Calibration (Brier {metrics['brier']:.3f})")
            ax.legend()
        return [folder / "roc.png", folder / "calibration.png", *self.plot_slices(metrics, slices, folder)]
