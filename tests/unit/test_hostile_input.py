"""Hostile requests against a running service (uvicorn on loopback, a real registered model): every answer
is a 4xx or a 200, never a 5xx or a hang, each is counted in /metrics, and an oversized body is refused while
it streams."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from hypothesis.errors import Unsatisfiable

from tests.waiting import wait_until_started

ROW = {"signal": 0.5, "group": "a"}
LIMIT = 1024 * 1024


def records(*rows) -> bytes:
    import orjson

    return orjson.dumps({"dataframe_records": list(rows)})


def nested(depth: int) -> bytes:
    return b'{"dataframe_records": [{"signal": ' + b"[" * depth + b"1" + b"]" * depth + b', "group": "a"}]}'


# (what, path, body, content type)
CORPUS = [
    ("JSON nested 5,000 deep", "/invocations", nested(5000), "application/json"),
    ("JSON nested 100,000 deep", "/invocations", nested(100_000), "application/json"),
    ("nesting on /predict", "/predict", b'{"rows": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
    ("a 400-digit integer", "/invocations", b'{"dataframe_records": [{"signal": ' + b"9" * 400 + b', "group": "a"}]}',
     "application/json"),
    ("a 5,000-digit integer", "/invocations", b'{"dataframe_records": [{"signal": ' + b"9" * 5000
     + b', "group": "a"}]}', "application/json"),
    ("a huge integer category", "/invocations", b'{"dataframe_records": [{"signal": 1, "group": ' + b"9" * 400
     + b"}]}", "application/json"),
    ("a huge integer on /predict", "/predict", b'{"rows": [{"signal": ' + b"9" * 400 + b', "group": "a"}]}',
     "application/json"),
    ("a lone surrogate", "/invocations", b'{"dataframe_records": [{"signal": 1, "group": "\\ud800"}]}',
     "application/json"),
    ("NUL in a category", "/invocations", b'{"dataframe_records": [{"signal": 1, "group": "a\\u0000b"}]}',
     "application/json"),
    ("a 500 KB string", "/invocations", records({"signal": 1, "group": "x" * 500_000}), "application/json"),
    ("100,000 rows (over the body limit)", "/invocations", records(*[ROW] * 100_000), "application/json"),
    ("20,000 rows", "/invocations", records(*[ROW] * 20_000), "application/json"),
    ("duplicate keys", "/invocations", b'{"dataframe_records": [{"signal": 1, "signal": 2, "group": "a"}]}',
     "application/json"),
    ("duplicate format keys", "/invocations", b'{"dataframe_records": [], "dataframe_records": [{"signal": 1}]}',
     "application/json"),
    ("JSON as text/plain", "/invocations", records(ROW), "text/plain"),
    ("JSON as text/plain on /predict", "/predict", b'{"rows": [{"signal": 1, "group": "a"}]}', "text/plain"),
    ("form-encoded", "/invocations", b"signal=1&group=a", "application/x-www-form-urlencoded"),
    ("no content type", "/invocations", records(ROW), ""),
    ("CSV with a ragged row", "/invocations", b"signal,group\n1,a\n2,b,c,d\n", "text/csv"),
    ("CSV not UTF-8", "/invocations", b"signal,group\n1,\xff\xfe\n", "text/csv"),
    ("binary garbage", "/invocations", bytes(range(256)) * 8, "application/json"),
    ("an empty body", "/invocations", b"", "application/json"),
    ("null", "/invocations", b"null", "application/json"),
    ("rows of scalars", "/invocations", b'{"instances": [1, 2, 3]}', "application/json"),
    ("columns of objects", "/invocations", b'{"inputs": {"signal": [{"a": 1}], "group": ["a"]}}', "application/json"),
    ("split with ragged data", "/invocations", b'{"dataframe_split": {"columns": ["signal", "group"], "data": [[1]]}}',
     "application/json"),
    ("NaN and Infinity tokens", "/invocations", b'{"dataframe_records": [{"signal": NaN, "group": "a"}, '
     b'{"signal": Infinity, "group": "b"}]}', "application/json"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, empty_mlflow_db):
    import os

    from pipelines.registry import promote_version
    from pipelines.serving.app import create_app
    from pipelines.serving.prediction_log import PredictionLog
    from tests.unit.toy_models import ToyRegistry

    folder = tmp_path_factory.mktemp("hostile")
    shutil.copyfile(empty_mlflow_db, folder / "mlflow.db")
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    try:
        registry = ToyRegistry(folder)
        logged = registry.log(seed=1, rows=200)
        promote_version(registry.client, "toy", registry.register("toy", logged, {"data_hash": "h" * 32}))
        log = PredictionLog(f"sqlite:///{folder / 'log.db'}", flush_seconds=0.01,
                            set_aside=folder / "set_aside.jsonl", spill_dir=folder / "spill")
        app = create_app("toy", poll_seconds=0, configured_models=False, prediction_log=log, max_body_bytes=LIMIT)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        wait_until_started(uv)
        yield f"http://127.0.0.1:{port}", port, log
        uv.should_exit = True
        thread.join(30)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def requests_counted(base: str) -> dict[str, float]:
    counts = {}
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith('prediction_requests_total{model="toy"'):
            status = line.split('status="')[1].split('"')[0]
            counts[status] = float(line.rsplit(" ", 1)[1])
    return counts


def test_every_hostile_request_gets_a_4xx_or_200_and_is_counted(server):
    base, _, log = server
    before = requests_counted(base)
    answers = {}
    with httpx.Client(timeout=30) as http:
        for what, path, body, content_type in CORPUS:
            headers = {"Content-Type": content_type} if content_type else {}
            answers[what] = http.post(f"{base}{path}", content=body, headers=headers).status_code
        assert http.get(f"{base}/health").json()["prediction_log"]["writer"] == "running"
        assert http.post(f"{base}/invocations", content=records(ROW),
                         headers={"Content-Type": "application/json"}).status_code == 200  # still serving
    failed = {what: status for what, status in answers.items() if status >= 500}
    assert not failed, f"5xx answers: {failed}"
    assert answers["JSON as text/plain"] == 415 and answers["JSON as text/plain on /predict"] == 415
    assert answers["100,000 rows (over the body limit)"] == 413
    assert answers["20,000 rows"] == 200 and answers["NUL in a category"] == 200
    after = requests_counted(base)
    counted = sum(after.values()) - sum(before.values())
    assert counted == len(CORPUS) + 1
    assert all(after.get(str(s), 0) - before.get(str(s), 0) == list(answers.values()).count(s) + (s == 200)
               for s in set(answers.values()))


def test_an_oversized_body_without_a_length_is_refused_as_it_streams(server):
    """64 MiB sent chunked (no Content-Length): the 413 comes after about the limit, and the service stops
    reading; the connection is not held to the end of the body."""
    _, port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        sent = 0
        answer = b""
        raw.setblocking(False)
        try:
            while sent < 64 * 1024 * 1024:
                try:
                    answer += raw.recv(65536)
                except BlockingIOError:
                    pass
                if answer:
                    break
                try:
                    raw.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.01)
                    continue
                sent += len(chunk)
        finally:
            raw.setblocking(True)
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            answer += raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 8 * LIMIT, f"the service read {sent:,} bytes before refusing"


def test_requests_generated_from_the_openapi_document_get_no_5xx(server):
    """Schemathesis: requests built from the service's own OpenAPI document, valid and invalid (bodies,
    headers, path parameters), for every operation: never a 5xx, never a hang, each scoring answer counted;
    every answer's status, content type and body as the document says."""
    from hypothesis import given
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    base, _, _ = server
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    before = requests_counted(base)
    seen: dict[str, list[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in ((o, m) for o in operations for m in schemathesis.GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            response = case.call(timeout=30)
            seen.setdefault(f"{case.method} {case.path}", []).append(response.status_code)
            assert response.status_code < 500, \
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                     content_type_conformance, response_schema_conformance])

        try:
            call()
        except Unsatisfiable:  # nothing in this operation to make invalid (no parameters, no body)
            assert mode is schemathesis.GenerationMode.NEGATIVE
    assert any("/invocations" in operation for operation in seen) and any("/predict" in o for o in seen)
    scoring = sum(len(codes) for operation, codes in seen.items()
                  if operation.startswith("POST") and operation.endswith(("/invocations", "/predict"))
                  and "{name}" not in operation)
    after = requests_counted(base)
    assert sum(after.values()) - sum(before.values()) >= scoring
