"""The production topology, natively: the same code on PostgreSQL, the CeleryExecutor on Redis and an MLflow
server on PostgreSQL (docker-compose.yaml's services, started by `scripts/stack.py up --topology production`
on this machine's PostgreSQL and Redis; the ``production_stack`` fixture of conftest.py)."""

import json
import os
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
MODEL = "flights_delay"
PG_SERVER = os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")

pytestmark = pytest.mark.integration


def _scalar(database_url: str, query: str, **params):
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query), params).scalar()
    finally:
        engine.dispose()


def test_the_training_dag_runs_on_postgres_and_celery_and_the_champion_is_served(production_stack):
    env, up = production_stack
    assert "(production topology)" in up
    tasks = next(line for line in up.splitlines() if line.strip().startswith(f"train_{MODEL} tasks:"))
    assert "register=success" in tasks and "deploy=success" in tasks, tasks

    database = f"{PG_SERVER}/{env['MLOPS_PG_DATABASE_PREFIX']}"
    # Airflow's metadata is in PostgreSQL, and its tasks went through Celery (the result backend's rows).
    run_id = next(line.split(" run ", 1)[1].strip() for line in up.splitlines()
                  if line.strip().startswith(f"triggered train_{MODEL} run "))
    assert _scalar(f"{database}_airflow", "select state from dag_run where dag_id = :d and run_id = :r",
                   d=f"train_{MODEL}", r=run_id) == "success"
    succeeded = _scalar(f"{database}_airflow", "select count(*) from task_instance where dag_id = :d and "
                        "state = 'success'", d=f"train_{MODEL}")
    assert succeeded >= 10
    assert _scalar(f"{database}_airflow", "select count(*) from celery_taskmeta where status = 'SUCCESS'") >= succeeded
    # The MLflow server keeps the registry in PostgreSQL.
    assert _scalar(f"{database}_mlflow", "select version from registered_model_aliases where name = :m and "
                   "alias = 'champion'", m=MODEL) == 1
    # ... behind its login: anonymous requests are refused, the service's user reads but cannot move an alias,
    # and the pipeline's user (which trained and registered the model) manages it.
    api = f"http://127.0.0.1:{env['MLFLOW_PORT']}/api/2.0/mlflow/registered-models"
    passwords = Path(env["MLOPS_HOME"]) / "mlflow"
    serving = ("serving", (passwords / "serving_password").read_text().strip())
    pipeline = ("pipeline", (passwords / "pipeline_password").read_text().strip())
    assert httpx.get(f"{api}/get", params={"name": MODEL}).status_code == 401
    assert httpx.get(f"{api}/get", params={"name": MODEL}, auth=serving).status_code == 200
    move = {"name": MODEL, "alias": "challenger", "version": "1"}
    assert httpx.post(f"{api}/alias", json=move, auth=serving).status_code == 403
    assert httpx.post(f"{api}/alias", json=move, auth=pipeline).status_code == 200
    assert httpx.request("DELETE", f"{api}/alias", json={"name": MODEL, "alias": "challenger"},
                         auth=pipeline).status_code == 200

    # The operator pages inside Airflow's API server: refused without Airflow's login, and with an Airflow
    # token they show the version the DAG registered, with its gate verdict and its Airflow run.
    from pipelines.airflow_edge.airflow_api import AirflowApi, admin_password_file

    airflow = f"http://127.0.0.1:{env['AIRFLOW_PORT']}"
    assert httpx.get(f"{airflow}/mlops/models", timeout=30).status_code == 401
    login = AirflowApi(airflow, password=admin_password_file(Path(env["MLOPS_HOME"])).read_text().strip())
    page = httpx.get(f"{airflow}/mlops/models/{MODEL}/versions/1", headers=login.headers(), timeout=30)
    assert page.status_code == 200, page.text
    assert 'class="alias champion">champion' in page.text and f"/dags/train_{MODEL}/runs/" in page.text
    assert "Gate: <span class=\"pass\">" in page.text

    # The service serves that champion and logs what it serves to PostgreSQL.
    from pipelines.config import load_model_config
    from pipelines.training import model_inputs

    holdout = sorted(Path(env["MLOPS_HOME"]).glob(f"work/{MODEL}/*/split/holdout.parquet"))[-1]
    rows = model_inputs(pd.read_parquet(holdout).head(3), load_model_config(MODEL).features)
    serving = f"http://127.0.0.1:{env['SERVING_PORT']}"
    assert httpx.get(f"{serving}/health", timeout=10).json()["version"] == "1"
    answer = httpx.post(f"{serving}/invocations", timeout=30, headers={"X-Request-ID": "production-topology"},
                        json={"dataframe_records": json.loads(rows.to_json(orient="records"))})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 3
    from pipelines.prediction_store import read_log

    def logged() -> int:
        return int((read_log(f"{database}_monitoring").request_id == "production-topology").sum())

    wait_for(lambda: logged() >= 3, 30, "the 3 rows in the prediction log", poll=0.5)
    assert logged() == 3


def test_a_killed_task_is_retried_and_a_restarted_scheduler_finishes_the_run(fault_drill):
    """Faults while a training run is in flight (scripts/fault_drill.py, run on the stack right after its
    ``up``): the process of one candidate's task is killed (as the OOM killer would), then the scheduler is
    killed and started again. The run finishes, the killed task succeeds on its retry, nothing is left
    half-written, and the registry gains no duplicate version."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fault_drill", ROOT / "scripts" / "fault_drill.py")
    drill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drill)
    assert fault_drill["train0_try"] == 2 and fault_drill["run_state"] == "success"
    assert not drill.check(fault_drill), fault_drill
