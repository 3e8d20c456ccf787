"""Binary classification: the probability of the positive class, judged by ROC AUC (and PR AUC, log loss,
Brier, F1 at a threshold chosen on the validation rows)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.task_types.base import PairedInputs, TargetDraft, TargetError, TargetShape
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
    takes_positive_class = True
    challenger_metrics = ("log_loss", "brier")  # the log keeps the positive class's probability

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
    def target_fit(cls, shape: TargetShape) -> tuple[bool, str]:
        if shape.kind == "binary":
            return True, "holds two values"
        return False, f"it holds {shape.distinct} distinct values, not two"

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

    def loss_truth(self, values: pd.Series, classes: list[str] | None) -> np.ndarray:
        """1 where the outcome is the positive class, else 0."""
        import numpy as np

        return (np.asarray(self.labels(values)) == self.positive_class(self.known_classes(classes))).astype(int)

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
    def paired_columns(self, truth, outputs) -> dict[str, np.ndarray]:
        """``truth_positive`` (0/1, the positive class of the first model's classes) and, per model,
        ``<model>_score`` (the positive class's probability) and ``<model>_predicted`` (0/1 at the model's own
        threshold, 0.5 without one)."""
        columns: dict[str, np.ndarray] = {}
        for model, (output, classes, threshold) in outputs.items():
            score = self.scores(output, classes)
            if "truth_positive" not in columns:
                columns["truth_positive"] = (truth == self.positive_class(list(classes))).astype(int)
            columns[f"{model}_score"] = score
            columns[f"{model}_predicted"] = (score >= (0.5 if threshold is None else threshold)).astype(int)
        return columns

    def paired_inputs(self, frame, metric, models) -> PairedInputs:
        """The scores; for f1 and accuracy each model's 0/1 answers at its own threshold (cut again at 0.5)."""
        column = "predicted" if metric in ("f1", "accuracy") else "score"
        return PairedInputs(frame["truth_positive"].to_numpy(dtype=int),
                            tuple(frame[f"{model}_{column}"].to_numpy(dtype=float) for model in models), 0.5)

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

    # performance estimation ------------------------------------------------------------------------------
    ESTIMABLE = ("roc_auc",)
    MAX_ESTIMATE_ERROR = 0.03

    def fit_estimator(self, truth, scores, classes, metric, seed=0, holdout=None, importance=None):
        """Confidence-based performance estimation (NannyML's CBPE): the holdout's calibration of the
        positive-class probability turns each served row's score into its chance of being positive, and the
        metric's expectation follows. Two calibration maps are tried, isotonic (monotone steps) and logistic
        (Platt's two parameters on the score's logit), each fitted on one half of the holdout's days and
        checked on the other half against its realized value; the map with the smaller error is fitted on the
        whole holdout, and the estimate is refused when even that error is above ``MAX_ESTIMATE_ERROR``."""
        import numpy as np

        from pipelines.task_types.estimation import Estimator

        if metric not in self.ESTIMABLE:
            return None, f"not estimated: {metric} has no confidence-based estimate (only {', '.join(self.ESTIMABLE)})"
        positive = (np.asarray(truth) == self.positive_class(list(classes))).astype(float)
        scores = np.asarray(scores, dtype=float)
        if positive.size < 200 or positive.min() == positive.max():
            return None, "not estimated: the holdout is too small or one class only, so calibration cannot be checked"
        frame = holdout if holdout is not None and len(holdout) == positive.size else None
        halves = self.holdout_halves(frame, seed, rows=positive.size)
        checked = {}
        for name, fit in CALIBRATION_MAPS.items():
            errors = []
            for part, check in ((halves, ~halves), (~halves, halves)):
                if positive[part].min() == positive[part].max() or positive[check].min() == positive[check].max():
                    continue
                x, y = fit(scores[part], positive[part])
                estimated = _expected_metric(metric, scores[check], np.interp(scores[check], x, y), self._cut)
                realized = self.realized(np.asarray(truth)[check], scores[check], classes, self._cut)[metric]
                errors.append(abs(estimated - realized))
            if errors:
                checked[name] = float(np.mean(errors))
        if not checked:
            return None, "not estimated: a half of the holdout has one class only, so calibration cannot be checked"
        best = min(checked, key=checked.get)
        error = checked[best]
        x, y = CALIBRATION_MAPS[best](scores, positive)
        usable = error <= self.MAX_ESTIMATE_ERROR
        others = ", ".join(f"{name} {value:.3f}" for name, value in checked.items() if name != best)
        note = (f"estimated {metric} from probabilities calibrated on the holdout ({best} map): off by {error:.3f} on "
                "held-out halves of the holdout" + (f" ({others})" if others else "")
                + ("" if usable else f", more than {self.MAX_ESTIMATE_ERROR}: too poorly calibrated to estimate"))
        return Estimator(metric, [float(v) for v in x], [float(v) for v in y], round(error, 6), usable, note), note

    _cut = 0.5

    def estimate(self, scores, estimator, profile=None) -> float:
        import numpy as np

        scores = np.asarray(scores, dtype=float)
        scores = scores[np.isfinite(scores)]
        probabilities = np.interp(scores, estimator.calibration_x, estimator.calibration_y)
        return _expected_metric(estimator.metric, scores, probabilities, self._cut)

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


def _logistic(scores, positive, points: int = 256):
    """Platt scaling on the score's logit, as points of the fitted curve that ``np.interp`` reads (at the
    scores' quantiles, so the curve is followed where the scores are)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    def logit(values):
        values = np.clip(values, 1e-6, 1 - 1e-6)
        return np.log(values / (1 - values))

    fitted = LogisticRegression(C=1e6).fit(logit(scores)[:, None], positive)
    x = np.unique(np.quantile(scores, np.linspace(0, 1, points)))
    return x, fitted.predict_proba(logit(x)[:, None])[:, 1]


def _isotonic(scores, positive):
    """The isotonic regression of the outcome on the score, as the points ``np.interp`` reads it from."""
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, positive)
    return fitted.X_thresholds_, fitted.y_thresholds_


def _expected_metric(metric: str, scores, probabilities, cut: float) -> float:
    """The metric's expected value when each row is positive with its ``probabilities`` (ranked by
    ``scores``): ROC AUC from the expected true- and false-positive rates at each distinct score, or the
    expected accuracy at ``cut``."""
    import numpy as np

    if scores.size == 0:
        return float("nan")
    if metric == "accuracy":
        return float(np.mean(np.where(scores >= cut, probabilities, 1 - probabilities)))
    order = np.argsort(-scores, kind="stable")
    ranked, p = scores[order], probabilities[order]
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))  # last row of each distinct score
    tp, fp = np.cumsum(p)[ends], np.cumsum(1 - p)[ends]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr, fpr = np.concatenate(([0.0], tp / tp[-1])), np.concatenate(([0.0], fp / fp[-1]))
    return float(np.trapezoid(tpr, fpr))


CALIBRATION_MAPS = {"isotonic": _isotonic, "logistic": _logistic}
