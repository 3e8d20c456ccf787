import pytest
from toy_models import ToyRegistry


@pytest.fixture()
def toy_registry(tmp_path, monkeypatch) -> ToyRegistry:
    """A fresh MLflow store and registry (SQLite) in this test's tmp_path."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return ToyRegistry(tmp_path)
