"""Bounded soak: a fixed request rate for a fixed time against our service, with the monitoring DAG running
beside it. Goals: 0 errors, rows logged = rows served, the service's memory flat (RSS growth <= 10% after
the first minute's warm-up).

Needs the stack up (`make up`: a champion in the MLflow server, the Airflow API). A second service, on a
free port, writes to the stack's own prediction log, which the monitoring DAG reads: `monitor_<model>` is
triggered every `--monitor-every` minutes during the soak. The service's RSS is sampled every 5 s. After the
run the service is stopped (which writes its queue) and the log's rows of this soak's request ids are
compared with what the clients saw.

    source .state/env.sh
    uv run python benchmarks/serving_soak.py --rate 150 --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_throughput as bench  # noqa: E402  (the same server start/stop helpers)

RUN_PREFIX = f"soak{int(time.time())}-"


def sample_rss(pid: int, samples: list[tuple[float, float]], stop: threading.Event, every: float = 5.0) -> None:
    process, started = psutil.Process(pid), time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, process.memory_info().rss / 2**20))
        stop.wait(every)


def airflow():
    from pipelines.airflow_edge.airflow_api import AirflowApi

    return AirflowApi()


def run_monitoring(every: float, runs: list[tuple[str, str]], stop: threading.Event) -> None:
    """Trigger the model's monitoring DAG now and every ``every`` seconds until ``stop``."""
    from pipelines.config import monitoring_dag_id

    api = airflow()
    while not stop.is_set():
        dag_id = monitoring_dag_id(bench.MODEL)
        runs.append((dag_id, api.trigger(dag_id, {"reason": "serving soak"})))
        stop.wait(every)


def report_monitoring(runs: list[tuple[str, str]]) -> None:
    if not runs:
        print("monitoring: no run was triggered")
        return
    api = airflow()
    states = Counter(api.wait([run], progress=lambda dag_id, message: None)[run[0]]["state"] for run in runs)
    print(f"monitoring beside the soak: {len(runs)} runs of {runs[0][0]}: {dict(states)}")


async def drive(url: str, body: bytes, rate: float, seconds: float, clients: int = 16
                ) -> tuple[Counter, set[str], list[float], float]:
    """``clients`` paced senders, together ``rate`` requests per second; in-flight requests stay bounded
    (an unbounded pile of pending requests measures the client, not the service)."""
    statuses: Counter = Counter()
    ok_ids: set[str] = set()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def sender(worker: int) -> None:
            interval, n = clients / rate, 0
            while True:
                due = start + worker / rate + n * interval
                if due - start >= seconds:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                request_id = f"{RUN_PREFIX}{worker}-{n}"
                n += 1
                sent = time.perf_counter()
                try:
                    response = await client.post("/invocations", content=body, headers={
                        "Content-Type": "application/json", "X-Request-ID": request_id})
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        ok_ids.add(request_id)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(sender(w) for w in range(clients)))
    return statuses, ok_ids, latencies, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--monitor-every", type=float, default=2.0, help="minutes between monitoring runs")
    args = parser.parse_args()
    from pipelines.prediction_store import default_url

    log_url = default_url()  # the stack's: the monitoring DAG reads it
    scratch = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    try:
        env = {**os.environ, "MLOPS_PREDICTION_LOG_URL": log_url, "MLOPS_SERVING_POLL_S": "3600",
               "MLOPS_SERVING_CONFIGURED_MODELS": "false"}
        port = bench.free_port()
        log = scratch / "server.log"
        process = bench.start([sys.executable, "-m", "pipelines.serving", "--port", str(port)], env, log)
        row = {"distance": 1400.0, "sched_dep_hour": 17.5, "sched_arr_hour": 20.0, "day_of_week": 4.0, "temp": 30.0,
               "dewp": 20.0, "humid": 60.0, "wind_dir": 270.0, "wind_speed": 12.0, "precip": 0.0, "visib": 10.0,
               "carrier": "UA", "origin": "EWR", "dest": "IAH"}
        body = json.dumps({"dataframe_records": [row]}).encode()
        stop = threading.Event()
        rss: list[tuple[float, float]] = []
        monitoring_runs: list[tuple[str, str]] = []
        try:
            bench.wait_ready(f"http://127.0.0.1:{port}/ping", process, log)
            side = [threading.Thread(target=sample_rss, args=(process.pid, rss, stop), daemon=True),
                    threading.Thread(target=run_monitoring, args=(args.monitor_every * 60, monitoring_runs, stop),
                                     daemon=True)]
            for thread in side:
                thread.start()
            statuses, ok_ids, latencies, elapsed = asyncio.run(drive(f"http://127.0.0.1:{port}", body, args.rate,
                                                                     args.minutes * 60))
            stop.set()
        finally:
            stop.set()
            bench.stop(process)  # SIGTERM: the service writes its prediction log's queue before exiting
        from pipelines.prediction_store import read_log

        log_rows = read_log(log_url, bench.MODEL)
        mine = log_rows[log_rows.request_id.str.startswith(RUN_PREFIX)]
        logged, logged_ids = len(mine), set(mine.request_id)
        latencies.sort()
        errors = sum(n for status, n in statuses.items() if status != 200)
        achieved = sum(statuses.values()) / elapsed
        print(f"soak: {sum(statuses.values()):,} requests, target {args.rate:.0f}/s, achieved {achieved:.0f}/s over "
              f"{elapsed / 60:.1f} min | statuses "
              f"{dict(statuses)} | errors {errors} | p50 {1000 * latencies[len(latencies) // 2]:.1f} ms "
              f"p99 {1000 * latencies[int(len(latencies) * 0.99)]:.1f} ms | rows served {len(ok_ids):,}, "
              f"rows logged {logged:,}, every served request logged: {ok_ids <= logged_ids}")
        warm = next((mib for at, mib in rss if at >= 60), rss[0][1] if rss else float("nan"))
        print(f"service RSS: {rss[0][1]:,.0f} MiB at start, {warm:,.0f} MiB after the first minute, "
              f"{rss[-1][1]:,.0f} MiB at the end, peak {max(m for _, m in rss):,.0f} MiB: growth after warm-up "
              f"{rss[-1][1] / warm - 1:+.1%} (goal <= +10%)")
        report_monitoring(monitoring_runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
