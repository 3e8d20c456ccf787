import shutil
from pathlib import Path

import pytest
from toy_models import ToyRegistry


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema made and nothing in it: making the schema (MLflow's migrations)
    takes seconds, so a test that wants a fresh store starts from a copy of this one."""
    import mlflow

    path = tmp_path_factory.mktemp("empty_mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()  # the tracking store's schema
    client.search_registered_models()  # and the registry's
    return path


@pytest.fixture()
def fresh_mlflow_uri(tmp_path, empty_mlflow_db) -> str:
    """A fresh MLflow store (SQLite) in this test's tmp_path: a copy of the empty store."""
    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture()
def toy_registry(tmp_path, monkeypatch, fresh_mlflow_uri) -> ToyRegistry:
    """A fresh MLflow store and registry (SQLite) in this test's tmp_path."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow_uri)
    return ToyRegistry(tmp_path)
