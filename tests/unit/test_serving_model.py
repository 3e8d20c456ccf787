"""The prediction service on a real model logged and registered in a SQLite MLflow store."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipelines.config import FeaturesConfig, SearchConfig
from pipelines.training import model_inputs, train_candidate

FEATURES = FeaturesConfig(builder="x.y", numeric=["signal", "noise"], categorical=["group"], target="label",
                          event_time="t")


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    return pd.DataFrame({"signal": signal, "noise": rng.normal(size=n), "group": rng.choice(["a", "b"], size=n),
                         "label": (signal > 0).astype(int)})


@pytest.fixture()
def service(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from pipelines.registry import promote_version, register_version
    from pipelines.serving.app import create_app
    from pipelines.tracking import configure_mlflow, log_sklearn_model

    configure_mlflow()
    experiment = mlflow.create_experiment("serving", artifact_location=(tmp_path / "artifacts").as_uri())
    trained = train_candidate(frame(500, 1), frame(200, 2), FEATURES, SearchConfig(), {})
    with mlflow.start_run(experiment_id=experiment):
        info = log_sklearn_model(trained.model, model_inputs(frame(5, 3), FEATURES))
    client = mlflow.MlflowClient()
    version = register_version(client, "toy", info.model_uri, {"data_hash": "h" * 32})
    promote_version(client, "toy", version)
    with TestClient(create_app("toy", poll_seconds=0)) as test_client:
        test_client.model = trained.model
        yield test_client


def test_serves_the_champion_with_its_lineage(service):
    health = service.get("/health").json()
    assert (health["model"], health["version"], health["data_hash"]) == ("toy", "1", "h" * 32)
    rows = frame(3, 4)[["signal", "noise", "group"]]
    answer = service.post("/invocations", json={"dataframe_split": rows.to_dict(orient="split")})
    assert answer.status_code == 200, answer.text
    expected = service.model.predict_proba(model_inputs(rows, FEATURES))
    np.testing.assert_allclose(answer.json()["predictions"], expected)


@pytest.mark.parametrize("record,field", [
    ({"signal": "far", "noise": 0.1, "group": "a"}, "signal"),
    ({"signal": [1, 2], "noise": 0.1, "group": "a"}, "signal"),
    ({"signal": 0.3, "noise": 0.1, "group": {"x": 1}}, "group"),
    ({"signal": 0.3, "group": "a"}, "noise"),
])
def test_bad_values_get_a_400_naming_the_field(service, record, field):
    answer = service.post("/invocations", json={"dataframe_records": [record]})
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["message"]


def test_duplicate_columns_get_a_400(service):
    body = {"dataframe_split": {"columns": ["signal", "signal", "noise", "group"], "data": [[1, 2, 3, "a"]]}}
    answer = service.post("/invocations", json=body)
    assert answer.status_code == 400 and "duplicate" in answer.json()["message"]
