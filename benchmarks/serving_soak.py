"""Bounded soak: a fixed request rate for a fixed time against our service; 0 errors and rows logged =
rows served are the goals.

Needs the stack up (`make up`: a champion in the MLflow server). The service runs with its prediction log
in a scratch SQLite file; after the run it is stopped (which drains the log) and the log is compared with
what the client saw.

    uv run python benchmarks/serving_soak.py --rate 200 --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_throughput as bench  # noqa: E402  (the same server start/stop helpers)


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
                request_id = f"soak-{worker}-{n}"
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
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    try:
        env = {**os.environ, "MLOPS_PREDICTION_LOG_URL": f"sqlite:///{scratch / 'predictions.db'}",
               "MLOPS_SERVING_POLL_S": "3600"}
        port = bench.free_port()
        log = scratch / "server.log"
        process = bench.start([sys.executable, "-m", "pipelines.serving", "--port", str(port)], env, log)
        row = {"distance": 1400.0, "sched_dep_hour": 17.5, "sched_arr_hour": 20.0, "day_of_week": 4.0, "temp": 30.0,
               "dewp": 20.0, "humid": 60.0, "wind_dir": 270.0, "wind_speed": 12.0, "precip": 0.0, "visib": 10.0,
               "carrier": "UA", "origin": "EWR", "dest": "IAH"}
        body = json.dumps({"dataframe_records": [row]}).encode()
        try:
            bench.wait_ready(f"http://127.0.0.1:{port}/ping", process, log)
            statuses, ok_ids, latencies, elapsed = asyncio.run(drive(f"http://127.0.0.1:{port}", body, args.rate,
                                                                     args.minutes * 60))
        finally:
            bench.stop(process)  # SIGTERM: the service drains its prediction log before exiting
        from pipelines.prediction_store import read_log

        log_rows = read_log(f"sqlite:///{scratch / 'predictions.db'}")
        logged, logged_ids = len(log_rows), set(log_rows.request_id)
        latencies.sort()
        errors = sum(n for status, n in statuses.items() if status != 200)
        achieved = sum(statuses.values()) / elapsed
        print(f"soak: {sum(statuses.values()):,} requests, target {args.rate:.0f}/s, achieved {achieved:.0f}/s over "
              f"{elapsed / 60:.1f} min | statuses "
              f"{dict(statuses)} | errors {errors} | p50 {1000 * latencies[len(latencies) // 2]:.1f} ms "
              f"p99 {1000 * latencies[int(len(latencies) * 0.99)]:.1f} ms | rows served {len(ok_ids):,}, "
              f"rows logged {logged:,}, every served request logged: {ok_ids <= logged_ids}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
