"""Class labels as text: the one form labels take in configs, fitted models, answers and metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd


def label_texts(values: pd.Series) -> np.ndarray:
    """1, 1.0 and "1" are the same class; True is "true". Missing labels stay None."""
    present = values.notna()
    if pd.api.types.is_bool_dtype(values):
        text = values.map({True: "true", False: "false"})
    elif pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
        whole = bool(np.all(np.mod(numbers[present], 1) == 0))
        text = numbers.astype("Int64").astype(str) if whole else numbers.astype(str)
    else:
        text = values.astype(str)
    return np.where(present.to_numpy(), text.to_numpy(dtype=object), None)


def describe_values(values: pd.Series, limit: int = 5) -> str:
    shown = [str(v) for v in pd.unique(values.dropna())[:limit]]
    return ", ".join(repr(v) for v in shown)
