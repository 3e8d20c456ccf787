"""Metric values on their way out: strict JSON for XCom, MLflow and the monitoring store."""

from __future__ import annotations

import math


def json_safe(values: dict) -> dict:
    """NaN (e.g. the ROC AUC of a one-class slice) becomes None: XCom and MLflow need strict JSON."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
