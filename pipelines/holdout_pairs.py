"""The candidate's and the champion's per-row predictions on the shared holdout, side by side: what the gate's
paired tests (``pipelines.paired_tests``) compare, kept as ``paired_predictions.parquet`` so that anyone can
redo the comparison.

One row per holdout row, keyed by the example id when the config has one (else ``holdout_row``, the row's
position in the holdout), with ``truth`` (the target as the task type reads it) and, per model (prefix
``candidate_`` or ``champion_``), what its metrics are computed from:

- binary: ``truth_positive`` (0/1), ``<model>_score`` (the positive class's probability) and
  ``<model>_predicted`` (0/1 at the model's own threshold, 0.5 without one);
- multiclass: ``<model>_predicted`` (the class it answers) and ``<model>_p:<class>`` (its probability of each
  class);
- regression: ``<model>_prediction``.
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
    for model in MODELS:
        output, classes, threshold = outputs[model]
        if not task.is_classifier:
            columns[f"{model}_prediction"] = task.scores(output, classes)
        elif task.takes_positive_class:  # binary: one score per row
            score = task.scores(output, classes)
            if "truth_positive" not in columns:
                columns["truth_positive"] = (truth == task.positive_class(list(classes))).astype(int)
            columns[f"{model}_score"] = score
            columns[f"{model}_predicted"] = (score >= (0.5 if threshold is None else threshold)).astype(int)
        else:
            columns[f"{model}_predicted"] = np.asarray(classes, dtype=object)[np.argmax(output, axis=1)]
            for i, name in enumerate(classes):
                columns[f"{model}_p:{name}"] = output[:, i]
    return pd.DataFrame(columns)


@dataclass(frozen=True)
class HoldoutPairs:
    """Both models' predictions on the same holdout rows (a ``pair_predictions`` frame), and the paired test
    of any metric on them."""

    frame: pd.DataFrame

    @classmethod
    def read(cls, path) -> HoldoutPairs:
        import pandas as pd

        return cls(pd.read_parquet(path))

    @property
    def rows(self) -> int:
        return len(self.frame)

    def compare(self, metric: str, *, framing: Framing, margin: float, alpha: float, effect: float | None,
                power: float) -> PairedComparison:
        """The paired test that fits ``metric`` (``paired_tests.compare_metric``) on the two models' rows."""
        from pipelines.paired_tests import compare_metric

        truth, candidate, champion = self._inputs(metric)
        binary = "candidate_score" in self.frame  # f1 and accuracy: the 0/1 answers, cut again at 0.5
        return compare_metric(metric, truth, candidate, champion, framing=framing, margin=margin, alpha=alpha,
                              effect=effect, power=power, threshold=0.5 if binary else None)

    def _inputs(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frame = self.frame
        if "candidate_prediction" in frame:  # regression
            return (frame["truth"].to_numpy(dtype=float), frame["candidate_prediction"].to_numpy(dtype=float),
                    frame["champion_prediction"].to_numpy(dtype=float))
        if "candidate_score" in frame:  # binary: f1 and accuracy on each model's own cut (0/1 cut at 0.5)
            column = "predicted" if metric in ("f1", "accuracy") else "score"
            return (frame["truth_positive"].to_numpy(dtype=int), frame[f"candidate_{column}"].to_numpy(dtype=float),
                    frame[f"champion_{column}"].to_numpy(dtype=float))
        truth = frame["truth"].astype(str).to_numpy()
        if metric != "log_loss":
            return truth, frame["candidate_predicted"].astype(str).to_numpy(), \
                frame["champion_predicted"].astype(str).to_numpy()
        classes = {model: [c.split(":", 1)[1] for c in frame.columns if c.startswith(f"{model}_p:")]
                   for model in MODELS}
        if classes["candidate"] != classes["champion"]:
            raise ValueError(f"the candidate answers classes {classes['candidate']}, the champion "
                             f"{classes['champion']}: their log loss cannot be compared row by row")
        position = {name: i for i, name in enumerate(classes["candidate"])}
        index = np.asarray([position.get(t, -1) for t in truth])
        known = index >= 0  # a class neither model knows has no probability to score (as the evaluation does)
        return index[known], *(frame[[f"{model}_p:{c}" for c in classes[model]]].to_numpy(dtype=float)[known]
                               for model in MODELS)
