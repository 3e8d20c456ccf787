"""Fault drill on the running stack: during a forced training run, kill one candidate's task process (as the
OOM killer would), then the scheduler; start the scheduler again; the run must finish with the killed task
succeeding on its retry, nothing half-written and no duplicate registry version.

    source .state/env.sh
    uv run python scripts/fault_drill.py [--model flights_delay] [--report drill.json]

Works on either topology (embedded: LocalExecutor on SQLite; production: Celery on PostgreSQL and Redis);
the tests run it on the production topology, right after the stack's `up` (tests/integration/conftest.py).
Prints what it did (``--report``: also as JSON) and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def drill(model: str, env: dict[str, str], say=print) -> dict:
    """Run the drill against the stack ``env`` describes (its MLOPS_HOME, AIRFLOW_PORT or
    AIRFLOW__API__BASE_URL, MLFLOW_TRACKING_URI and credentials); returns what it observed."""
    import mlflow

    from pipelines.airflow_edge.airflow_api import AirflowApi, admin_password
    from pipelines.config import training_dag_id

    state = Path(env["MLOPS_HOME"])
    airflow_url = env.get("AIRFLOW__API__BASE_URL") or f"http://127.0.0.1:{env.get('AIRFLOW_PORT', '8080')}"
    api = AirflowApi(url=airflow_url, password=admin_password(state))
    mlflow_url = env.get("MLFLOW_TRACKING_URI") or f"http://127.0.0.1:{env.get('MLFLOW_PORT', '5000')}"
    registry = mlflow.MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    versions = len(registry.search_model_versions(f"name = '{model}'"))
    dag_id = training_dag_id(model)
    run_id = api.trigger(dag_id, {"data_interval_start": "2013-01-01", "data_interval_end": "2013-04-01",
                                  "force": True, "reason": "fault drill"})
    say(f"triggered {dag_id} {run_id} (forced)")

    def running_train() -> dict | None:
        instances = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        return next((t for t in instances if t["task_id"] == "train" and t["map_index"] == 0
                     and t["state"] == "running"), None)

    deadline, task = time.monotonic() + 300, None
    while task is None and time.monotonic() < deadline:
        task = running_train()
        time.sleep(0.5)
    if task is None:
        raise SystemExit(f"train[0] never ran: {api.task_states(dag_id, run_id)}")
    killed = subprocess.run(["pkill", "-KILL", "-f", f"airflow worker -- {task['id']}"], capture_output=True)
    if killed.returncode != 0:
        raise SystemExit(f"the process of train[0] ({task['id']}) was not found")
    say(f"killed the process of train[0] (task instance {task['id']})")
    scheduler = int((state / "run" / "airflow-scheduler.pid").read_text())
    os.kill(scheduler, 9)
    say(f"killed the scheduler (pid {scheduler}); starting it again")
    restarted = subprocess.run([sys.executable, "scripts/stack.py", "up", "--no-train"], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    if restarted.returncode != 0 or "airflow-scheduler: started" not in restarted.stdout:
        raise SystemExit(f"the scheduler did not start again: {restarted.stdout[-2000:]}{restarted.stderr[-2000:]}")

    started = time.monotonic()
    run = api.wait([(dag_id, run_id)], timeout=900, progress=lambda *_: None)[dag_id]
    retried = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train/0").json()
    half_written = [str(p) for folder in ("curated", "work", "cache") for p in (state / folder).rglob(".*.tmp")]
    observed = {"run_state": run["state"], "tasks": run["tasks"], "train0_state": retried["state"],
                "train0_try": retried["try_number"], "versions_before": versions,
                "versions_after": len(registry.search_model_versions(f"name = '{model}'")),
                "half_written": half_written, "seconds_after_restart": round(time.monotonic() - started)}
    say(f"the run: {run['state']} {time.monotonic() - started:.0f} s after the restart; train[0] "
        f"{retried['state']} on try {retried['try_number']}; register {run['tasks'].get('register')}; registry "
        f"versions {versions} -> {observed['versions_after']}; half-written files: {len(half_written)}")
    return observed


def check(observed: dict) -> list[str]:
    """What went wrong, if anything."""
    problems = []
    if observed["run_state"] != "success":
        problems.append(f"the run ended {observed['run_state']}: {observed['tasks']}")
    if (observed["train0_state"], observed["train0_try"]) != ("success", 2):
        problems.append(f"train[0] is {observed['train0_state']} on try {observed['train0_try']}, not a success on 2")
    # The candidate is trained on the champion's own snapshot: the gate keeps the champion, nothing registers.
    if observed["tasks"].get("register") != "skipped" or observed["versions_after"] != observed["versions_before"]:
        problems.append(f"the registry changed: {observed['versions_before']} -> {observed['versions_after']}")
    if observed["half_written"]:
        problems.append(f"half-written files: {observed['half_written']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flights_delay")
    parser.add_argument("--report", type=Path, help="also write what the drill observed there (JSON)")
    args = parser.parse_args()
    if "MLOPS_HOME" not in os.environ:
        raise SystemExit("source .state/env.sh first: the drill runs against the running stack")
    observed = drill(args.model, dict(os.environ))
    if args.report:
        args.report.write_text(json.dumps(observed))
    problems = check(observed)
    if problems:
        raise SystemExit("fault drill FAILED: " + "; ".join(problems))
    print("fault drill passed")


if __name__ == "__main__":
    main()
