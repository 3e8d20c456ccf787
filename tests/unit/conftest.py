import shutil

import pytest
from toy_models import ToyRegistry


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
