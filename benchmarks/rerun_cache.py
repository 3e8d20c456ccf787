"""A rerun of the training DAG on unchanged data against its first run: the steps' own compute.

    uv run python benchmarks/rerun_cache.py [--keep]

On a private stack (benchmarks/private_stack.py: its own state folder and ports, no scheduled runs),
`train_flights_delay` on Jan-Jun 2013 (166k flights, 4 candidates) runs three times in a row:
  1. first: every step computes (an empty step cache);
  2. rerun: the same interval, nothing changed: each step finds its inputs unchanged and reuses its outputs;
  3. forced: the same interval with `force`: every step computes again.
Per step it prints the task bodies (the step's own code, from Airflow's task logs: after "Pre Execute",
before "Post Execute"; mapped candidates summed) and each run's wall time (start to end of the DAG run).
The figure: the rerun's summed step compute / the first run's (goal <= 0.10).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import date
from pathlib import Path

from private_stack import dag_run, private_stack, stack_env, task_phases, wait_until_idle
from scratch import finish

GOAL = 0.10
MODEL = "flights_delay"
INTERVAL = (date(2013, 1, 1), date(2013, 7, 1))


def step_seconds(api, run: dict, instances: list[dict]) -> dict[str, float]:
    """Each task's body, mapped instances summed, in the order the tasks started (skipped tasks ran nothing)."""
    seconds: dict[str, float] = {}
    ran = [i for i in instances if i["start_date"] and i["state"] != "skipped"]
    for instance in sorted(ran, key=lambda i: i["start_date"]):
        phases = task_phases(api, run["dag_id"], run["dag_run_id"], instance)
        if phases is None:
            raise SystemExit(f"no step timing in the log of {instance['task_id']}")
        seconds[instance["task_id"]] = seconds.get(instance["task_id"], 0.0) + (phases[1] - phases[0]).total_seconds()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (state, logs)")
    args = parser.parse_args()

    from pipelines.config import training_dag_id
    from pipelines.sources.flights import land_nycflights13

    scratch = Path(tempfile.mkdtemp(prefix="bench_rerun_"))
    env, log = stack_env(scratch / "state"), scratch / "stack.log"
    print(f"scratch folder {scratch}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        land_nycflights13(scratch / "state" / "landing" / MODEL, *INTERVAL)
        with private_stack(env, log) as api:
            api.wait_for_dag(training_dag_id(MODEL))
            conf = {"data_interval_start": INTERVAL[0].isoformat(), "data_interval_end": INTERVAL[1].isoformat(),
                    "reason": "benchmark: rerun on unchanged data"}
            runs = {}
            for name, force in (("first", False), ("rerun", False), ("forced", True)):
                wait_until_idle(api)
                wall, run, instances = dag_run(api, training_dag_id(MODEL), {**conf, "force": force})
                if run["state"] != "success":
                    raise SystemExit(f"{name} run failed: {run['tasks']} (logs under {scratch})")
                runs[name] = (wall, step_seconds(api, run, instances), run["tasks"])

        steps = list(runs["first"][1])
        print(f"\n{training_dag_id(MODEL)} on {INTERVAL[0]}..{INTERVAL[1]}, step compute in seconds (task bodies):")
        print(f"    {'step':<16}" + "".join(f"{name:>10}" for name in runs))
        for step in steps:
            print(f"    {step:<16}" + "".join(f"{seconds.get(step, 0.0):>10.2f}" for _, seconds, _ in runs.values()))
        print(f"    {'sum':<16}" + "".join(f"{sum(seconds.values()):>10.2f}" for _, seconds, _ in runs.values()))
        print(f"    {'DAG wall':<16}" + "".join(f"{wall:>10.2f}" for wall, _, _ in runs.values()))
        skipped = [task for task, state in runs["rerun"][2].items() if state == "skipped"]
        print(f"    rerun: {', '.join(skipped) or 'nothing'} skipped (the gate keeps a champion trained on the "
              "same snapshot)")
        first, rerun = (sum(runs[name][1].values()) for name in ("first", "rerun"))
        print(f"rerun on unchanged data: step compute {rerun:.2f} s / first run {first:.2f} s = {rerun / first:.3f} "
              f"(goal <= {GOAL}); wall {runs['rerun'][0]:.1f} s vs {runs['first'][0]:.1f} s; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        finish(scratch, args.keep)


if __name__ == "__main__":
    main()
