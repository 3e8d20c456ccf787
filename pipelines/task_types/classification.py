"""What binary and multiclass classification share: labels as text, the classifiers, the target checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pipelines.task_types.base import TargetDraft, TargetError, TaskType

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class Classification(TaskType):
    predict_method = "predict_proba"
    is_classifier = True
    # The most classes a target may hold (more: it is a regression target or an identifier).
    max_classes: ClassVar[int]

    @classmethod
    def draft_target(cls, values: pd.Series) -> TargetDraft:
        from pipelines.task_types.labels import label_texts

        classes = sorted({v for v in label_texts(values) if v is not None})
        if len(classes) > cls.max_classes:
            raise TargetError(f"target column {values.name!r} holds {len(classes)} classes, more than the "
                              f"{cls.max_classes} a {cls.name} classifier takes")
        return TargetDraft(classes=classes)

    @staticmethod
    def known_classes(classes: list[str] | None) -> list[str]:
        """A version's classes (its ``classes`` tag), which reading its logged scores needs; ValueError without."""
        if not classes:
            raise ValueError("the model version's classes are unknown (no 'classes' version tag): its logged "
                             "scores cannot be read against the outcomes")
        return list(classes)

    def target_problem(self, values: pd.Series) -> str | None:
        from pipelines.task_types.labels import describe_values, label_texts

        missing = int(values.isna().sum())
        if missing:
            return f"{missing} rows have no label"
        labels = sorted(set(label_texts(values)))
        if len(labels) == 1:
            return f"every row holds the single class {labels[0]!r}: there is nothing to learn"
        if len(labels) > self.max_classes:
            return (f"it holds {len(labels)} distinct values (e.g. {describe_values(values)}), more than the "
                    f"{self.max_classes} classes a {self.name} classifier takes ({self.too_many_classes})")
        declared = self.features.classes
        if declared is not None and set(labels) - set(declared):
            return f"labels {sorted(set(labels) - set(declared))} are not in features.classes {declared}"
        return self.labels_problem(labels)

    # What to suggest when the target holds too many classes.
    too_many_classes: ClassVar[str] = "is it a regression target?"

    def labels_problem(self, labels: list[str]) -> str | None:
        """A further check of the distinct labels, for one kind of classifier."""
        return None

    def labels(self, values: pd.Series) -> np.ndarray:
        from pipelines.task_types.labels import label_texts

        return label_texts(values)

    def estimator(self, kind: str, params: dict[str, Any], categorical_mask: list[bool], random_state: int):
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression

        if kind == "gradient_boosting":
            return HistGradientBoostingClassifier(categorical_features=categorical_mask, random_state=random_state,
                                                  **params)
        return LogisticRegression(max_iter=1000, random_state=random_state, **params)
