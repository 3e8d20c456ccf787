import numpy as np
import pandas as pd
import pytest

from pipelines.config import FeaturesConfig, SearchConfig
from pipelines.task_types import BinaryClassification
from pipelines.training import train_candidate

FEATURES = FeaturesConfig(numeric=["signal", "noise"], categorical=["group"], target="label", event_time="t")
BINARY = BinaryClassification(FEATURES)


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    group = rng.choice(["a", "b", None], size=n)
    label = (signal + (group == "a") * 0.5 + rng.normal(scale=0.8, size=n) > 0.3).astype(int)
    frame = pd.DataFrame({"signal": signal, "noise": rng.normal(size=n), "group": group, "label": label})
    frame.loc[frame.sample(frac=0.05, random_state=seed).index, "signal"] = np.nan
    return frame


@pytest.mark.parametrize("estimator", ["gradient_boosting", "linear"])
def test_candidate_learns_the_signal(estimator):
    trained = train_candidate(synthetic(3000, 1), synthetic(1000, 2), BINARY, SearchConfig(estimator=estimator), {})
    assert trained.validation_metrics["roc_auc"] > 0.8
    assert 0 < trained.threshold < 1
    unseen = synthetic(5, 3).assign(group=["zzz"] * 5)  # a category never seen in training still scores
    assert trained.model.predict_proba(unseen[FEATURES.inputs]).shape == (5, 2)


def test_shuffled_labels_drill_learns_nothing():
    trained = train_candidate(synthetic(3000, 1), synthetic(1000, 2), BINARY, SearchConfig(), {},
                              shuffle_labels=True)
    assert abs(trained.validation_metrics["roc_auc"] - 0.5) < 0.08


def test_single_class_is_refused():
    frame = synthetic(100, 1).assign(label=0)
    with pytest.raises(ValueError, match="single class"):
        train_candidate(frame, frame, BINARY, SearchConfig(), {})


def test_missing_feature_is_named():
    with pytest.raises(KeyError, match="noise"):
        train_candidate(synthetic(100, 1).drop(columns="noise"), synthetic(50, 2), BINARY, SearchConfig(), {})
