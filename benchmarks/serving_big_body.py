"""What one big request does to every other request: `/ping` latency while a ~9.5 MiB body is posted, for the
typed `/predict` and for `/invocations` (the msgspec fast path, `dataframe_records`, and the general path,
`dataframe_split`).

Self-contained: a small model (five numeric and three text features, the project's own training step) is
logged and registered in a throw-away SQLite MLflow store, and the service (`python -m pipelines.serving`,
one worker, prediction log on) is started on it on a free port. For each body, a client sends `GET /ping`
every 5 ms on its own connection while another process posts the body ``--posts`` times, one after the
other; the pings' latency is reported (median, p99, max) beside their latency with nothing else running.
Goal: a big body never holds `/ping` for more than a few tens of milliseconds.

``--checkout DIR`` runs the service from another copy of the code (the code before a change:
``git archive <commit> pipelines include | tar -x -C DIR``), with this interpreter.

    uv run python benchmarks/serving_big_body.py [--posts 5] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_throughput as bench  # noqa: E402  (the same free port, readiness and stop helpers)

NUMERIC = ["dep_hour", "distance", "air_time", "temp", "wind_speed"]
CATEGORICAL = ["origin", "carrier", "tailnum"]
BODY_BYTES = int(9.5 * 1024 * 1024)
MODEL = "big_body"


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({name: rng.normal(size=rows).round(3) for name in NUMERIC})
    data["origin"] = rng.choice(["EWR", "JFK", "LGA"], size=rows)
    data["carrier"] = rng.choice(["UA", "B6", "EV", "DL", "AA"], size=rows)
    data["tailnum"] = rng.choice([f"N{n:05d}" for n in range(200)], size=rows)
    data["label"] = (data["dep_hour"] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    return data


def register_model(scratch: Path) -> dict[str, str]:
    """A champion of ``MODEL`` in a SQLite MLflow store under ``scratch``; the environment that finds it."""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}", "MLOPS_HOME": str(scratch / "state")}
    os.environ.update(env)
    import mlflow

    from pipelines.config import FeaturesConfig, SearchConfig
    from pipelines.registry import promote_version, register_version
    from pipelines.task_types import BinaryClassification
    from pipelines.tracking import configure_mlflow, log_sklearn_model
    from pipelines.training import model_inputs, train_candidate

    configure_mlflow()
    features = FeaturesConfig(numeric=NUMERIC, categorical=CATEGORICAL, target="label")
    task = BinaryClassification(features)
    trained = train_candidate(frame(2000, 0), frame(500, 1), task, SearchConfig(), {})
    experiment = mlflow.create_experiment("big_body", artifact_location=(scratch / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = log_sklearn_model(trained.model, model_inputs(frame(5, 2), features), task)
    client = mlflow.MlflowClient()
    version = register_version(client, MODEL, info.model_uri, {"airflow_dag_id": "bench", "airflow_run_id": "bench"})
    promote_version(client, MODEL, version)
    return env


def bodies() -> dict[str, tuple[str, bytes]]:
    """Each body about ``BODY_BYTES`` long: (path, body) by name."""
    sample = frame(1000, 3)[NUMERIC + CATEGORICAL]
    records = sample.to_dict(orient="records")
    split = sample.values.tolist()

    def sized(rows: list, wrap) -> bytes:
        """``wrap`` of as many copies of ``rows`` (cut) as make about ``BODY_BYTES``."""
        per_row = len(orjson.dumps(wrap(rows))) / len(rows)
        wanted = int(BODY_BYTES / per_row) - 10
        return orjson.dumps(wrap((rows * (wanted // len(rows) + 1))[:wanted]))

    return {"typed /predict": ("/predict", sized(records, lambda rows: {"rows": rows})),
            "/invocations dataframe_records": ("/invocations",
                                               sized(records, lambda rows: {"dataframe_records": rows})),
            "/invocations dataframe_split": ("/invocations", sized(split, lambda rows: {
                "dataframe_split": {"columns": NUMERIC + CATEGORICAL, "data": rows}}))}


def post(url: str, body: bytes, times: int) -> list[tuple[int, float]]:
    """POST ``body`` to ``url`` ``times`` times, one after the other: each answer's status and seconds."""
    answers = []
    with httpx.Client(timeout=300) as poster:
        for _ in range(times):
            started = time.perf_counter()
            answer = poster.post(url, content=body, headers={"Content-Type": "application/json"})
            answers.append((answer.status_code, time.perf_counter() - started))
    return answers


def ping_while(base: str, action: Future, every: float = 0.005) -> list[float]:
    """``/ping`` latencies (s) until ``action`` (running in another process, so that the client's own work
    never delays a ping) is done."""
    latencies: list[float] = []
    with httpx.Client(timeout=60) as pinger:
        pinger.get(f"{base}/ping")
        while not action.done():
            started = time.perf_counter()
            assert pinger.get(f"{base}/ping").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(every)
    return latencies


def summary(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"pings {len(ms):5d}  median {statistics.median(ms):7.1f} ms  p99 {p99:7.1f} ms  max {ms[-1]:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=5, help="posts of each body, one after the other")
    parser.add_argument("--checkout", type=Path, default=bench.ROOT, help="the checkout whose service to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="big-body-") as folder:
        scratch = Path(folder)
        env = {**os.environ, **register_model(scratch), "MLOPS_SERVING_MODEL": MODEL,
               "MLOPS_SERVING_CONFIGURED_MODELS": "false", "MLOPS_SERVING_POLL_S": "3600",
               "MLOPS_PREDICTION_LOG_URL": f"sqlite:///{scratch / 'log.db'}", "PYTHONPATH": str(args.checkout)}
        port = bench.free_port()
        base = f"http://127.0.0.1:{port}"
        log = scratch / "service.log"
        process = subprocess.Popen([sys.executable, "-m", "pipelines.serving", "--port", str(port)], env=env,
                                   cwd=args.checkout, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            bench.wait_ready(f"{base}/ping", process, log)
            print(f"service from {args.checkout}")
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as other:
                idle = ping_while(base, other.submit(time.sleep, 3))
                print(f"{'nothing else':32s} {summary(idle)}")
                for name, (path, body) in bodies().items():
                    posts = other.submit(post, f"{base}{path}", body, args.posts)
                    latencies = ping_while(base, posts)
                    answers = posts.result()
                    statuses = sorted({status for status, _ in answers})
                    took = statistics.median(seconds for _, seconds in answers)
                    print(f"{name:32s} {summary(latencies)}  ({len(body) / 2**20:.1f} MiB, status {statuses}, "
                          f"each post {took:.2f} s)")
        finally:
            bench.stop(process)


if __name__ == "__main__":
    main()
