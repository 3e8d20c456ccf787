"""The candidate's and the champion's per-row predictions on the shared holdout, side by side: what the gate's
paired tests (``pipelines.paired_tests``) compare, kept as ``paired_predictions.parquet`` so that anyone can
redo the comparison.

One row per holdout row, keyed by the example id when the config has one (else ``holdout_row``, the row's
position in the holdout), with ``truth`` (the target as the task type reads it) and, per model (prefix
``candidate_`` or ``champion_``), what its metrics are computed from: the task type's columns
(``TaskType.paired_columns``, read back by ``TaskType.paired_inputs``), e.g. for binary ``truth_positive``,
``<model>_score`` and ``<model>_predicted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.paired_tests import Framing, PairedComparison
    from pipelines.task_types import TaskType

MODELS = ("candidate", "champion")
ROW_COLUMN = "holdout_row"


def pair_predictions(task: TaskType, holdout: pd.DataFrame, key: str | None,
                     outputs: dict[str, tuple[np.ndarray, list[str] | None, float | None]]) -> pd.DataFrame:
    """The frame of both models' predictions on ``holdout``; ``outputs``: model -> (output, classes,
    threshold), as the evaluation scored them; ``key``: the example id column, or None."""
    import pandas as pd

    truth = task.labels(holdout[task.features.target])
    columns: dict[str, np.ndarray] = {
        (key or ROW_COLUMN): holdout[key].to_numpy() if key else np.arange(len(holdout)), "truth": truth}
    columns.update(task.paired_columns(truth, {model: outputs[model] for model in MODELS}))
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

    def compare(self, metric: str, *, framing: Framing, margin: float, alpha: float, effect: float | None,
                power: float) -> PairedComparison:
        """The paired test that fits ``metric`` (``paired_tests.compare_metric``) on the two models' rows, as
        the task type reads them back (``TaskType.paired_inputs``)."""
        from pipelines.paired_tests import compare_metric

        truth, (candidate, champion), threshold = self.task.paired_inputs(self.frame, metric, MODELS)
        return compare_metric(metric, truth, candidate, champion, framing=framing, margin=margin, alpha=alpha,
                              effect=effect, power=power, threshold=threshold)
