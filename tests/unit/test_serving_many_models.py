"""One service, several registered models: a classifier and a regressor side by side, each on its own routes
with its own version, schema, metrics and log rows; one model's swap, failure or late arrival never
touches another."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient
from toy_models import FEATURES as CLF_FEATURES
from toy_models import LoggedModel

from pipelines.config import FeaturesConfig
from pipelines.deployment import admin_headers
from pipelines.training import model_inputs
from tests.waiting import wait_for, wait_until_started

REG_FEATURES = FeaturesConfig(numeric=["size", "age"], categorical=["zone"], target="y")
CLF_ROW = {"signal": 0.8, "group": "a"}
REG_ROWS = [{"size": 120.0, "age": 10.0, "zone": "n"}, {"size": 40.0, "age": 30.0, "zone": "s"}]


def regression_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, n), "age": rng.uniform(0, 50, n),
                          "zone": rng.choice(["n", "s"], size=n)})
    frame["y"] = 3 * frame["size"] - frame["age"] + np.where(frame["zone"] == "n", 50.0, 0.0) + rng.normal(0, 5, n)
    return frame


def log_regressor(registry) -> LoggedModel:
    """A HistGradientBoostingRegressor pipeline, logged as the training DAG logs a regression model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from pipelines.task_types import Regression
    from pipelines.tracking import log_sklearn_model

    frame = regression_frame(300, 0)
    inputs = model_inputs(frame, REG_FEATURES)
    model = Pipeline([
        ("encode", ColumnTransformer([("numeric", "passthrough", REG_FEATURES.numeric),
                                      ("categorical", OrdinalEncoder(), REG_FEATURES.categorical)])),
        ("regress", HistGradientBoostingRegressor(categorical_features=[False, False, True], max_iter=40,
                                                  random_state=0)),
    ]).fit(inputs, frame["y"])
    with mlflow.start_run(experiment_id=registry.experiment):
        info = log_sklearn_model(model, inputs.head(5), Regression(REG_FEATURES))
    return LoggedModel(info.model_uri, model)


@pytest.fixture()
def models(toy_registry):
    """``clf``: v1 champion (P(1) high for a positive signal) and v2 (the opposite), not yet promoted.
    ``reg``: a regressor whose champion is v2 (so the two defaults never share a version number)."""
    from pipelines.registry import promote_version

    client = toy_registry.client
    clf = [toy_registry.log(seed=i, flip=flip, rows=300) for i, flip in enumerate((False, True))]
    clf_versions = [toy_registry.register("clf", logged) for logged in clf]
    reg = log_regressor(toy_registry)
    reg_versions = [toy_registry.register("reg", reg, {"airflow_run_id": f"reg-{i}"}) for i in (1, 2)]
    promote_version(client, "clf", clf_versions[0])
    promote_version(client, "reg", reg_versions[1])
    return SimpleNamespace(registry=toy_registry, client=client, clf=clf, clf_versions=clf_versions, reg=reg,
                           reg_version=reg_versions[1])


def service(tmp_path, **options) -> TestClient:
    from pipelines.serving.app import create_app
    from pipelines.serving.prediction_log import PredictionLog

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", flush_seconds=0.01)
    options = {"models": ["reg"], "configured_models": False, "poll_seconds": 0, **options}
    return TestClient(create_app("clf", prediction_log=log, **options), headers=admin_headers())


def clf_expected(models, rows) -> np.ndarray:
    return models.clf[0].model.predict_proba(model_inputs(pd.DataFrame(rows), CLF_FEATURES))


def reg_expected(models, rows) -> np.ndarray:
    return models.reg.model.predict(model_inputs(pd.DataFrame(rows), REG_FEATURES))


