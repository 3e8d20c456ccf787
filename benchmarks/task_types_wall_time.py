"""Each task type's training DAG on a 100k-row table: wall time against the summed compute of its steps.

    uv run python benchmarks/task_types_wall_time.py [--rows 100000] [--repeat 1] [--keep]

Generates three seeded tables with real signal, one per task type, and makes each a model as a user does
(`mlops-loop init DATA --target COL --name NAME`):
  binary      a Yes/No target (`churned`), no time column: a seeded, stratified random split;
  multiclass  four classes (`segment`), no time column: the same split;
  regression  a numeric target (`basket_value`) with an ISO event time over 120 days: a time-based split.

Everything runs in a scratch folder: a private stack (`scripts/stack.py up --no-train` with MLOPS_HOME,
MLOPS_INCLUDE_DIR and the ports 18080 / 15000 / 18000 moved there, so a stack on the default ports is
never touched), brought down at the end. Side by side in one run, for each task type in turn:
  1. the reference: the step functions of `pipelines.training_steps` (and the model load a deploy does)
     called one after another in this process, imports, the DVC repository and a local SQLite MLflow store
     warmed first, against a scratch MLOPS_HOME holding the same landed table; each step timed;
  2. the DAG: `train_<name>` triggered through the REST API on the same interval, timed from the run's
     start to its end. Beside each step it prints the task instance's duration, split with the task's log
     into its start (task process, DAG file parse, context), its body (the step) and its post-execute
     (XCom, state), and the wait before it (scheduling since the previous task ended).
Both sides are warmed first by one untimed run of a small (2,000-row) binary model, as `make up` leaves
the stack warm after its first trainings. The private stack creates no scheduled runs
(`[scheduler] use_job_schedule = False`), and each side waits until no DAG run is in flight, so each
measurement has the stack to itself. Each repeat trains models of its own (`<name>_<repeat>`), so every
measured run is the same work: a first training, promoted, registered and deployed. Prints each ratio
wall / compute (goal <= 1.3); with --repeat, the median ratio is the figure to quote.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from private_stack import dag_run, parse_time, private_stack, stack_env, task_phases, wait_until_idle
from scratch import finish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL = 1.3
# What the stack's task workers preload (scripts/stack.py TASK_PRELOAD) and what the steps import.
WARM_IMPORTS = ("pandas", "pyarrow.parquet", "sklearn.ensemble", "sklearn.metrics", "sklearn.calibration",
                "mlflow.sklearn", "skops.io", "great_expectations", "dvc.repo", "matplotlib.pyplot", "httpx",
                "fastapi.testclient", "pipelines.training_steps.data", "pipelines.task_types", "pipelines.ingest",
                "pipelines.validation", "pipelines.splitting", "pipelines.training", "pipelines.evaluation",
                "pipelines.gate", "pipelines.infra_validation", "pipelines.registry", "pipelines.serving.app",
                "pipelines.serving.models")
EVENT_DAYS = 120
FIRST_DAY = date(2025, 1, 6)


@dataclass(frozen=True)
class Case:
    task: str
    name: str
    target: str
    event_time: str | None


WARMUP = Case("binary", "bench_tt_warmup", "churned", None)
WARMUP_ROWS = 2_000
CASES = [
    Case("binary", "bench_tt_binary", "churned", None),
    Case("multiclass", "bench_tt_multiclass", "segment", None),
    Case("regression", "bench_tt_regression", "basket_value", "event_time"),
]


# the tables -----------------------------------------------------------------------------------------------
def make_table(case: Case, rows: int, seed: int = 0):
    """Customer records with 9 numeric columns (some missing values), 4 text categories and an id; the
    target is a noisy function of several of them, so a model has something to learn."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    plan = rng.choice(np.array(["basic", "standard", "premium", "family"], dtype=object), p=[.4, .3, .2, .1],
                      size=rows)
    region = rng.choice(np.array(["north", "south", "east", "west", "central"], dtype=object), size=rows)
    channel = rng.choice(np.array(["web", "app", "store", "phone"], dtype=object), p=[.4, .3, .2, .1], size=rows)
    device = rng.choice(np.array(["ios", "android", "desktop"], dtype=object), size=rows)
    age = rng.integers(18, 90, rows)
    tenure = rng.integers(0, 120, rows)
    calls = rng.poisson(1.2, rows)
    satisfaction = rng.integers(1, 6, rows).astype(float)
    spend = np.round(rng.gamma(2.0, 30.0, rows), 2)
    logins = rng.poisson(12, rows)
    session = np.round(rng.exponential(25, rows), 1)
    discount = rng.choice([0.0, 0.05, 0.1, 0.15, 0.2], size=rows)
    balance = np.round(rng.normal(1500, 900, rows), 2)

    if case.task == "binary":
        logit = (-1.0 + 0.9 * (plan == "basic") - 0.02 * tenure + 0.45 * calls - 0.45 * (satisfaction - 3)
                 - 0.03 * (logins - 12) + 0.4 * (channel == "phone"))
        target = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "Yes", "No").astype(object)
    elif case.task == "multiclass":
        names = np.array(["bronze", "silver", "gold", "platinum"], dtype=object)
        scores = np.column_stack([
            np.zeros(rows),
            0.02 * spend + 0.3 * (plan == "standard") - 1.0,
            0.04 * spend + 0.015 * tenure + 1.0 * (plan == "premium") - 3.5,
            0.06 * spend + 0.03 * tenure + 1.5 * (plan == "premium") + 0.8 * (plan == "family") - 7.0,
        ]) + rng.gumbel(size=(rows, 4))
        target = names[scores.argmax(axis=1)]
    else:
        target = np.round(0.8 * spend + 25 * (plan == "premium") + 10 * (channel == "app") + 0.3 * logins
                          + 0.5 * session - 40 * discount + rng.normal(0, 15, rows), 2)

    frame = pd.DataFrame({
        "customer_id": rng.permutation(rows) + 1_000_000,
        "age": age, "tenure_months": tenure, "support_calls": calls,
        "satisfaction": np.where(rng.random(rows) < 0.05, np.nan, satisfaction),
        "monthly_spend": spend, "logins_30d": logins,
        "session_minutes": np.where(rng.random(rows) < 0.05, np.nan, session),
        "discount_rate": discount, "balance": balance,
        "plan": plan, "region": region, "channel": channel, "device": device,
        case.target: target,
    })
    if case.event_time:
        start = np.datetime64(FIRST_DAY.isoformat() + "T00:00:00", "s")
        stamps = np.sort(start + rng.integers(0, EVENT_DAYS * 86400, rows).astype("timedelta64[s]"))
        frame.insert(1, case.event_time, np.datetime_as_string(stamps, timezone="UTC"))
    return frame


