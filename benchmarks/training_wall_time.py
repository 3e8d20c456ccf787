"""Training DAG wall time on Jan-Jun 2013 against the summed compute of its steps.

Needs the stack up (`make up`). Side by side in one run:
  1. the reference: the same step functions called one after another in this process, imports warmed
     first, against a scratch MLOPS_HOME and MLflow store that holds a Jan-Mar champion (as the stack
     does after `make up`), each step timed;
  2. the DAG: the same interval triggered on the running Airflow (LocalExecutor), timed from the run's
     start to its end.
Prints both and their ratio (goal <= 1.3): what Airflow adds on top of the work itself.

    uv run python benchmarks/training_wall_time.py [--repeat 3]

The machine is shared and noisy: each repeat measures both sides again, back to back, and the median
ratio is the figure to quote.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
INTERVAL = (date(2013, 1, 1), date(2013, 7, 1))


def reference_steps(tables) -> dict[str, float]:
    """Run every step in-process on a scratch state folder; returns seconds per step."""
    scratch = Path(tempfile.mkdtemp(prefix="bench_ref_"))
    saved = {k: os.environ.get(k) for k in ("MLOPS_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["MLOPS_HOME"] = str(scratch)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        import matplotlib.pyplot  # noqa: F401  warm every import the steps use
        import mlflow.sklearn  # noqa: F401
        import skops.io  # noqa: F401
        from inprocess import run_training_steps

        from pipelines import validation  # noqa: F401
        from pipelines.config import StatePaths, load_model_config
        from pipelines.run_context import RunContext
        from pipelines.sources.flights import land_nycflights13

        cfg, state = load_model_config("flights_delay"), StatePaths.from_env()
        land_nycflights13(state.root / "landing" / cfg.name, INTERVAL[0], INTERVAL[1], tables=tables)
        # The Jan-Mar champion the stack also has; then the measured run, every step computed.
        run_training_steps(cfg, RunContext("bench", "seed", date(2013, 1, 1), date(2013, 4, 1)), state)
        return run_training_steps(cfg, RunContext("bench", "timed", *INTERVAL, reason="benchmark", force=True),
                                  state)[0]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(scratch, ignore_errors=True)


def dag_wall_seconds() -> tuple[float, dict]:
    import stack  # scripts/stack.py: the same REST calls `make up` makes

    from pipelines.config import training_dag_id
    from pipelines.sources.flights import land_nycflights13

    land_nycflights13(stack.STATE / "landing" / stack.MODEL, INTERVAL[0], INTERVAL[1])
    api, dag_id = stack.airflow_api(), training_dag_id(stack.MODEL)
    run_id = api.trigger(dag_id, {"data_interval_start": INTERVAL[0].isoformat(),
                                  "data_interval_end": INTERVAL[1].isoformat(), "reason": "benchmark: Jan-Jun 2013",
                                  "force": True})
    run = api.wait([(dag_id, run_id)], progress=lambda *_: None)[dag_id]
    if run["state"] != "success":
        raise SystemExit(f"DAG run failed: {run['tasks']}")
    started, ended = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return (ended - started).total_seconds(), run["tasks"]


def main() -> None:
    import argparse
    import statistics

    from pipelines.sources.flights import nycflights13_tables

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tables = nycflights13_tables()
    ratios = []
    for attempt in range(1, args.repeat + 1):
        timings = reference_steps(tables)
        compute = sum(timings.values())
        wall, tasks = dag_wall_seconds()
        ratios.append(wall / compute)
        skipped = [k for k, v in tasks.items() if v == "skipped"]
        print(f"[{attempt}] in-process step compute (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        print(f"[{attempt}] DAG wall {wall:.1f} s | summed step compute {compute:.1f} s | ratio {wall / compute:.2f}"
              + (f" (gate kept the champion: {', '.join(skipped)} skipped)" if skipped else ""))
    print(f"training DAG on {INTERVAL[0]}..{INTERVAL[1]}: median ratio {statistics.median(ratios):.2f} over "
          f"{len(ratios)} runs (min {min(ratios):.2f}, max {max(ratios):.2f}; goal <= 1.3)")


if __name__ == "__main__":
    main()
