"""Prediction service throughput and latency against `mlflow models serve` on the same model.

Needs the stack up (`make up`: a champion in the MLflow server) and `wrk` (Debian package). Side by
side in one run, single-row requests over loopback at concurrency 8 and 32, then 1,000-row requests:
  - `mlflow models serve` (1 worker, --env-manager local),
  - our service with 1 worker and with 2 workers (micro-batching; prediction logging ON),
  - the log's cost: one worker with logging on and off, alternated in ``--log-pairs`` pairs (each pair in
    the other order than the last, so a drift of the shared machine's load weighs on both), the median of
    the pairs' costs reported with their spread: throughput at full load, and the service's CPU per request
    at a fixed offered load (32 clients each pausing ``--paced-ms`` between requests, about 1,000 req/s),
    which the load of other processes on the machine moves far less than throughput,
  - the model called in-process, one row per call and 1,000 rows per call, on its default threads and on one
    OpenMP thread (as the service's scoring thread runs it).
Goals: >= 10x `mlflow models serve` at c32 (p99 <= 100 ms; p99 <= 50 ms at c8), >= 100,000 rows/s in
1,000-row requests through one worker, and the prediction log costing <= 5% of throughput.

    uv run python benchmarks/serving_throughput.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = os.environ.get("MLOPS_MODEL", "flights_delay")


def stack_mlflow_env() -> dict[str, str]:
    """This process's environment, pointed at the stack's MLflow server with its login ($MLFLOW_TRACKING_URI and
    its credentials, else the server and the pipeline's login `make up` left in $MLOPS_HOME): what the servers
    under test start with."""
    from pipelines.tracking import configure_mlflow

    os.environ["MLFLOW_TRACKING_URI"] = configure_mlflow()
    return dict(os.environ)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


def wrk(url: str, body: str, connections: int, seconds: int, pause_ms: int = 0) -> dict:
    """POST ``body`` to ``url`` from ``connections`` connections for ``seconds``, each connection pausing
    ``pause_ms`` after each answer (0: as fast as it is answered): QPS, p50 and p99 (ms)."""
    with tempfile.TemporaryDirectory(prefix="bench_wrk_") as folder:
        script = Path(folder) / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = {json.dumps(body)}\n"
                          + (f"function delay() return {pause_ms} end\n" if pause_ms else ""))
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                              url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"qps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50"), "p99": ms("99"),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "errors": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(1) if socket_errors
            else ""}


def holdout_records(model: str, rows: int) -> list[dict]:
    """The first ``rows`` rows of the model's latest holdout, as a client sends them."""
    import pandas as pd

    from pipelines.config import StatePaths, load_model_config
    from pipelines.training import model_inputs

    holdout = sorted(StatePaths.from_env().root.glob(f"work/{model}/*/split/holdout.parquet"))[-1]
    frame = model_inputs(pd.read_parquet(holdout), load_model_config(model).features)
    return json.loads(frame.head(rows).to_json(orient="records"))


def cpu_seconds(pid: int) -> float:
    """CPU time of a server and its worker processes."""
    import psutil

    process = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])


