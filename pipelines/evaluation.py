"""Evaluate: holdout metrics overall and per slice, plus ROC, calibration and slice plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.gate import EvaluationReport
from pipelines.metrics import classification_metrics, json_safe, slice_metrics


def evaluate_scores(
    holdout: pd.DataFrame, scores: np.ndarray, target: str, slices: list[str], threshold: float,
    model_version: str | None = None,
) -> EvaluationReport:
    truth = holdout[target].to_numpy()
    return EvaluationReport(
        metrics=json_safe({**classification_metrics(truth, scores, threshold), "threshold": float(threshold)}),
        slices=[json_safe(row) for row in slice_metrics(holdout, truth, scores, slices, threshold)],
        model_version=model_version,
    )


def plot_evaluation(
    truth: np.ndarray, scores: np.ndarray, report: EvaluationReport, folder: Path,
    champion_scores: np.ndarray | None = None,
) -> list[Path]:
    """ROC curve, calibration curve and per-slice ROC AUC, as PNG files in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    curves = [("candidate", scores)] + ([("champion", champion_scores)] if champion_scores is not None else [])

    fig, ax = plt.subplots(figsize=(5, 5))
    for label, s in curves:
        fpr, tpr, _ = roc_curve(truth, s)
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate",
           title=f"ROC (candidate AUC {report.metrics['roc_auc']:.3f})")
    ax.legend()
    paths.append(folder / "roc.png")
    fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    for label, s in curves:
        observed, predicted = calibration_curve(truth, s, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="predicted probability", ylabel="observed frequency",
           title=f"Calibration (Brier {report.metrics['brier']:.3f})")
    ax.legend()
    paths.append(folder / "calibration.png")
    fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
    plt.close(fig)

    frame = pd.DataFrame(report.slices)
    if not frame.empty:
        frame["label"] = frame["column"] + "=" + frame["value"]
        fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(frame))))
        ax.barh(frame["label"], frame["roc_auc"].astype(float).fillna(0))
        ax.axvline(report.metrics["roc_auc"], color="k", ls=":", lw=1)
        ax.set(xlabel="ROC AUC", title="ROC AUC per slice (dotted: overall)", xlim=(0.4, 1))
        paths.append(folder / "slices.png")
        fig.savefig(paths[-1], dpi=90, bbox_inches="tight")
        plt.close(fig)
    return paths
