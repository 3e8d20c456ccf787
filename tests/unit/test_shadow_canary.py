"""A challenger in shadow (scored and logged, never returned) or on a canary share of the traffic."""

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipelines.deployment import admin_headers
from tests.unit.toy_models import registry_to_copy, use_copy_of

ROW = {"signal": 0.8, "group": "a"}


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, empty_mlflow_db):
    """v1 (champion) says P(1) is high for a positive signal; v2 (challenger) says the opposite. Made once for
    the module; each test gets a copy of its store (``registry``)."""
    from pipelines.registry import promote_version

    folder = tmp_path_factory.mktemp("shadow_canary_registry")
    with registry_to_copy(folder, empty_mlflow_db) as toy_registry:
        versions = [toy_registry.register("cc", toy_registry.log(seed=i, flip=flip))
                    for i, flip in enumerate((False, True))]
        promote_version(toy_registry.client, "cc", versions[0])
        toy_registry.client.set_registered_model_alias("cc", "challenger", versions[1])
    return folder


@pytest.fixture()
def registry(two_versions, tmp_path, monkeypatch):
    """The test's own copy of ``two_versions``' store; its folder, where the service logs its predictions."""
    use_copy_of(two_versions, tmp_path, monkeypatch)
    return tmp_path


def logged(tmp_path, *columns: str) -> pd.DataFrame:
    from pipelines.prediction_store import read_log

    rows = read_log(f"sqlite:///{tmp_path / 'predictions.db'}")
    return rows[list(columns or ("request_id", "model_version", "route", "prediction"))]


def read_log_columns(tmp_path) -> list[str]:
    from pipelines.prediction_store import read_log

    return list(read_log(f"sqlite:///{tmp_path / 'predictions.db'}").columns)


def app(tmp_path, **options):
    from pipelines.serving.app import create_app
    from pipelines.serving.prediction_log import PredictionLog

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", flush_seconds=0.01)
    return TestClient(create_app("cc", poll_seconds=0, prediction_log=log, **options), headers=admin_headers())


def test_shadow_is_scored_and_logged_but_never_returned(registry):
    with app(registry, challenger_mode="shadow") as client:
        assert client.get("/health").json()["challenger_version"] == "2"
        answers = [client.post("/invocations", json={"dataframe_records": [ROW]}, headers={"X-Request-ID": f"r{i}"})
                   for i in range(20)]
    assert all(a.headers["X-Model-Version"] == "1" and a.headers["X-Model-Route"] == "champion" for a in answers)
    assert all(a.json()["predictions"][0][1] > 0.5 for a in answers)  # the champion's view, never the shadow's
    rows = logged(registry)
    assert sorted(rows.groupby(["route", "model_version"]).size().items()) == [
        (("champion", "1"), 20), (("shadow", "2"), 20)]
    shadow = rows[rows.route == "shadow"]
    assert (shadow.prediction < 0.5).all() and set(shadow.request_id) == {f"r{i}" for i in range(20)}


def test_canary_share_is_answered_by_the_challenger_and_sticky(registry):
    with app(registry, challenger_mode="canary", canary_share=0.3) as client:
        answers = {f"r{i}": client.post("/invocations", json={"dataframe_records": [ROW]},
                                        headers={"X-Request-ID": f"r{i}"}) for i in range(400)}
        serving = client.app.state.service.models.get("cc").serving
    routes = {rid: a.headers["X-Model-Route"] for rid, a in answers.items()}
    canary = [rid for rid, route in routes.items() if route == "canary"]
    assert 0.2 < len(canary) / len(routes) < 0.4
    assert all(answers[rid].headers["X-Model-Version"] == "2" for rid in canary)
    assert all(serving.route_for(rid)[0] == route for rid, route in routes.items())  # the same id, the same route
    rows = logged(registry)
    assert set(rows[rows.route == "canary"].model_version) == {"2"}
    assert (rows.route == "canary").sum() == len(canary)


def test_without_a_challenger_everything_goes_to_the_champion(registry):
    mlflow.MlflowClient().delete_registered_model_alias("cc", "challenger")
    with app(registry, challenger_mode="canary", canary_share=1.0) as client:
        answer = client.post("/invocations", json={"dataframe_records": [ROW]})
    assert answer.headers["X-Model-Route"] == "champion" and answer.headers["X-Model-Version"] == "1"