def writer_cpu(port: int) -> float | None:
    """CPU seconds of the service's prediction-log writer so far (None when the log is off), once the writer
    has flushed what was served."""
    time.sleep(0.5)  # past one flush interval
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    except ValueError:  # `mlflow models serve` answers its /health with no JSON
        return None
    log = health.get("prediction_log") if isinstance(health, dict) else None
    return log["writer_cpu_seconds"] if log else None


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def in_process(model, rows: list[dict], batch: list[dict], threads: int | None = None) -> tuple[float, float]:
    """Single-row calls per second and rows per second in ``batch``-sized calls, with the model's OpenMP and
    BLAS pools capped at ``threads`` (None: their defaults)."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    one, many = pd.DataFrame(rows[:1]), pd.DataFrame(batch)
    with threadpool_limits(limits=threads):
        for _ in range(5):
            model.predict_proba(one)
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < 5:
            model.predict_proba(one)
            n += 1
        single = n / (time.perf_counter() - started)
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < 5:
            model.predict_proba(many)
            n += 1
    return single, n * len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--log-pairs", type=int, default=5, help="on/off pairs measuring the log's cost")
    parser.add_argument("--log-seconds", type=int, default=10, help="seconds per load in each pair")
    parser.add_argument("--paced-ms", type=int, default=30, help="each client's pause in the fixed-load measurement")
    args = parser.parse_args()
    env = {**stack_mlflow_env(),
           # `mlflow models serve` execs `uvicorn` by name: find the venv's even when run as .venv/bin/python.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    scratch = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    try:
        records = holdout_records(MODEL, 1000)
        single = json.dumps({"dataframe_records": records[:1]})
        thousand = json.dumps({"dataframe_records": records})

        servers = {
            "mlflow models serve": [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
                                    "--env-manager", "local", "-h", "127.0.0.1", "-w", "1", "-p"],
            "ours, 1 worker": [sys.executable, "-m", "pipelines.serving", "--model", MODEL, "--workers", "1",
                               "--port"],
            "ours, 2 workers": [sys.executable, "-m", "pipelines.serving", "--model", MODEL, "--workers", "2",
                                "--port"],
        }
        results: dict[str, dict] = {}

        def measure(name: str, command: list[str], logging: str, loads: dict[str, tuple]) -> dict:
            port = free_port()
            log = scratch / f"{name.replace(' ', '_').replace(',', '')}.log"
            server_env = {**env, "MLOPS_PREDICTION_LOG_URL": f"sqlite:///{scratch / 'predictions.db'}",
                          "MLOPS_SERVING_POLL_S": "3600", "MLOPS_PREDICTION_LOG": logging}
            process = start([*command, str(port)], server_env, log)
            try:
                wait_ready(f"http://127.0.0.1:{port}/ping", process, log)
                url = f"http://127.0.0.1:{port}/invocations"
                measured = {"warmup": wrk(url, single, 8, 3)}
                for key, (body, connections, seconds, *pause) in loads.items():
                    writer_before = writer_cpu(port)  # None when the log is off; the same pause either way
                    before = cpu_seconds(process.pid)
                    measured[key] = wrk(url, body, connections, seconds, *pause)
                    # The service's own CPU per request: steadier than throughput on a shared machine; and the
                    # share of it the prediction log's writer thread took (measured in the same run).
                    spent = cpu_seconds(process.pid) - before
                    measured[key]["cpu_ms"] = spent * 1000 / measured[key]["requests"]
                    if writer_before is not None:
                        measured[key]["writer_share"] = (writer_cpu(port) - writer_before) / spent
                return measured
            finally:
                stop(process)

        main_loads = {"c8": (single, 8, args.seconds), "c32": (single, 32, args.seconds),
                      "batch1000": (thousand, 4, args.seconds)}
        for name, command in servers.items():
            results[name] = measure(name, command, "on", main_loads)
            print(f"{name}: " + " | ".join(
                f"{k}: {v['qps']:.0f} req/s p50 {v['p50']:.1f} ms p99 {v['p99']:.1f} ms errors {v['errors']}"
                for k, v in results[name].items() if k != "warmup"), flush=True)

        log_loads = {"c32": (single, 32, args.log_seconds), "batch1000": (thousand, 4, args.log_seconds),
                     "paced": (single, 32, args.log_seconds, args.paced_ms)}
        costs: dict[str, list[float]] = {"c32": [], "batch1000": []}
        cpu_costs: dict[str, list[float]] = {"c32": [], "batch1000": [], "paced": []}
        for pair in range(args.log_pairs):
            order = ("on", "off") if pair % 2 == 0 else ("off", "on")
            measured = {logging: measure(f"log {logging} {pair}", servers["ours, 1 worker"], logging, log_loads)
                        for logging in order}
            results[f"log on {pair}"] = measured["on"]
            for key in cpu_costs:
                on, off = measured["on"][key], measured["off"][key]
                if key in costs:
                    costs[key].append(1 - on["qps"] / off["qps"])
                cpu_costs[key].append(on["cpu_ms"] / off["cpu_ms"] - 1)
            print(f"log pair {pair + 1} ({' then '.join(order)}): " + ", ".join(
                f"{key} {measured['on'][key]['qps']:.0f} vs {measured['off'][key]['qps']:.0f} req/s "
                f"({costs[key][-1]:.1%}), CPU {measured['on'][key]['cpu_ms']:.3f} vs "
                f"{measured['off'][key]['cpu_ms']:.3f} ms/request ({cpu_costs[key][-1]:+.1%})" for key in costs)
                + f", paced {measured['on']['paced']['qps']:.0f} vs {measured['off']['paced']['qps']:.0f} req/s, CPU "
                f"{measured['on']['paced']['cpu_ms']:.3f} vs {measured['off']['paced']['cpu_ms']:.3f} ms/request "
                f"({cpu_costs['paced'][-1]:+.1%})", flush=True)

        import mlflow

        model = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
        single_rate, batch_rate = in_process(model, records, records)
        single_capped, batch_capped = in_process(model, records, records, threads=1)
        base = results["mlflow models serve"]
        print(f"in-process: {single_rate:.0f} single-row predictions/s, {batch_rate:,.0f} rows/s in 1,000-row calls; "
              f"on one OpenMP thread, as the service scores: {single_capped:.0f} and {batch_capped:,.0f} rows/s")
        for name in ("ours, 1 worker", "ours, 2 workers"):
            ours = results[name]
            print(f"{name} vs mlflow models serve: c8 {ours['c8']['qps'] / base['c8']['qps']:.1f}x QPS "
                  f"(p99 {ours['c8']['p99']:.0f} ms, goal <= 50), "
                  f"c32 {ours['c32']['qps'] / base['c32']['qps']:.1f}x QPS "
                  f"(goal >= 10x; p99 {ours['c32']['p99']:.0f} ms, goal <= 100), 1,000-row requests "
                  f"{ours['batch1000']['qps'] * 1000:,.0f} vs {base['batch1000']['qps'] * 1000:,.0f} rows/s")
        rows_per_s = results["ours, 1 worker"]["batch1000"]["qps"] * 1000
        print(f"1,000-row requests through 1 worker: {rows_per_s:,.0f} rows/s (goal >= 100,000), "
              f"{rows_per_s / batch_capped:.0%} of the model called in-process on one thread "
              f"({batch_capped:,.0f} rows/s; "
              f"{batch_rate:,.0f} on the default threads); {load_average()}")
        shares = {key: [r[key]["writer_share"] for name, r in results.items()
                        if (name == "ours, 1 worker" or name.startswith("log on")) and "writer_share" in r[key]]
                  for key in ("c32", "batch1000")}
        print("prediction log's cost, 1 worker with the log on vs off, median of "
              f"{args.log_pairs} alternated pairs: " + ", ".join(
                  f"{label} {statistics.median(costs[key]):.1%} of throughput "
                  f"(pairs {', '.join(f'{c:.1%}' for c in costs[key])})"
                  for label, key in (("c32", "c32"), ("1,000-row requests", "batch1000"))) + " (goal <= 5%); "
              "the writer thread's share of the service's CPU (log on, same run): " + ", ".join(
                  f"{label} {statistics.median(shares[key]):.1%} (runs {', '.join(f'{x:.1%}' for x in shares[key])})"
                  for label, key in (("c32", "c32"), ("1,000-row requests", "batch1000"))) + "; "
              "the service's CPU per request, log on vs off: " + ", ".join(
                  f"{label} {statistics.median(cpu_costs[key]):+.1%} "
                  f"(pairs {', '.join(f'{c:+.1%}' for c in cpu_costs[key])})"
                  for label, key in (("c32", "c32"), ("1,000-row requests", "batch1000"),
                                     (f"single rows at a fixed load (32 clients pausing {args.paced_ms} ms)",
                                      "paced"))))
        from pipelines.prediction_store import logged_rows

        logged = logged_rows(f"sqlite:///{scratch / 'predictions.db'}")
        served = sum(r["warmup"]["requests"] + r.get("c8", {}).get("requests", 0) + r["c32"]["requests"]
                     + r.get("paced", {}).get("requests", 0) + 1000 * r["batch1000"]["requests"]
                     for n, r in results.items() if n != "mlflow models serve")
        print(f"prediction log: {logged:,} rows written; wrk counted {served:,} rows answered by our services "
              "(requests still in flight when wrk stops are served and logged but not counted)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
