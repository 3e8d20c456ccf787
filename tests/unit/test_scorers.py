"""The scoring thread's scorers: the direct path answers exactly what the model's own Pipeline answers, for
every task type, and any model it does not recognise is scored whole."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipelines.config import FeaturesConfig, SearchConfig
from pipelines.serving.protocol import Columns, join_columns
from pipelines.serving.scorers import FrameScorer, OrdinalTreeScorer, scorer_for
from pipelines.task_types import BinaryClassification, MulticlassClassification, Regression
from pipelines.training import model_inputs, train_candidate

FEATURES = FeaturesConfig(numeric=["signal", "noise"], categorical=["group", "shade"], target="label",
                          event_time="t")


def examples(n: int, seed: int, task: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    group = rng.choice(["a", "b", "c", None], size=n)
    shade = rng.choice(["light", "dark"], size=n)
    if task == "regression":
        label = signal * 3 + (group == "a") + rng.normal(scale=0.3, size=n)
    elif task == "multiclass":
        label = np.digitize(signal + (group == "a"), [-0.5, 0.5]).astype(str)
    else:
        label = (signal + (group == "a") * 0.5 > 0.3).astype(int)
    frame = pd.DataFrame({"signal": signal, "noise": rng.normal(size=n), "group": group, "shade": shade,
                          "label": label})
    frame.loc[frame.sample(frac=0.05, random_state=seed).index, "signal"] = np.nan
    return frame


TASKS = {"binary": BinaryClassification, "multiclass": MulticlassClassification, "regression": Regression}


def trained(task: str, estimator: str = "gradient_boosting"):
    task_type = TASKS[task](FEATURES)
    candidate = train_candidate(examples(1500, 1, task), examples(500, 2, task), task_type,
                                SearchConfig(estimator=estimator), {})
    return candidate.model, task_type.predict_method


def requests(rows: int, seed: int, infinities: bool = True) -> list[Columns]:
    """Requests as the service conforms them, with unseen categories, missing values and infinities."""
    rng = np.random.default_rng(seed)
    parts = []
    for size in (rows, 1, rows // 3):
        signal = rng.normal(size=size)
        signal[::7] = np.nan
        if infinities:  # the trees take them; a linear model refuses them
            signal[::11] = np.inf
        values = {"signal": signal, "noise": rng.normal(size=size),
                  "group": np.array(rng.choice(["a", "b", "c", "never seen", None], size=size), dtype=object),
                  "shade": np.array(rng.choice(["light", "dark", None, ""], size=size), dtype=object)}
        parts.append(Columns(FEATURES.inputs, values, size))
    return parts


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_direct_path_answers_exactly_what_the_pipeline_answers(task):
    model, method = trained(task)
    scorer = scorer_for(model, method, FEATURES.numeric, FEATURES.categorical)
    assert isinstance(scorer, OrdinalTreeScorer)
    batch = requests(300, 3)
    frame = pd.concat([pd.DataFrame(part.values) for part in batch], ignore_index=True)
    expected = getattr(model, method)(model_inputs(frame, FEATURES))
    assert np.array_equal(scorer.score(join_columns(batch)), expected)
    # As the service scores it: each request's text columns coded once (for the scorer and the log).
    coded = [replace(part, codes=scorer.text_codes(part.values)) for part in batch]
    assert "shade" in coded[0].codes  # "group" was trained with None among its categories: looked up instead
    assert np.array_equal(scorer.score(join_columns(coded)), expected)


def test_a_model_of_another_shape_is_scored_whole():
    model, method = trained("binary", estimator="linear")
    scorer = scorer_for(model, method, FEATURES.numeric, FEATURES.categorical)
    assert isinstance(scorer, FrameScorer)
    batch = requests(50, 4, infinities=False)
    frame = pd.concat([pd.DataFrame(part.values) for part in batch], ignore_index=True)
    assert np.array_equal(scorer.score(join_columns(batch)), model.predict_proba(frame))


def test_an_encoder_that_encodes_otherwise_is_scored_whole():
    model, method = trained("binary")
    model.steps[0][1].named_transformers_["categorical"].unknown_value = -2  # not the project's encoding
    assert isinstance(scorer_for(model, method, FEATURES.numeric, FEATURES.categorical), FrameScorer)


def test_a_direct_path_that_disagrees_on_the_probe_is_not_used(monkeypatch):
    model, method = trained("binary")
    encoder = model.steps[0][1].named_transformers_["categorical"]
    # The fitted categories, reordered where only the scorer reads them: codes that look right and are not.
    monkeypatch.setattr(OrdinalTreeScorer, "__init__", _init_with_reversed_categories(OrdinalTreeScorer.__init__))
    assert encoder.categories_[0].size > 1
    assert isinstance(scorer_for(model, method, FEATURES.numeric, FEATURES.categorical), FrameScorer)


def _init_with_reversed_categories(init):
    def reversed_init(self, estimator, method, numeric, categorical, categories):
        init(self, estimator, method, numeric, categorical, [c[::-1] for c in categories])
    return reversed_init
