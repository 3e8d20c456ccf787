"""One prediction service serving one model against the same service serving three: single-row QPS and p99
of each model's route at concurrency 32, and the service's memory (RSS).

Needs the stack up (`make up`: the champions of flights_delay, flights_arr_delay and penguins in the MLflow
server) and `wrk`. Side by side in one run, for each model, alternating which service goes first from one
round to the next: the service serving only that model, then the three-model service (started once), each
hit on `/models/<name>/invocations` at c32 after a warm-up. Prediction logging is on in both.
Goals: each model's QPS in the three-model service within 10% of its one-model figure, p99 <= 50 ms.

    uv run python benchmarks/serving_many_models.py [--seconds 15] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from statistics import median

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_throughput as bench  # noqa: E402  (the same server start/stop, wrk and data helpers)

MODELS = ("flights_delay", "flights_arr_delay", "penguins")


class Service:
    """Our service (1 worker) serving ``models``, the first as the default, with its prediction log in
    ``scratch``."""

    def __init__(self, models: tuple[str, ...], scratch: Path, env: dict):
        self.models, self.port = models, bench.free_port()
        label = "_".join(models)
        self.log = scratch / f"{label}.log"
        self.env = {**env, "MLOPS_SERVING_MODEL": models[0], "MLOPS_SERVING_MODELS": ",".join(models),
                    "MLOPS_SERVING_CONFIGURED_MODELS": "false", "MLOPS_SERVING_POLL_S": "3600",
                    "MLOPS_PREDICTION_LOG_URL": f"sqlite:///{scratch / label}.db"}

    def __enter__(self) -> Service:
        self.process = bench.start([sys.executable, "-m", "pipelines.serving", "--port", str(self.port)],
                                   self.env, self.log)
        try:
            bench.wait_ready(f"http://127.0.0.1:{self.port}/ping", self.process, self.log)
            for model in self.models:
                bench.wait_ready(f"http://127.0.0.1:{self.port}/models/{model}/health", self.process, self.log)
        except BaseException:
            bench.stop(self.process)
            raise
        return self

    def __exit__(self, *_) -> None:
        bench.stop(self.process)

    def load(self, model: str, body: str, seconds: int) -> dict:
        url = f"http://127.0.0.1:{self.port}/models/{model}/invocations"
        bench.wrk(url, body, 8, 3)  # warm-up
        return bench.wrk(url, body, 32, seconds)

    def rss_mib(self) -> float:
        """Resident memory of the service's processes (with one worker, the one process)."""
        process = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in (process, *process.children(recursive=True))) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env = bench.stack_mlflow_env()
    scratch = Path(tempfile.mkdtemp(prefix="bench_many_models_"))
    try:
        bodies = {model: json.dumps({"dataframe_records": bench.holdout_records(model, 1)}) for model in MODELS}
        alone: dict[str, list[dict]] = {m: [] for m in MODELS}
        together: dict[str, list[dict]] = {m: [] for m in MODELS}
        rss_alone: dict[str, float] = {}
        with Service(MODELS, scratch, env) as three:
            for round_ in range(args.rounds):
                for model in MODELS:
                    for one_model in (True, False) if round_ % 2 == 0 else (False, True):
                        if one_model:
                            with Service((model,), scratch, env) as one:
                                alone[model].append(one.load(model, bodies[model], args.seconds))
                                rss_alone[model] = one.rss_mib()
                        else:
                            together[model].append(three.load(model, bodies[model], args.seconds))
            rss_three = three.rss_mib()

        def runs(results: list[dict]) -> str:
            rounds = ", ".join(f"{r['qps']:,.0f}" for r in results)
            return (f"{median(r['qps'] for r in results):,.0f} req/s ({rounds}; "
                    f"p99 {max(r['p99'] for r in results):.1f} ms)")

        for model in MODELS:
            ratio = median(r["qps"] for r in together[model]) / median(r["qps"] for r in alone[model])
            errors = sum(r["errors"] for r in alone[model] + together[model])
            print(f"{model}: 1 model {runs(alone[model])}, 3 models {runs(together[model])}: ratio {ratio:.2f} "
                  f"(goal >= 0.90; p99 goal <= 50 ms); errors {errors}; "
                  f"median of {args.rounds} rounds at c32", flush=True)
        one_rss = rss_alone[MODELS[0]]
        print(f"RSS: 1 model ({MODELS[0]}) {one_rss:,.0f} MiB, 3 models {rss_three:,.0f} MiB: "
              f"{(rss_three - one_rss) / (len(MODELS) - 1):,.0f} MiB per extra model (alone: "
              + ", ".join(f"{m} {rss_alone[m]:,.0f} MiB" for m in MODELS) + f"); {bench.load_average()}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
