"""The prediction log's invariant under faults: rows served = rows logged + rows set aside, nothing silently
missing, memory bounded. The store is a real PostgreSQL behind a loopback proxy the tests cut and restore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from pipelines.prediction_store import ServedBatch, logged_rows, read_log
from pipelines.serving.prediction_log import PredictionLog, now
from tests.unit.tcp_proxy import TcpProxy
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def batch(request_id: str, rows: int = 10) -> ServedBatch:
    return ServedBatch((request_id,), now(), "m", "1", "champion",
                       {"x": np.arange(rows, dtype=np.float64), "c": np.array(["a"] * rows, dtype=object)},
                       np.full(rows, 0.5))


@pytest.fixture()
def proxied_postgres(postgres_url):
    url = sa.engine.make_url(postgres_url)
    proxy = TcpProxy(url.port or 5432, url.host or "127.0.0.1").start()
    yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False), postgres_url
    proxy.stop()


def test_with_the_store_down_rows_spill_to_disk_and_are_written_when_it_returns(proxied_postgres, tmp_path):
    proxy, url, direct = proxied_postgres
    spill = tmp_path / "spill"
    log = PredictionLog(url, flush_seconds=0.01, retry_seconds=0.2, spill_dir=spill)
    log.submit(batch("before"))
    wait_for(lambda: log.rows_written == 10)

    proxy.stop()  # the database goes away
    for n in range(200):
        log.submit(batch(f"down-{n}"))
    wait_for(lambda: log.spilled_rows == 2000)
    assert log.state["store"] == "down" and log.state["queued_rows"] == 0  # memory flat: everything on disk
    assert log.backlog == 2000 and list(spill.glob("spill-*.bin"))
    retried_at = log._retry_at  # down for a while: retried twice, still spilling, nothing lost
    wait_for(lambda: log._retry_at > retried_at + 2 * log.retry_seconds, what=lambda: f"retries: {log.state}")
    log.submit(batch("still-down"))
    wait_for(lambda: log.spilled_rows == 2010, what=lambda: f"the log: {log.state}")

    proxy.start()  # back
    wait_for(lambda: log.backlog == 0, what=lambda: f"the log: {log.state}")
    log.submit(batch("after"))
    log.close()
    assert log.state["store"] == "up" and (log.rows_written, log.rows_set_aside) == (2030, 0)
    assert logged_rows(direct) == 2030 and not list(spill.glob("spill-*"))
    assert read_log(direct).request_id.nunique() == 203
    log.engine.dispose()


def test_a_10_second_outage_under_steady_traffic_loses_nothing_and_keeps_memory_flat(proxied_postgres, tmp_path):
    """The store is down for 10 s while requests keep coming (one every 10 ms): every row spills, the queue
    in memory never holds more than a few flushes (1 s of traffic) though the outage carries several times
    that, and once the store is back every row is written once."""
    proxy, url, direct = proxied_postgres
    spill = tmp_path / "spill"
    log = PredictionLog(url, flush_seconds=0.05, retry_seconds=1.0, spill_dir=spill)
    submitted, peak_queued = 0, 0

    def traffic(seconds: float) -> None:
        nonlocal submitted, peak_queued
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            log.submit(batch(f"r{submitted}"))
            submitted += 1
            peak_queued = max(peak_queued, log.state["queued_rows"])
            time.sleep(0.01)

    traffic(0.5)
    proxy.stop()
    down_at, before_outage = time.monotonic(), submitted
    traffic(10.0)
    assert time.monotonic() - down_at >= 10.0
    assert log.state["store"] == "down" and log.rows_written < 1000  # nothing got through while it was down
    during_outage = submitted - before_outage
    proxy.start()
    traffic(0.5)
    wait_for(lambda: log.backlog == 0, seconds=60, what=lambda: f"the log: {log.state}")
    log.close()
    assert during_outage > 600 and log.rows_set_aside == 0  # 6,000+ rows: six times what memory may hold
    assert log.rows_written == logged_rows(direct) == 10 * submitted
    assert read_log(direct).request_id.nunique() == submitted  # each request once, none twice
    assert peak_queued <= 1000  # memory flat (1 s of traffic at most): what waits is on disk
    assert not list(spill.glob("spill-*"))
    log.engine.dispose()


def test_a_service_started_with_its_store_down_spills_and_close_keeps_the_spill(proxied_postgres, tmp_path):
    """Closing while the store is down spills what is queued and says so; the next start writes it."""
    proxy, url, direct = proxied_postgres
    proxy.stop()
    spill = tmp_path / "spill"
    log = PredictionLog(url, flush_seconds=0.01, retry_seconds=0.2, spill_dir=spill)
    assert log.state["store"] == "down"
    for n in range(30):
        log.submit(batch(f"r{n}"))
    log.close()
    assert (log.rows_written, log.spilled_rows, log.backlog) == (0, 300, 300)

    proxy.start()
    again = PredictionLog(url, flush_seconds=0.01, retry_seconds=0.2, spill_dir=spill)
    wait_for(lambda: again.backlog == 0)
    again.close()
    assert again.rows_written == 300 and logged_rows(direct) == 300 and not list(spill.iterdir())
    log.engine.dispose()
    again.engine.dispose()


def test_a_killed_process_spill_is_written_by_the_next_start_and_a_live_ones_is_left_alone(tmp_path):
    """A process spilling (its store unreachable) is killed with SIGKILL: its spill survives, and the next
    writer to start writes it. A spill file still locked by a live process is not touched."""
    spill = tmp_path / "spill"
    dead_store = "postgresql+psycopg2://postgres@127.0.0.1:9/none"  # nothing listens on port 9
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from tests.unit.test_prediction_log_faults import batch
        from pipelines.serving.prediction_log import PredictionLog
        log = PredictionLog({dead_store!r}, flush_seconds=0.01, retry_seconds=60, spill_dir=Path({str(spill)!r}))
        for n in range(50):
            log.submit(batch(f"killed-{{n}}"))
        while log.spilled_rows < 500:
            time.sleep(0.01)
        print("spilled", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout.readline().strip() == "spilled"
        live = PredictionLog(f"sqlite:///{tmp_path / 'a.db'}", flush_seconds=0.01, spill_dir=spill)
        live.close()  # its writer has looked for orphaned spills and flushed before it stops
        assert live.spilled_rows == 0 and logged_rows(live.url) == 0  # the live process's spill is its own
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        url = f"sqlite:///{tmp_path / 'b.db'}"
        heir = PredictionLog(url, flush_seconds=0.01, spill_dir=spill)
        wait_for(lambda: heir.backlog == 0)
        heir.close()
        rows = read_log(url)
        assert len(rows) == 500 and rows.request_id.nunique() == 50 and not list(spill.glob("spill-*"))
    finally:
        child.kill()


def test_past_its_bound_the_queue_answers_503_and_counts_it(tmp_path, monkeypatch, fresh_mlflow_uri):
    """The store down and the spill unwritable too: the queue in memory stops at its bound and the service
    answers 503 (counted), rather than grow; when the store is back, every row served is written."""
    from fastapi.testclient import TestClient

    from pipelines.deployment import admin_headers
    from pipelines.registry import promote_version
    from pipelines.serving.app import create_app
    from tests.unit.toy_models import ToyRegistry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow_uri)
    registry = ToyRegistry(tmp_path)
    logged = registry.log(seed=1, rows=200)
    promote_version(registry.client, "toy", registry.register("toy", logged, {"data_hash": "h" * 32}))
    (tmp_path / "not-a-folder").write_text("")
    store = tmp_path / "log.db"
    blocker = sa.create_engine(f"sqlite:///{store}", connect_args={"timeout": 0})
    log = PredictionLog(f"sqlite:///{store}?timeout=0.05", flush_seconds=0.01, retry_seconds=0.1, max_queued_rows=5,
                        spill_dir=tmp_path / "not-a-folder" / "spill")
    statuses = []
    with TestClient(create_app("toy", poll_seconds=0, prediction_log=log), headers=admin_headers()) as client:
        with blocker.connect() as connection:
            connection.exec_driver_sql("BEGIN EXCLUSIVE")  # the store refuses writes
            for n in range(12):
                answer = client.post("/invocations", json={"dataframe_records": [{"signal": 0.1 * n, "group": "a"}]},
                                     headers={"X-Request-ID": f"r{n}"})
                statuses.append(answer.status_code)
                if answer.status_code == 503:
                    assert answer.headers["Retry-After"] and "prediction log" in answer.json()["message"]
            health = client.get("/health").json()["prediction_log"]
            connection.exec_driver_sql("COMMIT")
        assert statuses.count(200) == 5 and statuses.count(503) == 7
        assert health["queued_rows"] == 5 and health["requests_refused"] == 7
        wait_for(lambda: log.backlog == 0)
        metrics = client.get("/metrics").text
        assert 'prediction_requests_total{model="toy",status="503"} 7.0' in metrics
        assert "prediction_log_requests_refused 7.0" in metrics
        later = client.post("/invocations", json={"dataframe_records": [{"signal": 1.0, "group": "b"}]})
        assert later.status_code == 200
    assert log.rows_written == 6 and set(read_log(log.url).request_id[:5]) == {f"r{n}" for n in range(5)}


def test_sigterm_under_load_logs_every_row_the_service_answered(tmp_path, fresh_mlflow_uri):
    """The service process gets SIGTERM while four clients post to it: it finishes what it accepted, writes
    its queue, and the log holds exactly the rows of the requests answered 200."""
    import socket
    import threading

    import httpx

    from pipelines.registry import promote_version
    from tests.unit.toy_models import ToyRegistry

    tracking = fresh_mlflow_uri
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    try:
        registry = ToyRegistry(tmp_path)
        logged = registry.log(seed=1, rows=200)
        promote_version(registry.client, "toy", registry.register("toy", logged, {"data_hash": "h" * 32}))
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'log.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "MLOPS_PREDICTION_LOG_URL": url,
           "MLOPS_SERVING_CONFIGURED_MODELS": "false", "MLOPS_SERVING_POLL_S": "0", "MLOPS_HOME": str(tmp_path)}
    service = subprocess.Popen([sys.executable, "-m", "pipelines.serving", "--model", "toy", "--port", str(port)],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    answered: list[str] = []
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/ping"), seconds=120)
        stop = threading.Event()

        def client(worker: int) -> None:
            with httpx.Client(timeout=30) as http:
                for n in range(100_000):
                    if stop.is_set():
                        return
                    request_id = f"w{worker}-{n}"
                    try:
                        answer = http.post(f"http://127.0.0.1:{port}/invocations", headers={"X-Request-ID": request_id},
                                           json={"dataframe_records": [{"signal": 0.1, "group": "a"}] * 3})
                    except httpx.HTTPError:
                        return  # the service is gone
                    if answer.status_code == 200:
                        answered.append(request_id)

        clients = [threading.Thread(target=client, args=(w,)) for w in range(4)]
        for thread in clients:
            thread.start()
        wait_for(lambda: len(answered) > 200, seconds=60)
        service.send_signal(signal.SIGTERM)
        service.wait(60)  # uvicorn shuts down gracefully, then exits by the signal it caught
        stop.set()
        for thread in clients:
            thread.join(30)
    finally:
        service.kill()
    output = service.stdout.read().decode()
    rows = read_log(url)
    assert len(rows) == 3 * len(answered) and set(rows.request_id) == set(answered), output[-2000:]
    assert f"prediction log closed: {len(rows)} rows written, 0 set aside, 0 spilled" in output


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