def test_by_default_the_challenger_runs_as_its_version_tags_say(registry):
    """The training DAG stages a challenger with rollout tags; the service follows them, no restart."""
    from pipelines.registry import retire_challenger, stage_challenger

    client_ = mlflow.MlflowClient()
    stage_challenger(client_, "cc", "2", "canary", 0.5)
    with app(registry) as client:
        state = client.post("/admin/reload").json()
        assert (state["challenger_mode"], state["challenger_version"], state["canary_share"]) == ("canary", "2", 0.5)
        routes = [client.post("/invocations", json={"dataframe_records": [ROW]}).headers["X-Model-Route"]
                  for _ in range(200)]
        assert 0.35 < routes.count("canary") / len(routes) < 0.65
        retire_challenger(client_, "cc", "canary worse on PR AUC")
        state = client.post("/admin/reload").json()
        assert (state["challenger_mode"], state["challenger_version"]) == ("off", None)
        answer = client.post("/invocations", json={"dataframe_records": [ROW]})
    assert answer.headers["X-Model-Route"] == "champion"


def test_the_event_time_column_is_logged_not_scored(registry):
    with app(registry, challenger_mode="off", event_time="t") as client:
        good = client.post("/invocations", json={"dataframe_records": [{**ROW, "t": "2013-07-01T17:00:00Z"},
                                                                       {**ROW, "t": None}]},
                           headers={"X-Request-ID": "timed"})
        bad = client.post("/invocations", json={"dataframe_records": [{**ROW, "t": "yesterday"}]})
        untimed = client.post("/invocations", json={"dataframe_records": [ROW]}, headers={"X-Request-ID": "plain"})
    assert good.status_code == 200 and untimed.status_code == 200
    assert bad.status_code == 400 and "'t'" in bad.json()["message"]
    rows = logged(registry, "request_id", "event_time")
    assert str(rows.event_time[0]).startswith("2013-07-01 17:00:00+00:00") and rows.event_time[1:].isna().all()
    assert "t" not in read_log_columns(registry)


def test_an_event_time_with_an_offset_is_logged_in_utc(registry):
    with app(registry, challenger_mode="off", event_time="t") as client:
        answer = client.post("/invocations", json={"dataframe_records": [{**ROW, "t": "2013-01-01T20:00:00-05:00"}]})
    assert answer.status_code == 200
    stamp = logged(registry, "event_time").event_time[0]
    assert str(stamp).startswith("2013-01-02 01:00:00+00:00")


def test_an_unreachable_registry_keeps_the_models_and_routes_and_says_degraded(registry, monkeypatch):
    """The registry down: a reload fails, the champion and the shadow challenger keep serving as before (an
    outage is never read as "no challenger"), and /health says degraded until the registry is back."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once rather than back off for minutes
    with app(registry, challenger_mode="shadow", configured_models=False) as client:
        assert client.get("/health").json()["challenger_version"] == "2"
        store = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri("http://127.0.0.1:9")  # nothing listens there
        mlflow.set_registry_uri("http://127.0.0.1:9")
        try:
            failed = client.post("/admin/reload")
            health = client.get("/health")
            answer = client.post("/invocations", json={"dataframe_records": [ROW]})
        finally:
            mlflow.set_tracking_uri(store)
            mlflow.set_registry_uri(store)
        assert failed.status_code == 503 and failed.json()["error_code"] == "RELOAD_FAILED"
        state = health.json()
        assert health.status_code == 200 and state["status"] == "degraded" and state["last_error"]
        assert (state["version"], state["challenger_mode"], state["challenger_version"]) == ("1", "shadow", "2")
        assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1"
        assert client.post("/admin/reload").json()["status"] == "ok"


def test_a_batch_holding_the_challenger_on_two_routes_logs_each_request_on_its_own(registry):
    """While the challenger moves from shadow to canary, its shadow and canary requests can share a batch:
    each request is logged on the route it was scored on."""
    import asyncio

    import orjson

    from pipelines.serving.protocol import read_request

    with app(registry, challenger_mode="shadow") as client:
        service = client.app.state.service
        challenger = service.models.get("cc").serving.challenger
        body = orjson.dumps({"dataframe_records": [ROW, ROW]})

        async def together():
            routes = ["shadow", "canary"] * 4
            return await asyncio.gather(*(
                service.score(challenger, route, read_request(body, "application/json", challenger, None).columns,
                              f"{route}-{i}") for i, route in enumerate(routes)))

        before = service.batcher.batches
        client.portal.call(together)
        assert service.batcher.batches - before < 8  # the eight requests shared batches
    rows = logged(registry)
    assert {(r.request_id, r.route) for r in rows.itertuples()} == {
        (f"{route}-{i}", route) for i, route in enumerate(["shadow", "canary"] * 4)}
    assert rows.groupby("request_id").size().eq(2).all()
