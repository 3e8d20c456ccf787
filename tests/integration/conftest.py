"""Real services for the integration tests: an MLflow tracking server and the prediction service on
loopback, one of each per test module."""

import socket
import threading
import time

import httpx
import pytest

MODEL = "flights_delay"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(monkeypatch_module, tmp_path_factory):
    """A real MLflow tracking server (SQLite backend, proxied artifacts), as `make up` runs it: the REST
    store behaves differently from a local SQLite store (e.g. registering MLflow 3 logged-model URIs)."""
    import os
    import signal
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    process = subprocess.Popen(
        [mlflow_cli, "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=env, stdout=open(folder / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
        assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
    else:
        pytest.fail("MLflow server did not start: " + (folder / "server.log").read_text()[-3000:])
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", url)
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def serve_on_loopback(monkeypatch_module):
    """Serve an ASGI app with uvicorn on a free loopback port, as the stack does; it is where the DAGs deploy
    ($MLOPS_SERVING_URL) until the module ends."""
    import uvicorn

    servers = []

    def serve(app) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        monkeypatch_module.setenv("MLOPS_SERVING_URL", url)
        return url

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def prediction_service(serve_on_loopback, mlflow_server):
    from pipelines.serving.app import create_app

    return serve_on_loopback(create_app(MODEL, poll_seconds=0))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp




@pytest.fixture(scope="session")
def dag_file():
    """A DAG file of dags/ as a module, to build a DAG from a config the test made (``build_<kind>_dag``)."""
    import importlib.util
    import os

    def load(name: str):
        path = os.path.join(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"{name}_dag_file", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
