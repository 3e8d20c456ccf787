"""A candidate must be served by a staging instance of the service with its evaluated predictions."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.config import FeaturesConfig, SearchConfig
from pipelines.infra_validation import serving_example_of, validate_in_staging
from pipelines.training import model_inputs, train_candidate

FEATURES = FeaturesConfig(builder="x.y", numeric=["signal"], categorical=["group"], target="label", event_time="t")


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    signal[::17] = np.nan
    return pd.DataFrame({"signal": signal, "group": rng.choice(["a", "b", None], size=n),
                         "label": (np.nan_to_num(signal) > 0).astype(int)})


@pytest.fixture()
def candidate(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from pipelines.tracking import configure_mlflow, log_sklearn_model

    configure_mlflow()
    experiment = mlflow.create_experiment("infra", artifact_location=(tmp_path / "artifacts").as_uri())
    trained = train_candidate(frame(400, 1), frame(200, 2), FEATURES, SearchConfig(), {})
    with mlflow.start_run(experiment_id=experiment):
        info = log_sklearn_model(trained.model, model_inputs(frame(5, 3), FEATURES))
    sample = model_inputs(frame(120, 4), FEATURES)
    return info.model_uri, sample, trained.model.predict_proba(sample)[:, 1]


def test_candidate_serving_its_evaluated_predictions_passes(candidate):
    uri, sample, expected = candidate
    outcome = validate_in_staging("toy", uri, sample, expected, serving_example_of(uri))
    assert outcome.passed, outcome.reason
    assert outcome.rows_checked == 120 and outcome.max_abs_diff <= 1e-6


def test_different_predictions_are_caught_and_explained(candidate):
    uri, sample, expected = candidate
    shifted = expected.copy()
    shifted[7] += 0.01
    outcome = validate_in_staging("toy", uri, sample, shifted, None)
    assert not outcome.passed and "differ from evaluation by up to 0.01" in outcome.reason and "row 7" in outcome.reason


def test_a_model_that_cannot_load_fails(candidate, tmp_path):
    _, sample, expected = candidate
    outcome = validate_in_staging("toy", (tmp_path / "nowhere").as_uri(), sample, expected, None)
    assert not outcome.passed and ("could not load" in outcome.reason or "failed" in outcome.reason)


def test_an_input_example_the_service_refuses_fails(candidate):
    uri, sample, expected = candidate
    outcome = validate_in_staging("toy", uri, sample, expected, '{"dataframe_records": [{"signal": "x"}]}')
    assert not outcome.passed and "input example got HTTP 400" in outcome.reason
