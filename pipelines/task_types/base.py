"""What every task type provides, and the parts they share (slice metrics, the slice plot)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, Protocol

from pipelines.errors import DataError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    import pandas as pd

    from pipelines.drift import ReferenceProfile
    from pipelines.task_types.estimation import Estimator

# A numeric target with more distinct values than this is a quantity to regress, not a set of classes.
MAX_CLASSES_FOR_NUMBERS = 20


class TargetError(DataError):
    """The target column does not fit the model's task type (a data error: retrying cannot help)."""


@dataclass(frozen=True)
class TargetDraft:
    """What ``mlops-loop init`` writes about the target of a new model, with the reasons it gives."""

    classes: list[str] | None = None
    positive_class: str | None = None
    positive_reason: str = ""
    gate_floors: dict[str, float] = field(default_factory=dict)
    gate_reason: str = ""


class TaskFeatures(Protocol):
    """What a task type reads of a model's features: a model config's ``features``, or what a logged model's
    signature and metadata tell of them."""

    @property
    def numeric(self) -> list[str]: ...
    @property
    def categorical(self) -> list[str]: ...
    @property
    def target(self) -> str: ...
    @property
    def event_time(self) -> str | None: ...
    @property
    def classes(self) -> list[str] | None: ...
    @property
    def positive_class(self) -> str | None: ...


@dataclass(frozen=True)
class TargetShape:
    """What a target column looks like before a task type is chosen for it: scikit-learn's
    ``type_of_target`` of its values, whether they are numbers, and how many distinct values it holds."""

    kind: str
    numeric: bool
    distinct: int

    @classmethod
    def of(cls, values: pd.Series) -> TargetShape:
        """The shape of the values present (at least one)."""
        import pandas as pd
        from sklearn.utils.multiclass import type_of_target

        present = values.dropna()
        numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
        kind = type_of_target(present.to_numpy() if numeric else present.astype(str).to_numpy())
        return cls(kind, numeric, int(present.nunique()))

    @property
    def many_numbers(self) -> bool:
        """Numbers with more distinct values than a set of classes holds."""
        return self.numeric and self.distinct > MAX_CLASSES_FOR_NUMBERS


class PairedInputs(NamedTuple):
    """What ``paired_tests.compare_metric`` takes for one metric, read back from the paired predictions: the
    truth, each model's per-row values (in the order asked) and the cut of binary scores (None: no cut)."""

    truth: np.ndarray
    values: tuple[np.ndarray, ...]
    threshold: float | None = None


def model_classes(model) -> list[str] | None:
    """A fitted classifier's classes as text (the order of its probability columns); None for a regressor."""
    classes = getattr(model, "classes_", None)
    return None if classes is None else [str(c) for c in classes]


