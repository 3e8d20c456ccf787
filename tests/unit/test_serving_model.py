"""The prediction service on a real model logged and registered in a SQLite MLflow store."""

import shutil

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from toy_models import WITH_NOISE as FEATURES
from toy_models import ToyRegistry, toy_frame

from pipelines.deployment import admin_headers
from pipelines.training import model_inputs
from tests.waiting import wait_for


def frame(n: int, seed: int) -> pd.DataFrame:
    return toy_frame(n, seed, noise=True)


@pytest.fixture(scope="module")
def toy_champion(tmp_path_factory, empty_mlflow_db):
    """A freshly trained model, logged, registered and promoted in a SQLite MLflow store (read-only to the
    tests: each builds its own app on it)."""
    folder = tmp_path_factory.mktemp("registry")
    shutil.copyfile(empty_mlflow_db, folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        from pipelines.registry import promote_version

        registry = ToyRegistry(folder)
        logged = registry.log(seed=1, noise=True, rows=500, features=FEATURES)
        promote_version(registry.client, "toy", registry.register("toy", logged, {"data_hash": "h" * 32}))
    return folder, logged.model


def _client(toy_champion, monkeypatch, **app_options) -> TestClient:
    """A TestClient on an app serving the toy champion."""
    from pipelines.serving.app import create_app

    folder, model = toy_champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    test_client = TestClient(create_app("toy", poll_seconds=0, **app_options), headers=admin_headers())
    test_client.model = model
    return test_client


@pytest.fixture()
def service(toy_champion, monkeypatch):
    with _client(toy_champion, monkeypatch) as test_client:
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


def test_rows_logged_equal_rows_served_with_the_request_id(toy_champion, tmp_path, monkeypatch):
    from pipelines.prediction_store import read_log
    from pipelines.serving.prediction_log import PredictionLog

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", flush_seconds=0.01)
    served, ids = 0, []
    with _client(toy_champion, monkeypatch, prediction_log=log) as client:
        for n in (1, 3, 10):
            rows = frame(n, n)[["signal", "noise", "group"]]
            answer = client.post("/invocations", json={"dataframe_records": rows.to_dict(orient="records")},
                                 headers={"X-Request-ID": f"req-{n}"})
            assert answer.status_code == 200 and answer.headers["X-Request-ID"] == f"req-{n}"
            assert answer.json()["request_id"] == f"req-{n}"
            served += n
            ids.append(f"req-{n}")
        answer = client.post("/invocations", json={"dataframe_records": [{"signal": 1.0}]})
        assert answer.status_code == 400
        metrics = client.get("/metrics").text
        assert 'prediction_requests_total{model="toy",status="200"} 3.0' in metrics
        assert 'prediction_requests_total{model="toy",status="400"} 1.0' in metrics
        assert 'prediction_rows_total{model="toy"} 14.0' in metrics
        assert 'prediction_model_version{model="toy"} 1.0' in metrics
    # leaving the client shuts the app down, which drains the log
    rows = read_log(log.url)
    assert len(rows) == served and set(rows.request_id) == set(ids)
    assert rows.groupby("request_id").row_index.apply(list).to_dict() == {
        f"req-{n}": list(range(n)) for n in (1, 3, 10)}
    assert rows.prediction.between(0.0, 1.0).all()
    assert rows.signal.dtype == "float64" and set(rows.group.dropna()) <= {"a", "b", "c"}


def test_requests_scored_together_are_logged_each_with_its_own_rows(toy_champion, tmp_path, monkeypatch):
    """Concurrent requests share micro-batches, and a batch reaches the log as one entry: each request's rows
    keep its id, row indexes, features and the predictions it was answered."""
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.prediction_store import read_log
    from pipelines.serving.prediction_log import PredictionLog

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", flush_seconds=0.05)
    sent = {f"c{n}": frame(1 + n % 3, n)[["signal", "noise", "group"]] for n in range(240)}
    with _client(toy_champion, monkeypatch, prediction_log=log) as client:
        def post(request_id: str) -> list:
            answer = client.post("/invocations", json={"dataframe_records": sent[request_id].to_dict("records")},
                                 headers={"X-Request-ID": request_id})
            assert answer.status_code == 200, answer.text
            return answer.json()["predictions"]

        with ThreadPoolExecutor(24) as clients:
            answered = dict(zip(sent, clients.map(post, sent), strict=True))
        batches = client.app.state.service.batcher.batches
    assert batches < len(sent) / 2  # the requests were scored together
    rows = read_log(log.url).sort_values(["request_id", "row_index"])
    assert len(rows) == sum(map(len, sent.values())) and rows.groupby("request_id").ngroups == len(sent)
    for request_id, mine in rows.groupby("request_id"):
        assert mine.row_index.tolist() == list(range(len(sent[request_id])))
        np.testing.assert_array_equal(mine.signal, sent[request_id].signal)
        assert mine.group.tolist() == sent[request_id].group.tolist()
        np.testing.assert_allclose(mine.prediction, [p[1] for p in answered[request_id]])


def test_a_hostile_request_never_stops_the_prediction_log(toy_champion, tmp_path, monkeypatch):
    """A lone surrogate in a text value is served, set aside by the log with its reason, and every request
    after it is logged; /health reports the log's state. An over-long or unprintable request id is a 400."""
    from pipelines.serving.prediction_log import PredictionLog

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", flush_seconds=0.01,
                        set_aside=tmp_path / "set_aside.jsonl")
    row = frame(1, 1)[["signal", "noise"]].iloc[0].to_dict()
    with _client(toy_champion, monkeypatch, prediction_log=log) as client:
        hostile = b'{"dataframe_records": [{"signal": 0.5, "noise": 0.1, "group": "\\ud800"}]}'
        assert client.post("/invocations", content=hostile,
                           headers={"Content-Type": "application/json"}).status_code == 200
        for _ in range(5):
            assert client.post("/invocations", json={"dataframe_records": [{**row, "group": "a"}]}).status_code == 200
        for request_id in ("x" * 65, "tab\there"):
            refused = client.post("/invocations", json={"dataframe_records": [{**row, "group": "a"}]},
                                  headers={"X-Request-ID": request_id})
            assert refused.status_code == 400 and "X-Request-ID" in refused.json()["message"]
        wait_for(lambda: not log.backlog, 10, "the log's backlog written")
        state = client.get("/health").json()["prediction_log"]
        assert state["writer"] == "running" and (state["rows_written"], state["rows_set_aside"]) == (5, 1)
        assert 'prediction_log_rows_set_aside 1.0' in client.get("/metrics").text
        assert 'prediction_requests_total{model="toy",status="400"} 2.0' in client.get("/metrics").text
    assert "cannot encode" in (tmp_path / "set_aside.jsonl").read_text()


