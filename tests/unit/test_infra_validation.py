"""A candidate must be served by a staging instance of the service with its evaluated predictions."""

import pytest
from toy_models import FEATURES, registry_to_copy, toy_frame, use_copy_of

from pipelines.infra_validation import serving_example_of, validate_in_staging
from pipelines.training import model_inputs


@pytest.fixture(scope="module")
def logged_candidate(tmp_path_factory, empty_mlflow_db):
    """A candidate logged once for the module; each test reads it from its own copy of the store."""
    folder = tmp_path_factory.mktemp("infra_validation_registry")
    with registry_to_copy(folder, empty_mlflow_db) as toy_registry:
        logged = toy_registry.log(seed=1, missing=True)
    sample = model_inputs(toy_frame(120, 4, missing=True), FEATURES)
    return folder, logged.uri, sample, logged.model.predict_proba(sample)


@pytest.fixture()
def candidate(logged_candidate, tmp_path, monkeypatch):
    folder, uri, sample, expected = logged_candidate
    use_copy_of(folder, tmp_path, monkeypatch)
    return uri, sample, expected.copy()


def test_candidate_serving_its_evaluated_predictions_passes(candidate):
    uri, sample, expected = candidate
    outcome = validate_in_staging("toy", uri, sample, expected, serving_example_of(uri))
    assert outcome.passed, outcome.reason
    assert outcome.rows_checked == 120 and outcome.max_abs_diff <= 1e-6


def test_different_predictions_are_caught_and_explained(candidate):
    uri, sample, expected = candidate
    shifted = expected.copy()
    shifted[7, 1] += 0.01
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
