"""A private stack for the DAG benchmarks: `scripts/stack.py up --no-train` with its state, configs and
ports moved to a scratch folder (Airflow :18080, MLflow :15000, service :18000), so a stack on the default
ports is never touched, and no scheduled runs; plus what the benchmarks read back from Airflow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"AIRFLOW_PORT": "18080", "MLFLOW_PORT": "15000", "SERVING_PORT": "18000"}


def stack(command: str, env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ stack.py {command}\n")
        out.flush()
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "stack.py"), command,
                               *(["--no-train"] if command == "up" else [])],
                              env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"stack.py {command} failed ({done.returncode}): see {log}")


def stack_env(state: Path, include: Path | None = None) -> dict[str, str]:
    """The private stack's environment. A monitoring DAG whose start date lies in the past would otherwise
    start at once and share the cores with the measured runs: no scheduled runs."""
    return {**os.environ, "MLOPS_HOME": str(state), **PORTS, "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            **({"MLOPS_INCLUDE_DIR": str(include)} if include else {})}


@contextmanager
def private_stack(env: dict[str, str], log: Path) -> Iterator:
    """Bring the stack up, yield its Airflow API client, and bring it down whatever happens."""
    from pipelines.airflow_edge.airflow_api import AirflowApi, admin_password

    started = time.perf_counter()
    try:
        stack("up", env, log)
        print(f"private stack up in {time.perf_counter() - started:.0f} s (Airflow on :{PORTS['AIRFLOW_PORT']}, "
              f"log {log})", flush=True)
        yield AirflowApi(url=f"http://127.0.0.1:{PORTS['AIRFLOW_PORT']}",
                         password=admin_password(Path(env["MLOPS_HOME"])))
    finally:
        print("bringing the private stack down...", flush=True)
        try:
            stack("down", env, log)
        except SystemExit as exc:
            print(exc)


def wait_until_idle(api, timeout: float = 900) -> None:
    """No DAG run queued or running anywhere on the stack."""
    deadline = time.monotonic() + timeout
    while True:
        runs = api.get("/dags/~/dagRuns?state=queued&state=running&limit=100").json()["dag_runs"]
        if not runs:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the stack is still busy after {timeout:.0f}s: "
                             + ", ".join(f"{r['dag_id']} {r['dag_run_id']}" for r in runs))
        time.sleep(3)


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def dag_run(api, dag_id: str, conf: dict) -> tuple[float, dict, list[dict]]:
    """Trigger one run, follow it, and return its wall time, the run and its task instances."""
    run_id = api.trigger(dag_id, conf)
    run = api.wait([(dag_id, run_id)], progress=lambda *_: None)[dag_id]
    wall = (parse_time(run["end_date"]) - parse_time(run["start_date"])).total_seconds()
    instances = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    return wall, run, instances


def task_phases(api, dag_id: str, run_id: str, instance: dict) -> tuple[datetime, datetime] | None:
    """When the task's own code started and ended, from its log: after Airflow's "Pre Execute" group (the
    task process has parsed the DAG file and built its context) up to its "Post Execute" group (pushing
    the XCom and reporting the state follow)."""
    path = (f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{instance['task_id']}/logs/{instance['try_number']}"
            f"?full_content=true&map_index={instance['map_index']}")
    try:
        lines = [line for line in api.get(path).json()["content"] if isinstance(line, dict) and line.get("timestamp")]
        events = [(str(line["event"]), parse_time(str(line["timestamp"]))) for line in lines]
        pre = next(i for i, (event, _) in enumerate(events) if event == "::group::Pre Execute")
        body_start = next(stamp for event, stamp in events[pre + 1:] if event == "::endgroup::")
        body_end = next(stamp for event, stamp in events if event == "::group::Post Execute")
        return body_start, body_end
    except (StopIteration, KeyError, TypeError, ValueError):
        return None
