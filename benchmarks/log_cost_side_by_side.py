"""The prediction log's cost measured side by side: two one-worker services, the log on in one and off in the
other, loaded at the same time by their own `wrk` (single-row requests, ``--connections`` each) in
``--rounds`` rounds. Both see the same machine at the same moment, so a change in the shared box's speed
(which moves a single service's throughput by a quarter within minutes) weighs on both; the two share the
cores, so the one that spends more CPU per request answers fewer. Prints each round's cost (1 - on/off
throughput) and their median.

Needs the stack up (`make up`: a champion in the MLflow server) and `wrk`.

    uv run python benchmarks/log_cost_side_by_side.py [--rounds 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_throughput as bench  # noqa: E402  (the same server start/stop, wrk and data helpers)
from scratch import finish  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16, help="per service")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, prediction log)")
    args = parser.parse_args()
    env = bench.stack_mlflow_env()
    scratch = Path(tempfile.mkdtemp(prefix="bench_log_cost_"))
    services = {}
    try:
        single = json.dumps({"dataframe_records": bench.holdout_records(bench.MODEL, 1)})
        for logging in ("on", "off"):
            port, log = bench.free_port(), scratch / f"log_{logging}.log"
            server_env = {**env, "MLOPS_PREDICTION_LOG": logging, "MLOPS_SERVING_POLL_S": "3600",
                          "MLOPS_PREDICTION_LOG_URL": f"sqlite:///{scratch / 'predictions.db'}"}
            services[logging] = (f"http://127.0.0.1:{port}", bench.start(
                [sys.executable, "-m", "pipelines.serving", "--model", bench.MODEL, "--workers", "1", "--port",
                 str(port)], server_env, log), log)
        for url, process, log in services.values():
            bench.wait_ready(f"{url}/ping", process, log)
            bench.wrk(f"{url}/invocations", single, 8, 3)  # warm-up
        def load(logging: str, measured: dict) -> None:
            measured[logging] = bench.wrk(f"{services[logging][0]}/invocations", single, args.connections,
                                          args.seconds)

        costs = []
        for round_ in range(args.rounds):
            measured: dict[str, dict] = {}
            loads = [threading.Thread(target=load, args=(logging, measured)) for logging in services]
            for thread in loads:
                thread.start()
            for thread in loads:
                thread.join()
            on, off = measured["on"], measured["off"]
            costs.append(1 - on["qps"] / off["qps"])
            print(f"round {round_ + 1}: log on {on['qps']:.0f} req/s (p99 {on['p99']:.1f} ms), log off "
                  f"{off['qps']:.0f} req/s (p99 {off['p99']:.1f} ms): cost {costs[-1]:.1%}", flush=True)
        print(f"prediction log's cost side by side, median of {args.rounds} rounds: {statistics.median(costs):.1%} "
              f"of throughput (rounds {', '.join(f'{c:.1%}' for c in costs)}; goal <= 5%); {bench.load_average()}")
    finally:
        for _, process, _ in services.values():
            bench.stop(process)
        finish(scratch, args.keep)


if __name__ == "__main__":
    main()
