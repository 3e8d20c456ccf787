"""How a loaded model scores one micro-batch of conformed requests (joined into one ``Columns``), on the scoring
thread.

``FrameScorer`` hands the model's own Pipeline one DataFrame: right for any model. ``OrdinalTreeScorer``
knows the pipeline the project trains for ``gradient_boosting`` (numeric columns passed through, categorical
ones ordinal-encoded with unknown and missing values as -1, then the estimator): it builds the very matrix
that ColumnTransformer builds straight from the request's arrays, one C-level lookup per categorical column,
and calls the estimator on it. That skips the DataFrame, the ColumnTransformer and the encoder's checks:
about 1.5 ms per batch of pure-Python work that holds the interpreter lock the event loop needs.

``scorer_for`` takes the direct path only for a pipeline of exactly that shape whose answers on a probe
(known, unknown and missing values) are identical to the pipeline's; any other model is scored whole.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pipelines.prediction_store import KnownCategories, TextCodes
from pipelines.serving.protocol import Columns, columns_frame

log = logging.getLogger("pipelines.serving")


class Scorer(Protocol):
    def score(self, columns: Columns) -> np.ndarray:
        """The model's output (``predict_proba`` or ``predict``) for the rows, in order."""

    def text_codes(self, values: dict[str, np.ndarray]) -> dict[str, TextCodes]:
        """One request's text columns encoded as this scorer encodes them (none if it has no such encoding)."""


class FrameScorer:
    """The model's Pipeline on one DataFrame of the batch."""

    def __init__(self, model: Any, method: str):
        self._predict = getattr(model, method)

    def score(self, columns: Columns) -> np.ndarray:
        return np.asarray(self._predict(columns_frame(columns)))

    def text_codes(self, values: dict[str, np.ndarray]) -> dict[str, TextCodes]:
        return {}


class OrdinalTreeScorer:
    """The project's gradient-boosting Pipeline, with the encoding done directly (see the module)."""

    def __init__(self, estimator: Any, method: str, numeric: list[str], categorical: list[str],
                 categories: list[np.ndarray]):
        self._predict = getattr(estimator, method)
        self.numeric, self.categorical = numeric, categorical
        # A missing value (NaN) is encoded -1 whether or not the encoder saw one (sklearn keeps NaN last in
        # its categories), and None is a category like any text: pandas' lookup keeps the two apart.
        self._codes = [pd.Index(c[:-1] if len(c) and _is_nan(c[-1]) else c, dtype=object) for c in categories]
        self._known = {column: KnownCategories.of(codes) for column, codes in zip(categorical, self._codes,
                                                                                   strict=True)}

    def text_codes(self, values: dict[str, np.ndarray]) -> dict[str, TextCodes]:
        return {column: known.codes(values[column]) for column, known in self._known.items() if known is not None}

    def score(self, columns: Columns) -> np.ndarray:
        matrix = np.empty((columns.rows, len(self.numeric) + len(self.categorical)), dtype=np.float64)
        for i, column in enumerate(self.numeric):
            matrix[:, i] = columns.values[column]
        for j, (column, codes) in enumerate(zip(self.categorical, self._codes, strict=True)):
            matrix[:, len(self.numeric) + j] = self._coded(columns, column, codes)  # unknown: -1
        return np.asarray(self._predict(matrix))

    def _coded(self, columns: Columns, column: str, codes: pd.Index) -> np.ndarray:
        """The column's codes: those the rows came with when they are this scorer's, else looked up."""
        sent = columns.codes.get(column)
        if sent is not None and sent.known is self._known[column]:
            return sent.codes
        return codes.get_indexer(columns.values[column])


def scorer_for(model: Any, method: str, numeric: list[str], categorical: list[str]) -> Scorer:
    """The direct scorer when ``model`` is the project's gradient-boosting pipeline and agrees with it on a
    probe; else the Pipeline scorer."""
    frame_scorer = FrameScorer(model, method)
    direct = _ordinal_tree_scorer(model, method, numeric, categorical)
    if direct is None:
        return frame_scorer
    probe = _probe(numeric, categorical, direct._codes)
    try:
        agrees = np.array_equal(direct.score(probe), frame_scorer.score(probe), equal_nan=True)
    except Exception as exc:  # the direct path must never make a model unservable
        log.warning("scoring the whole pipeline: the direct path failed its probe: %s", exc)
        return frame_scorer
    if not agrees:
        log.warning("scoring the whole pipeline: the direct path's answers differ on the probe")
        return frame_scorer
    return direct


def _ordinal_tree_scorer(model: Any, method: str, numeric: list[str],
                         categorical: list[str]) -> OrdinalTreeScorer | None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    encode, estimator = model.steps[0][1], model.steps[1][1]
    if not isinstance(encode, ColumnTransformer) or hasattr(estimator, "feature_names_in_"):
        return None
    spec = [(name, step, list(columns)) for name, step, columns in encode.transformers]
    if encode.remainder != "drop" or len(spec) != 2:
        return None
    (_, passthrough, passed), (encoder_name, _, encoded) = spec
    encoder = encode.named_transformers_[encoder_name]
    if passthrough != "passthrough" or passed != numeric or encoded != categorical \
            or type(encoder) is not OrdinalEncoder:
        return None
    if (encoder.handle_unknown, encoder.unknown_value, encoder.encoded_missing_value) != ("use_encoded_value", -1, -1) \
            or encoder.dtype is not np.float64 or encoder.min_frequency is not None \
            or encoder.max_categories is not None:
        return None
    return OrdinalTreeScorer(estimator, method, numeric, categorical, encoder.categories_)


def _probe(numeric: list[str], categorical: list[str], codes: list[pd.Index]) -> Columns:
    """Rows that cover known, unknown and missing values in every column."""
    rows = 12
    values: dict[str, np.ndarray] = {}
    for i, column in enumerate(numeric):
        values[column] = np.resize([0.0, 1.5, -3.0, np.nan, 100.0 + i, 7.0, 0.25, 1e6, -np.inf], rows)
    for column, known in zip(categorical, codes, strict=True):
        texts = [str(v) for v in known[:5] if isinstance(v, str)]
        cycle = [*texts, "\x00 unseen category", None, float("nan")]
        values[column] = np.array([cycle[k % len(cycle)] for k in range(rows)], dtype=object)
    return Columns(numeric + categorical, values, rows)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value
