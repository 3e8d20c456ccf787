"""Binary classification metrics, overall and per slice."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "f1": True, "log_loss": False, "brier": False}


def classification_metrics(truth: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    truth = np.asarray(truth).astype(int)
    scores = np.clip(np.asarray(scores, dtype=float), 1e-7, 1 - 1e-7)
    both_classes = np.unique(truth).size == 2
    return {
        "roc_auc": float(roc_auc_score(truth, scores)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(truth, scores)) if both_classes else float("nan"),
        "log_loss": float(log_loss(truth, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(truth, scores)),
        "f1": float(f1_score(truth, scores >= threshold, zero_division=0)),
        "positive_rate": float(truth.mean()),
        "rows": float(truth.size),
    }


def json_safe(values: dict) -> dict:
    """NaN (e.g. the ROC AUC of a one-class slice) becomes None: XCom and MLflow need strict JSON."""
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in values.items()}


def best_f1_threshold(truth: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    if thresholds.size == 0:
        return 0.5
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def slice_metrics(
    frame: pd.DataFrame, truth: np.ndarray, scores: np.ndarray, columns: list[str], threshold: float
) -> list[dict]:
    """One row per (column, value): rows, positive rate and the metrics above."""
    rows = []
    truth, scores = np.asarray(truth), np.asarray(scores)
    for column in columns:
        values = frame[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            rows.append(
                {"column": column, "value": value, **classification_metrics(truth[mask], scores[mask], threshold)}
            )
    return rows
