"""Models load with the project's own trusted types, never with the list a model artifact brings."""

import booby_trap
import mlflow
import numpy as np
import pytest
from sklearn.preprocessing import FunctionTransformer
from toy_models import toy_frame

from pipelines.tracking import TRUSTED_TYPES, UntrustedModelError, load_sklearn_model, log_sklearn_model


def test_a_model_made_by_the_pipeline_loads_and_answers_as_logged(toy_registry):
    logged = toy_registry.log(seed=3)
    frame = toy_frame(50, 9).drop(columns=["label"])
    model = load_sklearn_model(logged.uri)
    assert np.allclose(model.predict_proba(frame), logged.model.predict_proba(frame))


def test_a_booby_trapped_model_runs_nothing(toy_registry, tmp_path, monkeypatch):
    """A model whose MLmodel file trusts a type of its own: MLflow's loader builds it, and its code runs;
    ours refuses it before building anything."""
    marker = tmp_path / "ran"
    monkeypatch.setenv("BOOBY_TRAP_MARKER", str(marker))
    trap = FunctionTransformer(func=booby_trap.Trap())
    with mlflow.start_run(experiment_id=toy_registry.experiment):
        info = mlflow.sklearn.log_model(trap, name="model", serialization_format="skops",
                                        skops_trusted_types=["booby_trap.Trap"])

    mlflow.sklearn.load_model(info.model_uri)
    assert marker.exists()  # the artifact's own trust list let its code run
    marker.unlink()

    with pytest.raises(UntrustedModelError, match=r"does not trust: \['booby_trap.Trap'\]"):
        load_sklearn_model(info.model_uri)
    assert not marker.exists()


def test_a_pickled_model_is_refused(toy_registry):
    with mlflow.start_run(experiment_id=toy_registry.experiment):
        info = mlflow.sklearn.log_model(FunctionTransformer(), name="model", serialization_format="cloudpickle")
    with pytest.raises(UntrustedModelError, match="not a skops-serialized"):
        load_sklearn_model(info.model_uri)


def _trained_toy():
    from toy_models import FEATURES

    from pipelines.config import SearchConfig
    from pipelines.task_types import BinaryClassification
    from pipelines.training import train_candidate

    task = BinaryClassification(FEATURES)
    return task, train_candidate(toy_frame(300, 0, missing=True), toy_frame(100, 1, missing=True), task,
                                 SearchConfig(), {}).model


def test_a_feature_missing_in_every_example_row_keeps_its_declared_type_and_the_service_serves_it(toy_registry):
    """The input example is a sample: a column missing in all its rows would be typed ``any`` by inference.
    The signature comes from the config, so the service maps every column to its role."""
    from pipelines.serving.models import load_model_uri
    from pipelines.training import model_inputs

    task, model = _trained_toy()
    example = model_inputs(toy_frame(5, 2).assign(signal=np.nan, group=None), task.features)
    with mlflow.start_run(experiment_id=toy_registry.experiment):
        info = log_sklearn_model(model, example, task)
    inputs = mlflow.models.get_model_info(info.model_uri).signature.inputs
    assert inputs.to_dict() == [{"type": "double", "name": "signal", "required": True},
                                {"type": "string", "name": "group", "required": True}]
    loaded = load_model_uri("toy", info.model_uri, "1", "champion", {})
    assert (loaded.numeric, loaded.categorical) == (("signal",), ("group",))
    rows = model_inputs(toy_frame(20, 3, missing=True), task.features)
    assert np.allclose(loaded.model.predict_proba(rows), model.predict_proba(rows))
    # MLflow's own pyfunc (what `mlflow models serve` runs) accepts rows of the declared types, missing ones too.
    assert mlflow.pyfunc.load_model(info.model_uri).predict(rows).shape == (20, 2)


def test_a_signature_the_service_cannot_map_is_refused_naming_the_column(toy_registry):
    from mlflow.models import infer_signature

    from pipelines.serving.models import SignatureError, load_model_uri
    from pipelines.training import model_inputs

    task, model = _trained_toy()
    example = model_inputs(toy_frame(5, 2).assign(group=None), task.features)
    with mlflow.start_run(experiment_id=toy_registry.experiment):
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops",
                                        signature=infer_signature(example), skops_trusted_types=list(TRUSTED_TYPES))
    with pytest.raises(SignatureError, match=r"input column 'group' as Any, neither a number nor a string"):
        load_model_uri("toy", info.model_uri, "1", "champion", {})
