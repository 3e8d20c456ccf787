"""Class labels as text: the one form labels take in configs, fitted models, answers and metrics. 1, 1.0
and "1" are the same class; True is "true"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the config reads label_text when it is parsed: numpy and pandas stay unloaded there
    import numpy as np
    import pandas as pd


def label_text(value: Any) -> str:
    """One class label as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def label_texts(values: pd.Series) -> np.ndarray:
    """A column of class labels as text. Missing labels stay None."""
    import numpy as np
    import pandas as pd

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
    import pandas as pd

    shown = [str(v) for v in pd.unique(values.dropna())[:limit]]
    return ", ".join(repr(v) for v in shown)