# the stack ------------------------------------------------------------------------------------------------
# the reference --------------------------------------------------------------------------------------------
class Reference:
    """The steps in this process against one scratch state folder with its own local MLflow store."""

    def __init__(self, root: Path):
        self.root = root
        self.saved = {k: os.environ.get(k) for k in ("MLOPS_HOME", "MLFLOW_TRACKING_URI")}

    def __enter__(self) -> Reference:
        os.environ["MLOPS_HOME"] = str(self.root)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        return self

    def __exit__(self, *exc) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def warm(self) -> None:
        """Every import the steps make, the DVC repository and the MLflow store (its schema migration
        takes seconds), as the running stack has them before a run."""
        import importlib

        import mlflow

        from pipelines.config import StatePaths
        from pipelines.tracking import configure_mlflow
        from pipelines.versioning import ensure_repo

        for module in WARM_IMPORTS:
            importlib.import_module(module)
        state = StatePaths.from_env()
        ensure_repo(state.dvc_repo, state.dvc_remote)
        configure_mlflow(state)
        mlflow.MlflowClient().search_experiments()

    def run(self, cfg, ctx) -> tuple[dict[str, float], dict]:
        from inprocess import run_training_steps

        from pipelines.config import StatePaths

        return run_training_steps(cfg, ctx, StatePaths.from_env())