def test_a_log_entry_that_cannot_be_built_is_counted_as_set_aside(toy_champion, tmp_path, monkeypatch):
    """A bug building a batch's log entry fails no request, and its rows are counted and kept as set aside:
    rows served = rows written + rows set aside still holds."""
    import pipelines.serving.service as service_module
    from pipelines.prediction_store import ServedBatch
    from pipelines.serving.prediction_log import PredictionLog

    def broken_once(*args, **kwargs):
        monkeypatch.setattr(service_module, "ServedBatch", ServedBatch)
        raise ValueError("a bug building the entry")

    log = PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}", flush_seconds=0.01,
                        set_aside=tmp_path / "set_aside.jsonl")
    rows = frame(3, 2)[["signal", "noise", "group"]].to_dict("records")
    with _client(toy_champion, monkeypatch, prediction_log=log) as client:
        monkeypatch.setattr(service_module, "ServedBatch", broken_once)
        for request_id in ("unbuilt", "next"):
            answer = client.post("/invocations", json={"dataframe_records": rows}, headers={"X-Request-ID": request_id})
            assert answer.status_code == 200
        wait_for(lambda: not log.backlog, 10, "the log's backlog written")
        state = client.get("/health").json()["prediction_log"]
        assert (state["rows_written"], state["rows_set_aside"], state["backlog_rows"]) == (3, 3, 0)
    (kept,) = [orjson.loads(line) for line in (tmp_path / "set_aside.jsonl").read_bytes().splitlines()]
    assert (kept["request_id"], kept["rows"]) == ("unbuilt", 3) and "a bug building the entry" in kept["reason"]


