"""Train: a scikit-learn Pipeline (ColumnTransformer + classifier) for one hyperparameter candidate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from pipelines.config import FeaturesConfig, SearchConfig
from pipelines.metrics import best_f1_threshold, classification_metrics


@dataclass(frozen=True)
class TrainedCandidate:
    model: Pipeline
    params: dict[str, Any]
    validation_metrics: dict[str, float]
    threshold: float


def build_pipeline(features: FeaturesConfig, search: SearchConfig, params: dict[str, Any]) -> Pipeline:
    n_numeric, n_categorical = len(features.numeric), len(features.categorical)
    if search.estimator == "hist_gradient_boosting":
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
        is_categorical = [False] * n_numeric + [True] * n_categorical
        classifier = HistGradientBoostingClassifier(
            categorical_features=is_categorical, random_state=search.random_state, **params
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
        classifier = LogisticRegression(max_iter=500, random_state=search.random_state, **params)
    return Pipeline([("encode", encode), ("classify", classifier)])


def model_inputs(frame: pd.DataFrame, features: FeaturesConfig) -> pd.DataFrame:
    missing = [c for c in features.inputs if c not in frame.columns]
    if missing:
        raise KeyError(f"examples lack feature columns {missing}")
    inputs = frame[features.inputs].copy()
    for column in features.categorical:
        inputs[column] = inputs[column].astype(object).where(inputs[column].notna(), None)
    for column in features.numeric:
        inputs[column] = inputs[column].astype("float64")
    return inputs


def train_candidate(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    features: FeaturesConfig,
    search: SearchConfig,
    params: dict[str, Any],
    shuffle_labels: bool = False,
) -> TrainedCandidate:
    """Fit one candidate on ``train`` and score it on ``validation``.

    ``shuffle_labels`` is the gate fire drill: it breaks the link between features and label on purpose.
    """
    labels = train[features.target].to_numpy()
    if np.unique(labels).size < 2:
        raise ValueError(f"training labels {features.target!r} hold a single class; nothing to learn")
    if shuffle_labels:
        labels = np.random.default_rng(search.random_state).permutation(labels)
    model = build_pipeline(features, search, params)
    model.fit(model_inputs(train, features), labels)
    scores = model.predict_proba(model_inputs(validation, features))[:, 1]
    truth = validation[features.target].to_numpy()
    threshold = best_f1_threshold(truth, scores)
    return TrainedCandidate(
        model=model,
        params=params,
        validation_metrics=classification_metrics(truth, scores, threshold),
        threshold=threshold,
    )