def test_each_model_answers_on_its_own_route_with_its_own_version(models, tmp_path):
    with service(tmp_path) as client:
        clf = client.post("/models/clf/invocations", json={"dataframe_records": [CLF_ROW]})
        reg = client.post("/models/reg/invocations", json={"dataframe_records": REG_ROWS})
        default = client.post("/invocations", json={"dataframe_records": [CLF_ROW]})
        typed_clf = client.post("/models/clf/predict", json={"rows": [CLF_ROW]})
        typed_reg = client.post("/models/reg/predict", json={"rows": REG_ROWS})
        wrong_schema = client.post("/models/reg/predict", json={"rows": [CLF_ROW]})
        unknown = client.post("/models/nope/invocations", json={"dataframe_records": [CLF_ROW]})
        health = client.get("/health").json()
        reg_health = client.get("/models/reg/health").json()
        openapi = client.get("/openapi.json").json()
        metrics = client.get("/metrics").text

    assert all(a.status_code == 200 for a in (clf, reg, default, typed_clf, typed_reg)), [clf.text, reg.text]
    # MLflow's protocol, as `mlflow models serve` answers for each model: probabilities beside values.
    np.testing.assert_allclose(clf.json()["predictions"], clf_expected(models, [CLF_ROW]))
    assert np.asarray(clf.json()["predictions"]).shape == (1, 2)
    np.testing.assert_allclose(reg.json()["predictions"], reg_expected(models, REG_ROWS))
    assert np.asarray(reg.json()["predictions"]).shape == (2,)
    assert (clf.headers["X-Model-Version"], reg.headers["X-Model-Version"]) == ("1", models.reg_version) == ("1", "2")
    assert default.json()["predictions"] == clf.json()["predictions"] and default.headers["X-Model-Version"] == "1"

    assert typed_clf.json()["classes"] == ["0", "1"] and typed_clf.json()["model"] == "clf"
    assert (typed_reg.json()["model"], typed_reg.json()["model_version"]) == ("reg", "2")
    np.testing.assert_allclose(typed_reg.json()["predictions"], reg_expected(models, REG_ROWS))
    assert wrong_schema.status_code == 422
    assert {"rows.0.size", "rows.0.signal"} <= {d["field"] for d in wrong_schema.json()["detail"]}

    assert unknown.status_code == 404 and "['clf', 'reg']" in unknown.json()["message"]
    assert unknown.json()["served_models"] == ["clf", "reg"]

    assert (health["model"], health["version"]) == ("clf", "1")
    assert {name: state["version"] for name, state in health["models"].items()} == {"clf": "1", "reg": "2"}
    assert (reg_health["task"], reg_health["classes"], reg_health["version"]) == ("regression", None, "2")

    # Each model's typed request in the OpenAPI document, under its own name.
    def request_ref(path: str) -> str:
        return openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    assert request_ref("/predict") == request_ref("/models/clf/predict") == "#/components/schemas/clf_PredictRequest"
    assert request_ref("/models/reg/predict") == "#/components/schemas/reg_PredictRequest"
    components = openapi["components"]["schemas"]
    assert set(components["clf_row"]["required"]) == {"signal", "group"}
    assert set(components["reg_row"]["required"]) == {"size", "age", "zone"}
    assert "/models/{name}/invocations" in openapi["paths"] and "/models/{name}/predict" not in openapi["paths"]

    assert 'prediction_requests_total{model="reg",status="200"} 2.0' in metrics
    assert 'prediction_requests_total{model="clf",status="200"} 3.0' in metrics
    assert 'prediction_requests_total{model="reg",status="422"} 1.0' in metrics
    assert 'prediction_rows_total{model="reg"} 4.0' in metrics
    assert 'prediction_model_version{model="reg"} 2.0' in metrics

    from pipelines.prediction_store import read_log

    rows = read_log(f"sqlite:///{tmp_path / 'predictions.db'}")
    assert sorted(rows.groupby(["model_name", "model_version"]).size().items()) == [
        (("clf", "1"), 3), (("reg", "2"), 4)]
    np.testing.assert_allclose(rows[rows.model_name == "reg"].prediction, np.tile(reg_expected(models, REG_ROWS), 2))