def test_a_request_id_is_answered_once(toy_champion, tmp_path, monkeypatch):
    """A request under an id already sent gets a 409 naming it, whatever the route, and is not logged: lineage
    finds one request per id. A refused request gives its id back; a request without one gets one made. The
    ids outlive a restart on the same prediction log."""
    from pipelines.prediction_store import read_log
    from pipelines.serving.prediction_log import PredictionLog

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    row = frame(1, 1)[["signal", "noise", "group"]].to_dict(orient="records")
    with _client(toy_champion, monkeypatch, prediction_log=PredictionLog(url, flush_seconds=0.01)) as client:
        def post(path: str, request_id: str | None = None, body: dict | None = None):
            body = body or ({"rows": row} if path.endswith("predict") else {"dataframe_records": row})
            return client.post(path, json=body, headers={"X-Request-ID": request_id} if request_id else {})

        assert post("/invocations", "once").status_code == 200
        for path in ("/invocations", "/predict", "/models/toy/invocations"):
            again = post(path, "once")
            assert again.status_code == 409, again.text
            assert (again.json()["error_code"], again.json()["request_id"]) == ("DUPLICATE_REQUEST_ID", "once")
            assert "'once'" in again.json()["message"] and again.headers["X-Request-ID"] == "once"
        assert post("/invocations", "mended", {"dataframe_records": [{"signal": 1.0}]}).status_code == 400
        assert post("/invocations", "mended").status_code == 200  # the refused request gave its id back
        made = [post("/predict").headers["X-Request-ID"] for _ in range(3)]
        assert len(set(made)) == 3 and post("/invocations", made[0]).status_code == 409
        assert 'prediction_requests_total{model="toy",status="409"} 4.0' in client.get("/metrics").text
    rows = read_log(url)
    assert rows.groupby("request_id").size().to_dict() == {"once": 1, "mended": 1, **{m: 1 for m in made}}
    with _client(toy_champion, monkeypatch, prediction_log=PredictionLog(url, flush_seconds=0.01)) as restarted:
        assert restarted.post("/invocations", json={"dataframe_records": row},
                              headers={"X-Request-ID": "once"}).status_code == 409


def test_oversized_body_gets_a_413(toy_champion, monkeypatch):
    with _client(toy_champion, monkeypatch, max_body_bytes=200, log_predictions=False) as client:
        rows = frame(20, 1)[["signal", "noise", "group"]]
        answer = client.post("/invocations", json={"dataframe_records": rows.to_dict(orient="records")})
        assert answer.status_code == 413 and "200-byte limit" in answer.json()["message"]


def test_typed_predict_endpoint_and_its_openapi_schema(service):
    rows = frame(2, 5)[["signal", "noise", "group"]].to_dict(orient="records")
    answer = service.post("/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "1" and len(body["probabilities"]) == 2
    assert body["classes"] == ["0", "1"] and body["positive_class"] == "1"
    expected = service.model.predict_proba(model_inputs(pd.DataFrame(rows), FEATURES))
    np.testing.assert_allclose(body["probabilities"], expected)

    schema = service.get("/openapi.json").json()
    request = {"$ref": "#/components/schemas/toy_PredictRequest"}
    assert schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"] == request
    assert schema["paths"]["/models/toy/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"] == request
    row = schema["components"]["schemas"]["toy_row"]
    assert set(row["required"]) == {"signal", "noise", "group"} and row["additionalProperties"] is False

    bad = service.post("/predict", json={"rows": [{"signal": "far", "noise": 1.0, "group": "a", "extra": 1}]})
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["detail"]}
    assert {"rows.0.signal", "rows.0.extra"} <= fields
    assert service.post("/predict", json={"rows": []}).status_code == 422