class TaskType:
    """One task type. Class attributes describe it (readable at parse time); methods do the work.

    Vocabulary: ``output`` is what the served model answers for a batch of rows (what ``mlflow models
    serve`` answers for the same model: class probabilities, or values); ``scores`` is one number per row
    derived from it (the positive class's probability, the predicted class's index, the value), which the
    prediction log keeps and monitoring measures; ``classes`` is the fitted model's ``classes_`` as text.
    """

    name: ClassVar[str]
    # metric -> higher is better
    metrics: ClassVar[dict[str, bool]]
    selection_metric: ClassVar[str]
    default_floors: ClassVar[dict[str, float]] = {}
    # Metrics that can be computed from the logged scores once the labels land.
    realized_metrics: ClassVar[frozenset[str]]
    predict_method: ClassVar[Literal["predict_proba", "predict"]]
    # How monitoring treats the logged scores when it measures prediction drift.
    prediction_kind: ClassVar[Literal["numeric", "categorical"]]
    is_classifier: ClassVar[bool]
    # Whether a model of this task type names one class as the positive one (``features.positive_class``).
    takes_positive_class: ClassVar[bool] = False
    # The metrics a shadow or canary challenger can be judged on from the logged scores, each the mean of a
    # per-row loss (``pipelines.metric_tests.LOSS_OF_METRIC``); the first is the default.
    challenger_metrics: ClassVar[tuple[str, ...]]

    def __init__(self, features: TaskFeatures):
        self.features = features

    # config ------------------------------------------------------------------------------------------------
    @classmethod
    def check_metric(cls, metric: str, where: str, higher: bool | None = None, realized: bool = False) -> None:
        """A metric a config names at ``where`` exists for this task type; for a bound, points the way
        ``higher`` says (a floor: higher is better); when ``realized``, can be measured from the served
        predictions once the labels land. Raises ValueError naming ``where``."""
        if metric not in cls.metrics:
            raise ValueError(f"{where}: {metric!r} is not a {cls.name} metric (use one of {sorted(cls.metrics)})")
        if higher is not None and cls.metrics[metric] != higher:
            wanted, given = ("ceiling", "floor") if higher else ("floor", "ceiling")
            raise ValueError(f"{where}: {metric!r} is {'lower' if higher else 'higher'} is better, so it "
                             f"takes a {wanted}, not a {given}")
        if realized and metric not in cls.realized_metrics:
            raise ValueError(f"{where}: {metric!r} cannot be measured from the served {cls.name} "
                             f"predictions; use one of {sorted(cls.realized_metrics)}")

    # target ------------------------------------------------------------------------------------------------
    @classmethod
    def target_fit(cls, shape: TargetShape) -> tuple[bool, str]:
        """Whether a target of this shape is one this task type learns, and why (or why not): what
        ``mlops-loop init`` writes when it infers the task type. The task types' fits do not overlap."""
        raise NotImplementedError

    @classmethod
    def draft_target(cls, values: pd.Series) -> TargetDraft:
        """The target settings a new model of this task type gets from its table (``mlops-loop init``)."""
        return TargetDraft()

    def target_problem(self, values: pd.Series) -> str | None:
        """Why these target values cannot train this task type, or None."""
        raise NotImplementedError

    def check_target(self, values: pd.Series, where: str = "") -> None:
        problem = self.target_problem(values)
        if problem:
            prefix = f"{where}: " if where else ""
            raise TargetError(f"{prefix}target column {self.features.target!r} does not fit task "
                              f"{self.name!r}: {problem}")

    def labels(self, values: pd.Series) -> np.ndarray:
        """The target as the estimator learns it (class labels as text, or floats)."""
        raise NotImplementedError

    def loss_truth(self, values: pd.Series, classes: list[str] | None) -> np.ndarray:
        """The outcome as the per-row losses of the logged scores take it (``challenger_metrics``)."""
        raise NotImplementedError

    def stratify_by(self, values: pd.Series) -> np.ndarray | None:
        """Groups a random split keeps in proportion (the classes), or None."""
        return self.labels(values) if self.is_classifier else None

    def model_metadata(self, classes: list[str] | None) -> dict[str, Any]:
        """What a logged model carries about its task (MLmodel ``metadata``): enough to rebuild this task
        type when the model is served."""
        return {"task": self.name, "target": self.features.target,
                **({"classes": list(classes)} if classes is not None else {})}

    # estimators --------------------------------------------------------------------------------------------
    def estimator(self, kind: str, params: dict[str, Any], categorical_mask: list[bool], random_state: int):
        """A scikit-learn estimator: ``gradient_boosting`` (native categorical support, fed ordinal codes)
        or ``linear`` (fed scaled numbers and one-hot categories)."""
        raise NotImplementedError

    # output ------------------------------------------------------------------------------------------------
    def output(self, model, inputs: pd.DataFrame) -> np.ndarray:
        import numpy as np

        return np.asarray(getattr(model, self.predict_method)(inputs))

    def scores(self, output: np.ndarray, classes: list[str] | None) -> np.ndarray:
        """One number per row of ``output``: what the prediction log keeps."""
        raise NotImplementedError

    def answer(self, output: np.ndarray, classes: list[str] | None) -> dict[str, Any]:
        """The typed ``/predict`` answer's body for ``output``."""
        return {"predictions": output.tolist()}

    def batch_columns(self, output: np.ndarray, classes: list[str] | None) -> dict[str, np.ndarray]:
        """The columns batch scoring writes for ``output``."""
        return {"score": self.scores(output, classes)}

    def fit_threshold(self, truth: np.ndarray, output: np.ndarray, classes: list[str] | None) -> float | None:
        """A decision threshold chosen on the validation rows (binary only)."""
        return None

    # performance estimation (before the labels land) ---------------------------------------------------
    estimate_unavailable: ClassVar[str] = "this task type has no estimator of performance before the labels land"
    # Whether the estimator reads the window's features (their value counts), not only the logged scores: its
    # calibration then needs the holdout's rows and the model's permutation importance on them.
    estimate_reads_features: ClassVar[bool] = False

    def fit_estimator(self, truth: np.ndarray, scores: np.ndarray, classes: list[str] | None, metric: str,
                      seed: int = 0, holdout: pd.DataFrame | None = None,
                      importance: dict[str, float] | None = None) -> tuple[Estimator | None, str]:
        """An estimator of ``metric`` before the labels land, fitted on the holdout (``truth`` and ``scores``,
        and, when ``estimate_reads_features``, its rows and the features' permutation importance), and a
        note on how good it is; None (and why) when the task type cannot estimate honestly."""
        return None, f"not estimated: {self.estimate_unavailable}"

    def holdout_halves(self, holdout: pd.DataFrame | None, seed: int, rows: int | None = None) -> np.ndarray:
        """Two halves of the holdout for checking an estimator fitted on one half against the other: alternate
        days of the event time (the outcomes of one day's rows move together, a storm, as they do within a
        monitoring window), else random rows (``rows`` of them when there is no holdout frame)."""
        import numpy as np
        import pandas as pd

        event_time = self.features.event_time
        if holdout is not None and event_time and event_time in holdout.columns:
            days = pd.to_datetime(holdout[event_time], utc=True, errors="coerce").dt.floor("D")
            if days.notna().all() and days.nunique() >= 4:
                first = (days.rank(method="dense").to_numpy() % 2) == 1
                if 0.25 <= first.mean() <= 0.75:
                    return first
        size = len(holdout) if holdout is not None else int(rows or 0)
        return np.random.default_rng(seed).permutation(size) % 2 == 0

    def estimate(self, scores: np.ndarray, estimator: Estimator, profile: ReferenceProfile | None = None) -> float:
        """The metric's estimate for a window from its logged ``scores`` (and its features' value counts,
        ``profile``); NaN when this window cannot be estimated."""
        raise NotImplementedError

    # metrics -----------------------------------------------------------------------------------------------
    def evaluate(self, truth: np.ndarray, output: np.ndarray, classes: list[str] | None,
                 threshold: float | None) -> dict[str, float]:
        """Every metric of the task type (and ``rows``) for ``truth`` (as ``labels`` gives it)."""
        raise NotImplementedError

    def realized(self, truth: np.ndarray, scores: np.ndarray, classes: list[str] | None,
                 threshold: float | None) -> dict[str, float]:
        """The ``realized_metrics`` from logged ``scores`` and the labels that landed later."""
        raise NotImplementedError

    def slice_metrics(self, frame: pd.DataFrame, truth: np.ndarray, values: np.ndarray, columns: list[str],
                      classes: list[str] | None, threshold: float | None, realized: bool = False) -> list[dict]:
        """One row per (column, value) of ``frame``: the metrics of that slice (``values``: the output, or
        the logged scores when ``realized``)."""
        import numpy as np

        measure = self.realized if realized else self.evaluate
        rows = []
        truth, values = np.asarray(truth), np.asarray(values)
        for column in columns:
            keys = frame[column].astype(str).to_numpy()
            for value in sorted(set(keys)):
                mask = keys == value
                rows.append({"column": column, "value": value,
                             **measure(truth[mask], values[mask], classes, threshold)})
        return rows

    # paired predictions (the gate's comparison with the champion) ------------------------------------------
    def paired_columns(self, truth: np.ndarray, outputs: Mapping[str, tuple[np.ndarray, list[str] | None, float | None]]
                       ) -> dict[str, np.ndarray]:
        """The columns of the paired predictions (``pipelines.holdout_pairs``) besides the row key and ``truth``
        (as ``labels`` gives it): per model of ``outputs`` (model -> its output on the holdout, classes and
        threshold), what its metrics are computed from, named ``<model>_...``; and any other reading of the
        truth the paired tests need."""
        raise NotImplementedError

    def paired_inputs(self, frame: pd.DataFrame, metric: str, models: Sequence[str]) -> PairedInputs:
        """The truth and each of ``models``' values for ``metric``'s paired test, read back from a frame of
        ``paired_columns``. Raises ValueError when the models' values cannot be compared row by row."""
        raise NotImplementedError

    # plots -------------------------------------------------------------------------------------------------
    def plot_evaluation(self, truth: np.ndarray, output: np.ndarray, classes: list[str] | None,
                        metrics: dict[str, float], slices: list[dict], folder: Path,
                        champion_output: np.ndarray | None = None) -> list[Path]:
        """The plots that fit the task, as PNG files in ``folder``."""
        raise NotImplementedError

    def plot_slices(self, metrics: dict[str, float], slices: list[dict], folder: Path) -> list[Path]:
        import pandas as pd

        from pipelines.task_types.plots import figure

        frame = pd.DataFrame(slices)
        metric = self.selection_metric
        if frame.empty or metric not in frame:
            return []
        frame["label"] = frame["column"] + "=" + frame["value"]
        with figure(folder / "slices.png", (6, max(3, 0.25 * len(frame)))) as ax:
            ax.barh(frame["label"], frame[metric].astype(float).fillna(0))
            overall = metrics.get(metric)
            if overall is not None and not math.isnan(overall):
                ax.axvline(overall, color="k", ls=":", lw=1)
            ax.set(xlabel=metric, title=f"{metric} per slice (dotted: overall)")
        return [folder / "slices.png"]

