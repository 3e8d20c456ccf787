"""Models load with the project's own trusted types, never with the list a model artifact brings."""

import booby_trap
import mlflow
import numpy as np
import pytest
from sklearn.preprocessing import FunctionTransformer
from toy_models import toy_frame

from pipelines.tracking import UntrustedModelError, load_sklearn_model


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
