"""A real ``mlflow server`` on a free loopback port (SQLite backend, proxied artifacts), as `make up` runs it: the
REST store behaves differently from a local SQLite store (e.g. registering MLflow 3 logged-model URIs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_mlflow_server(folder: Path, empty_store: Path | None = None,
                          start_seconds: float = 180) -> Iterator[str]:
    """The server's URL while the block runs; its output goes to ``folder/server.log``. With ``empty_store`` (an
    SQLite store with its schema made and nothing in it: conftest's ``empty_mlflow_db``) the server starts on a
    copy of it rather than making the schema itself, which takes the server as long again to start."""
    port = free_port()
    if empty_store is not None:
        shutil.copyfile(empty_store, folder / "mlflow.db")
    log_path = folder / "server.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
             f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {log_path.read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
