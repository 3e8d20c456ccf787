"""Train: a scikit-learn Pipeline (ColumnTransformer + the task type's estimator) for one candidate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from pipelines.config import FeaturesConfig, SearchConfig
from pipelines.task_types import TaskType, model_classes


@dataclass(frozen=True)
class TrainedCandidate:
    model: Pipeline
    params: dict[str, Any]
    validation_metrics: dict[str, float]
    threshold: float | None


def build_pipeline(task: TaskType, search: SearchConfig, params: dict[str, Any]) -> Pipeline:
    features = task.features
    if search.estimator == "gradient_boosting":
        encode = ColumnTransformer(
            [
                ("numeric", "passthrough", features.numeric),
                (
                    "categorical",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1,
                        dtype=np.float64,
                    ),
                    features.categorical,
                ),
            ],
            verbose_feature_names_out=False,
        )
    else:
        encode = ColumnTransformer(
            [
                ("numeric", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), features.numeric),
                (
                    "categorical",
                    Pipeline(
                        [
                            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                            ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=20)),
                        ]
                    ),
                    features.categorical,
                ),
            ]
        )
    is_categorical = [False] * len(features.numeric) + [True] * len(features.categorical)
    estimator = task.estimator(search.estimator, params, is_categorical, search.random_state)
    return Pipeline([("encode", encode), ("estimate", estimator)])


def model_inputs(frame: pd.DataFrame, features: FeaturesConfig) -> pd.DataFrame:
    missing = [c for c in features.inputs if c not in frame.columns]
    if missing:
        raise KeyError(f"examples lack feature columns {missing}")
    inputs = frame[features.inputs].copy()
    for column in features.categorical:
        # One form per category whatever the file's type (3 and "3" are the same value); missing is None.
        values = inputs[column]
        inputs[column] = values.astype(str).astype(object).where(values.notna(), None)
    for column in features.numeric:
        inputs[column] = inputs[column].astype("float64")
    return inputs


def train_candidate(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    task: TaskType,
    search: SearchConfig,
    params: dict[str, Any],
    shuffle_labels: bool = False,
) -> TrainedCandidate:
    """Fit one candidate on ``train`` and score it on ``validation``.

    ``shuffle_labels`` is the gate fire drill: it breaks the link between features and label on purpose.
    """
    features = task.features
    task.check_target(train[features.target], "training rows")
    labels = task.labels(train[features.target])
    if shuffle_labels:
        labels = np.random.default_rng(search.random_state).permutation(labels)
    model = build_pipeline(task, search, params)
    model.fit(model_inputs(train, features), labels)
    classes = model_classes(model)
    output = task.output(model, model_inputs(validation, features))
    truth = task.labels(validation[features.target])
    threshold = task.fit_threshold(truth, output, classes)
    return TrainedCandidate(
        model=model,
        params=params,
        validation_metrics=task.evaluate(truth, output, classes, threshold),
        threshold=threshold,
    )