# the report -----------------------------------------------------------------------------------------------
def report_run(api, case: Case, name: str, cfg, timings: dict[str, float], wall: float, run: dict,
               instances: list[dict], ref_outcome: dict) -> dict:
    """Per step: the in-process compute beside the task instance, split into the wait before it started
    (scheduling and queueing since the previous task ended), its start (task process, DAG file parse,
    context), its body (the step itself) and its post-execute (XCom push, state)."""
    compute = sum(timings.values())
    run_start, run_end = parse_time(run["start_date"]), parse_time(run["end_date"])
    started = sorted((i for i in instances if i["start_date"]), key=lambda i: i["start_date"])
    print(f"\n{case.task}: {name} ({cfg.split_method} split, {len(cfg.features.inputs)} features, "
          f"{len(cfg.search.candidates())} candidate(s))")
    columns = ("task", "wait", "start", "body", "post", "excess")
    print(f"    {'step':<15}{'in-process':>11} " + "".join(f"{c:>7}" for c in columns[:-1]) + f"{'body-step':>11}")
    totals = dict.fromkeys(columns, 0.0)
    previous_end = run_start
    for instance in started:
        begin, end = parse_time(instance["start_date"]), parse_time(instance["end_date"])
        step = timings.get(instance["task_id"])
        row = {"task": instance["duration"] or (end - begin).total_seconds(),
               "wait": (begin - previous_end).total_seconds()}
        phases = task_phases(api, run["dag_id"], run["dag_run_id"], instance)
        if phases:
            row.update(start=(phases[0] - begin).total_seconds(), body=(phases[1] - phases[0]).total_seconds(),
                       post=(end - phases[1]).total_seconds())
            if step is not None:
                row["excess"] = row["body"] - step
        for key, value in row.items():
            totals[key] += value
        cells = "".join(f"{row[k]:>7.2f}" if k in row else f"{'-':>7}" for k in columns[:-1])
        excess = f"{row['excess']:>+11.2f}" if "excess" in row else f"{'-':>11}"
        print(f"    {instance['task_id']:<15}{f'{step:.2f} s' if step is not None else '-':>11} {cells}{excess}")
        previous_end = max(previous_end, end)
    tail = (run_end - previous_end).total_seconds()
    cells = "".join(f"{totals[k]:>7.2f}" for k in columns[:-1])
    print(f"    {'sum':<15}{compute:>9.2f} s {cells}{totals['excess']:>+11.2f}   (+ {tail:.2f} s from the last "
          "task's end to the run's end)")
    skipped = [i["task_id"] for i in instances if i["state"] == "skipped"]
    print(f"    DAG run {run['state']}: "
          + (f"the gate kept the champion ({', '.join(skipped)} skipped)" if skipped else "registered and deployed")
          + f"; reference: {'registered' if ref_outcome['promote'] else 'not promoted'} "
          f"({ref_outcome['summary'][:90]}), holdout {ref_outcome['holdout']}")
    ratio = wall / compute
    print(f"    {case.task}: wall {wall:.1f} s / compute {compute:.1f} s = {ratio:.2f} (goal <= {GOAL}); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return {"ratio": ratio, "wall": wall, "compute": compute, **totals, "tail": tail}


def init_model(case: Case, name: str, data: Path, env: dict[str, str], include: Path):
    from pipelines.config import load_model_config

    out = subprocess.run([str(Path(sys.executable).parent / "mlops-loop"), "init", str(data), "--target",
                          case.target, "--name", name], env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"mlops-loop init {name} failed:\n{out.stdout}{out.stderr}")
    cfg = load_model_config(include / "models" / f"{name}.yaml")
    if cfg.task != case.task or cfg.features.event_time != case.event_time:
        raise SystemExit(f"{name}: drafted task {cfg.task}, event time {cfg.features.event_time!r}; expected "
                         f"{case.task}, {case.event_time!r}")
    return cfg


def interval_of(cfg) -> tuple[date, date]:
    """What a manual run without an interval trains on: the drafted days of a timed table, else every day
    from the model's start date through today."""
    return cfg.default_interval or (cfg.start_date, date.today() + timedelta(days=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows in each table")
    parser.add_argument("--repeat", type=int, default=1, help="measure both sides this many times")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (data, state, logs)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_task_types_"))
    include, stack_state, ref_state = scratch / "include", scratch / "state", scratch / "reference"
    for folder in (include / "models", include / "expectations", scratch / "data"):
        folder.mkdir(parents=True)
    env = stack_env(stack_state, include)
    os.environ["MLOPS_INCLUDE_DIR"] = str(include)  # load_model_config and the suites read it on each call
    log = scratch / "stack.log"
    print(f"scratch folder {scratch}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        started = time.perf_counter()
        files = {}
        for case in (WARMUP, *CASES):
            files[case.name] = scratch / "data" / f"{case.name}.csv"
            make_table(case, WARMUP_ROWS if case is WARMUP else args.rows).to_csv(files[case.name], index=False)
        print(f"generated 3 tables of {args.rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)

        from pipelines.config import training_dag_id
        from pipelines.run_context import RunContext

        with private_stack(env, log) as api:
            # A model of its own for each repeat, so every measured run is the same work: a first training,
            # promoted and deployed (a second run on the same snapshot is rightly rejected by the gate).
            models = [(WARMUP, WARMUP.name)] + [(case, f"{case.name}_{attempt}")
                                                for attempt in range(1, args.repeat + 1) for case in CASES]
            configs = {}
            started = time.perf_counter()
            for case, name in models:
                cfg = configs[name] = init_model(case, name, files[case.name], env, include)
                shutil.copytree(stack_state / "landing" / cfg.landing_name, ref_state / "landing" / cfg.landing_name)
            print(f"mlops-loop init of {len(models)} models in {time.perf_counter() - started:.0f} s: "
                  + ", ".join(f"{configs[f'{c.name}_1'].task} ({configs[f'{c.name}_1'].split_method} split, "
                              f"{len(configs[f'{c.name}_1'].features.inputs)} features)" for c in CASES), flush=True)
            for _, name in models:
                api.wait_for_dag(training_dag_id(name))
            logging.getLogger("mlflow").setLevel(logging.WARNING)

            # Both sides start warm, as after `make up`: one untimed run of a small model on each warms the
            # reference's imports and stores, and the stack's task workers (their forkserver imports the ML
            # stack on its first task), MLflow server and prediction service (its first model load).
            cfg = configs[WARMUP.name]
            with Reference(ref_state) as reference:
                reference.warm()
                reference.run(cfg, RunContext(training_dag_id(WARMUP.name), "reference", *interval_of(cfg),
                                              reason="warm-up"))
            wait_until_idle(api)
            wall, run, _ = dag_run(api, training_dag_id(WARMUP.name), {
                "data_interval_start": interval_of(cfg)[0].isoformat(),
                "data_interval_end": interval_of(cfg)[1].isoformat(), "reason": "benchmark warm-up"})
            print(f"warm-up: {training_dag_id(WARMUP.name)} ({WARMUP_ROWS:,} rows) {run['state']} in {wall:.1f} s, "
                  "not measured", flush=True)

            results: dict[str, list[dict]] = {c.task: [] for c in CASES}
            for case, name in models[1:]:
                cfg = configs[name]
                start, end = interval_of(cfg)
                wait_until_idle(api)
                with Reference(ref_state) as reference:
                    timings, outcome = reference.run(cfg, RunContext(training_dag_id(name), "reference", start, end,
                                                                     reason="benchmark"))
                wait_until_idle(api)
                wall, run, instances = dag_run(api, training_dag_id(name), {
                    "data_interval_start": start.isoformat(), "data_interval_end": end.isoformat(),
                    "reason": "benchmark: task types wall time"})
                if run["state"] != "success":
                    raise SystemExit(f"{training_dag_id(name)} run failed: {run['tasks']} (logs under {stack_state})")
                results[case.task].append(report_run(api, case, name, cfg, timings, wall, run, instances, outcome))

            print(f"\n{args.rows:,} rows, {args.repeat} run(s) per task type"
                  + (" (the median run's figures; min and max ratio)" if args.repeat > 1 else "") + ":")
            for task, runs in results.items():
                median = statistics.median_low(r["ratio"] for r in runs)
                middle = next(r for r in runs if r["ratio"] == median)
                spread = (f" (min {min(r['ratio'] for r in runs):.2f}, max {max(r['ratio'] for r in runs):.2f})"
                          if len(runs) > 1 else "")
                print(f"{task}: wall {middle['wall']:.1f} s / compute {middle['compute']:.1f} s = {median:.2f}{spread} "
                      f"(goal <= {GOAL})")
    finally:
        finish(scratch, args.keep)


if __name__ == "__main__":
    main()