def test_a_model_that_fails_to_load_or_has_no_champion_leaves_the_others_serving(models, tmp_path, monkeypatch):
    """``broken``'s champion cannot be served (logged without a signature); ``late`` has no config and no
    champion when the service starts, then both arrive and a reload of that model alone serves it."""
    import pipelines.config
    from pipelines.registry import promote_version

    registry = models.registry
    promote_version(models.client, "broken", registry.register("broken", registry.log_constant()))
    configs = [SimpleNamespace(model_name="broken", features=SimpleNamespace(event_time=None))]
    monkeypatch.setattr(pipelines.config, "list_model_configs", lambda: list(configs))
    with service(tmp_path, configured_models=True) as client:
        assert client.get("/ping").status_code == 200
        health = client.get("/health").json()
        assert health["models"]["broken"]["status"] == "no_model"
        assert "signature" in health["models"]["broken"]["last_error"]
        assert client.post("/models/broken/invocations", json={"dataframe_records": [CLF_ROW]}).status_code == 503
        failed = client.post("/admin/reload", params={"model": "broken"})
        assert failed.status_code == 503 and failed.json()["error_code"] == "RELOAD_FAILED"
        everything = client.post("/admin/reload")
        assert everything.status_code == 503 and "broken" in everything.json()["message"]
        assert everything.json()["models"]["reg"]["version"] == "2"
        assert client.post("/admin/reload", params={"model": "late"}).status_code == 404  # not a model here yet
        for path, body in (("/models/clf/invocations", [CLF_ROW]), ("/models/reg/invocations", REG_ROWS)):
            assert client.post(path, json={"dataframe_records": body}).status_code == 200

        # A new model config, then its first champion: the deploy task's reload of that model serves it.
        configs.append(SimpleNamespace(model_name="late", features=SimpleNamespace(event_time=None)))
        assert client.post("/admin/reload", params={"model": "late"}).status_code == 503  # no champion yet
        assert client.post("/models/late/invocations", json={"dataframe_records": [CLF_ROW]}).status_code == 503
        promote_version(models.client, "late", registry.register("late", models.clf[1]))
        state = client.post("/admin/reload", params={"model": "late"}).json()
        assert (state["model"], state["version"], state["challenger_mode"], state["challenger_version"],
                state["workers"]) == ("late", "1", "off", None, 1) and state["pid"]
        late = client.post("/models/late/invocations", json={"dataframe_records": [CLF_ROW]})
        assert late.status_code == 200 and late.json()["predictions"][0][1] < 0.5  # the flipped model
        metrics = client.get("/metrics").text
    assert 'prediction_model_load_failures_total{model="broken"} 3.0' in metrics


def test_swapping_one_models_champion_under_load_leaves_the_other_untouched(models, tmp_path):
    from pipelines.registry import promote_version
    from pipelines.serving.app import create_app
    from pipelines.serving.prediction_log import PredictionLog

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", flush_seconds=0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app("clf", models=["reg"], configured_models=False, poll_seconds=0, prediction_log=log)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_started(server)
    reg_before = httpx.get(f"{url}/models/reg/health").json()

    answers: dict[str, list[tuple[int, str, list]]] = {"clf": [], "reg": []}
    stop = threading.Event()
    requests = {"clf": ("/models/clf/invocations", {"dataframe_records": [CLF_ROW]}),
                "reg": ("/models/reg/invocations", {"dataframe_records": REG_ROWS})}

    def load(model: str) -> None:
        path, body = requests[model]
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                response = http.post(f"{url}{path}", json=body)
                answers[model].append((response.status_code, response.headers.get("X-Model-Version", ""),
                                       response.json().get("predictions")))

    clients = [threading.Thread(target=load, args=(model,)) for model in ("clf", "reg") for _ in range(3)]
    for client in clients:
        client.start()
    wait_for(lambda: all(len(answers[m]) >= 20 for m in answers), what="answers before the swap")
    promote_version(models.client, "clf", models.clf_versions[1])
    swapped = httpx.post(f"{url}/admin/reload", params={"model": "clf"}, timeout=60, headers=admin_headers()).json()
    answered_at_swap = {m: len(a) for m, a in answers.items()}
    wait_for(lambda: all(len(answers[m]) >= answered_at_swap[m] + 20 for m in answers), what="answers after the swap")
    stop.set()
    for client in clients:
        client.join()
    reg_after = httpx.get(f"{url}/models/reg/health").json()
    server.should_exit = True
    thread.join(timeout=30)

    assert (swapped["model"], swapped["version"]) == ("clf", models.clf_versions[1])
    assert {status for model in answers for status, _, _ in answers[model]} == {200}
    # The regressor: every answer from the same loaded version, with the same values, across the swap.
    assert len(answers["reg"]) > 20 and {version for _, version, _ in answers["reg"]} == {"2"}
    expected = reg_expected(models, REG_ROWS)
    for _, _, predictions in answers["reg"]:
        np.testing.assert_allclose(predictions, expected)
    assert reg_after["loaded_at"] == reg_before["loaded_at"] and reg_after["version"] == "2"
    # The classifier: v1, then v2 for good (only requests already in flight, one per client, may carry v1).
    clf_versions = [version for _, version, _ in answers["clf"]]
    assert clf_versions[0] == models.clf_versions[0] and clf_versions[-1] == models.clf_versions[1]
    first_new = clf_versions.index(models.clf_versions[1])
    assert clf_versions[first_new:].count(models.clf_versions[0]) <= 3
    assert answers["clf"][-1][2][0][1] < 0.5  # v2 is the flipped model
    log.close()
    assert log.rows_written == len(answers["clf"]) + 2 * len(answers["reg"])