@pytest.mark.parametrize("value", [b"true", b'"18"', b"1e400", b"9" * 400])
def test_typed_predict_takes_only_numbers_in_numeric_fields(service, value):
    """A boolean, a number as text or a number no float holds is refused, naming the field; an integer is a
    number. (``/invocations`` converts the first two, as ``mlflow models serve`` does.)"""
    def rows(signal: bytes) -> bytes:
        return b'{"rows": [{"signal": 0.5, "noise": 1, "group": "a"}, {"signal": %s, "noise": 1, "group": "a"}]}' \
            % signal

    headers = {"Content-Type": "application/json"}
    assert service.post("/predict", content=rows(b"2"), headers=headers).status_code == 200
    bad = service.post("/predict", content=rows(value), headers=headers)
    assert bad.status_code == 422, bad.text
    assert [d["field"] for d in bad.json()["detail"]] == ["rows.1.signal"]


@pytest.mark.parametrize("body,field", [
    (b"{}", "rows"),
    (b'{"rows": [], "extra": 1}', "extra"),
    (b'{"rows": {"signal": 1}}', "rows"),
    (b'{"rows": [{"signal": 1, "noise": 1, "group": "a"}, 7]}', "rows.1"),
    (b'{"rows": [{"signal": 1, "noise": 1, "group": "a"]}', ""),  # malformed
    (b'{"rows": []}', "rows"),
])
def test_a_typed_request_of_the_wrong_shape_gets_a_422_naming_where(service, body, field):
    answer = service.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["field"] == field and answer.json()["error_code"] == "INVALID_INPUT"


def test_a_typed_request_names_its_first_invalid_fields_and_stops(service, monkeypatch):
    import pipelines.serving.protocol as protocol

    monkeypatch.setattr(protocol, "PIECE_ROWS", 10)
    rows = [{"signal": "x", "noise": 1, "group": "a"}] * 50
    answer = service.post("/predict", json={"rows": rows}).json()
    assert [d["field"] for d in answer["detail"]] == [f"rows.{i}.signal" for i in range(20)]
    assert answer["message"] == "20 invalid field(s) in the first 20 rows (the rest not checked)"


def test_a_large_body_is_read_off_the_event_loop(service, monkeypatch):
    """A body over ``LARGE_BODY_BYTES`` is read (split, validated, converted) in a worker thread, with the
    garbage collector paused, so the event loop answers other requests meanwhile
    (``benchmarks/serving_big_body.py`` measures it); a small one on the loop, where a thread would cost more
    than the read. Both answer the same."""
    import asyncio
    import gc

    from pipelines.serving.protocol import LARGE_BODY_BYTES
    from pipelines.serving.routes import scoring

    on_loop: list[tuple[str, bool, bool]] = []

    def recorded(name: str):
        real = getattr(scoring, name)

        def read(*args):
            try:
                asyncio.get_running_loop()
                on_loop.append((name, True, gc.isenabled()))
            except RuntimeError:
                on_loop.append((name, False, gc.isenabled()))
            return real(*args)
        return read

    for name in ("read_request", "read_typed_request"):
        monkeypatch.setattr(scoring, name, recorded(name))
    sent = frame(8000, 7)[["signal", "noise", "group"]]
    rows = sent.to_dict(orient="records")
    split = sent.to_dict(orient="split")
    assert min(len(orjson.dumps({"rows": rows})), len(orjson.dumps(split))) > LARGE_BODY_BYTES
    expected = service.model.predict_proba(model_inputs(sent, FEATURES))
    typed = service.post("/predict", json={"rows": rows})
    assert typed.status_code == 200, typed.text
    np.testing.assert_allclose(typed.json()["probabilities"], expected)
    for body in ({"dataframe_records": rows}, {"dataframe_split": split}):
        answer = service.post("/invocations", json=body)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"], expected)
    bad = service.post("/predict", json={"rows": [*rows[:4000], {**rows[0], "signal": "x"}, *rows[:3999]]})
    assert bad.status_code == 422 and [d["field"] for d in bad.json()["detail"]] == ["rows.4000.signal"]
    assert service.post("/predict", json={"rows": rows[:1]}).status_code == 200
    assert on_loop == [("read_typed_request", False, False), ("read_request", False, False),
                       ("read_request", False, False), ("read_typed_request", False, False),
                       ("read_typed_request", True, True)]
    assert gc.isenabled()


