"""The candidate's and the champion's per-row predictions on the shared holdout, side by side: what the gate's
paired tests (``pipelines.paired_tests``) compare, kept as ``paired_predictions.parquet`` so that anyone can
redo the comparison.

One row per holdout row, keyed by the example id when the config has one (else ``holdout_row``, the row's
position in the holdout), with ``truth`` (the target as the task type reads it) and, per model (prefix
``candidate_`` or ``champion_``), what its metrics are computed from: the task type's columns
(``TaskType.paired_columns``, read back by ``TaskType.paired_inputs``), e.g. for binary ``truth_positive``,
``<model>_score`` and ``<model>_predicted``; and, per slice column the gate compares the models on
(``SliceFloor.margin``), ``slice:<column>``: the row's value as text, as the evaluation's slices name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from pipelines.paired_tests import Framing, PairedComparison
    from pipelines.task_types import TaskType

MODELS = ("candidate", "champion")
ROW_COLUMN = "holdout_row"
SLICE_PREFIX = "slice:"


def pair_predictions(task: TaskType, holdout: pd.DataFrame, key: str | None,
                     outputs: dict[str, tuple[np.ndarray, list[str] | None, float | None]],
                     slices: Sequence[str] = ()) -> pd.DataFrame:
    """The frame of both models' predictions on ``holdout``; ``outputs``: model -> (output, classes,
    threshold), as the evaluation scored them; ``key``: the example id column, or None; ``slices``: the
    holdout's columns whose slices the gate compares."""
    import pandas as pd

    truth = task.labels(holdout[task.features.target])
    columns: dict[str, np.ndarray] = {
        (key or ROW_COLUMN): holdout[key].to_numpy() if key else np.arange(len(holdout)), "truth": truth}
    columns.update(task.paired_columns(truth, {model: outputs[model] for model in MODELS}))
    for column in slices:
        columns[SLICE_PREFIX + column] = holdout[column].astype(str).to_numpy()
    return pd.DataFrame(columns)


@dataclass(frozen=True)
class HoldoutPairs:
    """Both models' predictions on the same holdout rows (a ``pair_predictions`` frame of ``task``'s columns),
    and the paired test of any metric on them."""

    frame: pd.DataFrame
    task: TaskType

    @classmethod
    def read(cls, path, task: TaskType) -> HoldoutPairs:
        import pandas as pd

        return cls(pd.read_parquet(path), task)

    @property
    def rows(self) -> int:
        return len(self.frame)

    def where(self, column: str, value: str) -> HoldoutPairs:
        """The pairs of the slice ``column`` = ``value`` (as text, as the evaluation's slices name it); a
        ValueError when the frame holds no such column or row."""
        name = SLICE_PREFIX + column
        if name not in self.frame:
            raise ValueError(f"the paired predictions hold no slice column {column!r}")
        rows = self.frame[self.frame[name] == value].reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"the paired predictions hold no row of slice {column}={value}")
        return HoldoutPairs(rows, self.task)

    def compare(self, metric: str, *, framing: Framing, margin: float, alpha: float, effect: float | None,
                power: float) -> PairedComparison:
        """The paired test that fits ``metric`` (``paired_tests.compare_metric``) on the two models' rows, as
        the task type reads them back (``TaskType.paired_inputs``)."""
        from pipelines.paired_tests import compare_metric

        truth, (candidate, champion), threshold = self.task.paired_inputs(self.frame, metric, MODELS)
        return compare_metric(metric, truth, candidate, champion, framing=framing, margin=margin, alpha=alpha,
                              effect=effect, power=power, threshold=threshold)
