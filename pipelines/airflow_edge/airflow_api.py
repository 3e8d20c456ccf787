"""A small client of Airflow's REST API (v2) for the command line: trigger a DAG run and follow it.

``make up``, ``make train``, ``mlops-loop train`` and the land commands use it against the stack's API
server (``$AIRFLOW__API__BASE_URL``, else port ``$AIRFLOW_PORT``, default 8080; user ``admin``, password
``$AIRFLOW_ADMIN_PASSWORD`` or the one the stack generated at its first start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from pipelines.settings import stack_settings

FINISHED = ("success", "failed")
AWAITING_INPUT = "awaiting_input"  # a task waiting for a person (an approval in the UI's Required Actions)


def admin_password_file(state_root: Path | None = None) -> Path:
    """Where the embedded stack keeps the Airflow admin password it generated (mode 0600)."""
    from pipelines.config import StatePaths

    return (StatePaths(root=state_root) if state_root else StatePaths.from_env()).airflow_admin_password


def admin_password(state_root: Path | None = None) -> str:
    """``$AIRFLOW_ADMIN_PASSWORD``, else the password the stack generated at its first ``up``."""
    if (password := stack_settings().airflow_admin_password) is not None:
        return password.get_secret_value()
    path = admin_password_file(state_root)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise SystemExit(f"no Airflow admin password: set AIRFLOW_ADMIN_PASSWORD, or bring the stack up "
                         f"(`make up` writes {path})") from None


def default_url() -> str:
    """The stack's API server: ``$AIRFLOW__API__BASE_URL`` (the stack's env.sh sets it), else
    ``http://127.0.0.1:$AIRFLOW_PORT`` (default 8080)."""
    return stack_settings().airflow_url()


@dataclass
class AirflowApi:
    url: str = field(default_factory=lambda: default_url())
    username: str = "admin"
    password: str = field(default_factory=lambda: admin_password())
    _token: str | None = None

    def headers(self) -> dict[str, str]:
        if self._token is None:
            response = httpx.post(f"{self.url}/auth/token", timeout=30,
                                  json={"username": self.username, "password": self.password})
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/v2{path}", headers=self.headers(), timeout=30)

    def wait_for_dag(self, dag_id: str, timeout: float = 300) -> dict:
        """The DAG once the DAG processor has parsed it (a new model config takes one parsing pass)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id} did not appear within {timeout:.0f}s: is its model config in "
                                   "include/models and the stack up (`make status`)? See the Import Errors in the "
                                   "Airflow UI")
            time.sleep(2)

    def trigger(self, dag_id: str, conf: dict) -> str:
        """Unpause the DAG and start a run; returns the run id."""
        self.wait_for_dag(dag_id)
        httpx.patch(f"{self.url}/api/v2/dags/{dag_id}", headers=self.headers(), json={"is_paused": False},
                    timeout=30).raise_for_status()
        response = httpx.post(f"{self.url}/api/v2/dags/{dag_id}/dagRuns", headers=self.headers(), timeout=30,
                              json={"logical_date": None, "conf": conf})
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def asset_event(self, uri: str, extra: dict) -> dict:
        """Record an update of the Asset ``uri`` (as a task's outlet would): the DAGs scheduled on it start.
        LookupError when no DAG uses the Asset (Airflow knows an Asset only through the DAGs that name it)."""
        found = self.get(f"/assets?uri_pattern={quote(uri, safe='')}&limit=100")
        found.raise_for_status()
        ids = [a["id"] for a in found.json()["assets"] if a["uri"] == uri]
        if not ids:
            raise LookupError(f"Airflow has no Asset {uri}: no parsed DAG names it")
        response = httpx.post(f"{self.url}/api/v2/assets/events", headers=self.headers(), timeout=30,
                              json={"asset_id": ids[0], "extra": extra})
        response.raise_for_status()
        return response.json()

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        instances = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        return {f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]: t["state"]
                for t in instances}

    def wait(self, runs: list[tuple[str, str]], timeout: float = 1800,
             progress: Callable[[str, str], None] = print) -> dict[str, dict]:
        """Follow runs ``[(dag_id, run_id), ...]`` until each has finished or waits for a person (its state is
        then ``awaiting_input``), reporting every task that changes state through ``progress(dag_id, message)``.
        Returns each run with its task states."""
        deadline = time.monotonic() + timeout
        seen: dict[str, dict[str, str | None]] = {dag_id: {} for dag_id, _ in runs}
        finished: dict[str, dict] = {}
        while len(finished) < len(runs):
            if time.monotonic() > deadline:
                pending = [d for d, _ in runs if d not in finished]
                raise TimeoutError(f"runs of {pending} did not finish within {timeout:.0f}s")
            for dag_id, run_id in runs:
                if dag_id in finished:
                    continue
                run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
                states = self.task_states(dag_id, run_id)
                changed = [f"{task} {state}" for task, state in states.items()
                           if state and seen[dag_id].get(task) != state]
                if changed:
                    progress(dag_id, ", ".join(changed))
                seen[dag_id] = states
                if run["state"] in FINISHED:
                    finished[dag_id] = {**run, "tasks": states}
                    progress(dag_id, f"run {run['state']}")
                elif AWAITING_INPUT in states.values():  # only a person moves it on: stop following it
                    finished[dag_id] = {**run, "state": AWAITING_INPUT, "tasks": states}
            if len(finished) < len(runs):
                time.sleep(3)
        return finished