def test_every_route_documents_the_errors_it_answers(service):
    """Each operation in /openapi.json lists every status it can answer; an error's body is the service's
    error shape (``error_code``, ``message``, and what the status adds); no operation lists FastAPI's own
    validation error, which the service never answers."""
    document = service.get("/openapi.json").json()
    scoring = {"200", "400", "401", "409", "413", "415", "500", "503"}
    expected = {
        ("post", "/invocations"): scoring, ("post", "/models/{name}/invocations"): scoring | {"404"},
        ("post", "/predict"): scoring | {"422"}, ("post", "/models/toy/predict"): scoring | {"422"},
        ("get", "/ping"): {"200", "503"}, ("get", "/health"): {"200", "503"},
        ("get", "/models/{name}/health"): {"200", "404", "503"}, ("get", "/version"): {"200"},
        ("get", "/metrics"): {"200"}, ("post", "/admin/reload"): {"200", "401", "403", "404", "503"},
    }
    documented = {(method, path): set(operation["responses"])
                  for path, item in document["paths"].items() for method, operation in item.items()}
    assert documented == expected
    schemas = document["components"]["schemas"]

    def body_of(method: str, path: str, status: str) -> dict:
        content = document["paths"][path][method]["responses"][status]["content"]["application/json"]
        schema = content["schema"]
        return schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema

    for (method, path), statuses in expected.items():
        for status in statuses - {"200"}:
            if (path, status) in {("/ping", "503"), ("/health", "503"), ("/models/{name}/health", "503")}:
                continue  # the model's state, or nothing: not an error body
            assert {"error_code", "message"} <= set(body_of(method, path, status)["required"]), (path, status)
    assert "detail" in body_of("post", "/predict", "422")["required"]
    assert "served_models" in body_of("post", "/models/{name}/invocations", "404")["required"]
    assert "request_id" in body_of("post", "/invocations", "409")["required"]
    assert "HTTPValidationError" not in schemas
    header = [p for p in document["paths"]["/invocations"]["post"]["parameters"] if p["name"] == "X-Request-ID"]
    assert header and header[0]["in"] == "header" and header[0]["schema"]["maxLength"] == 64


def test_unsupported_content_types_get_a_415_as_from_mlflow_models_serve(service):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        answer = service.post("/invocations", content=b'{"dataframe_records": []}',
                              headers={"Content-Type": content_type})
        assert answer.status_code == 415 and answer.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE", content_type
        assert "application/json or text/csv" in answer.json()["message"]


def test_admin_endpoints_need_the_configured_token(service, monkeypatch):
    from pipelines.serving.app import create_app

    anonymous = service.post("/admin/reload", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert service.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert service.post("/admin/reload").status_code == 200  # the client sends the configured token
    headers = admin_headers()
    monkeypatch.delenv("MLOPS_SERVING_ADMIN_TOKEN")
    with TestClient(create_app("toy", poll_seconds=0, log_predictions=False), headers=headers) as off:
        refused = off.post("/admin/reload")
    assert refused.status_code == 403 and "MLOPS_SERVING_ADMIN_TOKEN" in refused.json()["message"]


def test_with_a_predict_token_scoring_needs_it_and_the_rest_stays_open(toy_champion, monkeypatch):
    """MLOPS_SERVING_PREDICT_TOKEN guards every scoring route (unknown model names included: the 404 lists
    the served ones); health, metrics and the OpenAPI document stay open; refusals are counted."""
    row = frame(1, 1)[["signal", "noise", "group"]].to_dict(orient="records")
    with _client(toy_champion, monkeypatch, predict_token="let-me-score", log_predictions=False) as client:
        for path in ("/invocations", "/models/toy/invocations", "/models/nope/invocations"):
            refused = client.post(path, json={"dataframe_records": row})
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer", path
        assert client.post("/predict", json={"rows": row}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        bad_id = client.post("/invocations", json={"dataframe_records": row}, headers={"X-Request-ID": "x" * 65})
        assert bad_id.status_code == 401 and "X-Request-ID" not in bad_id.headers  # nothing read before the token
        ok = client.post("/invocations", json={"dataframe_records": row},
                         headers={"Authorization": "Bearer let-me-score"})
        assert ok.status_code == 200
        assert all(client.get(path).status_code == 200 for path in ("/health", "/ping", "/openapi.json"))
        assert 'prediction_requests_total{model="toy",status="401"} 4.0' in client.get("/metrics").text
