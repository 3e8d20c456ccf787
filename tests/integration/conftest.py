"""Real services for the integration tests: an MLflow tracking server and the prediction service on
loopback, one of each per test module; and a whole stack on the production topology, once per run."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.mlflow_server import free_port, running_mlflow_server
from tests.waiting import wait_until_started

MODEL = "flights_delay"


@pytest.fixture(scope="module")
def mlflow_server(monkeypatch_module, tmp_path_factory, empty_mlflow_db):
    """A real MLflow tracking server for the module, set as its MLFLOW_TRACKING_URI."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow_server"), empty_mlflow_db) as url:
        monkeypatch_module.setenv("MLFLOW_TRACKING_URI", url)
        yield url


@pytest.fixture(scope="module")
def serve_on_loopback(monkeypatch_module):
    """Serve an ASGI app with uvicorn on a free loopback port, as the stack does; it is where the DAGs deploy
    ($MLOPS_SERVING_URL) until the module ends."""
    import uvicorn

    servers = []

    def serve(app) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_until_started(server, 10)
        url = f"http://127.0.0.1:{port}"
        monkeypatch_module.setenv("MLOPS_SERVING_URL", url)
        return url

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def prediction_service(serve_on_loopback, mlflow_server):
    from pipelines.serving.app import create_app

    return serve_on_loopback(create_app(MODEL, poll_seconds=0))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp




@pytest.fixture(scope="session")
def dag_file():
    """A DAG file of dags/ as a module, to build a DAG from a config the test made (``build_<kind>_dag``)."""
    import importlib.util
    import os

    def load(name: str):
        path = os.path.join(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], f"{name}.py")
        spec = importlib.util.spec_from_file_location(f"{name}_dag_file", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


# The production topology, natively (docker-compose.yaml's services on this machine's PostgreSQL and Redis),
# brought up once for the tests that need a whole running stack (their lane: see tests/conftest.py).
ROOT = Path(__file__).resolve().parents[2]
PG_SERVER = os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS = os.environ.get("MLOPS_TEST_REDIS", "127.0.0.1:6379")
REVIEWED = "penguins_reviewed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A browser test that fails adds a screenshot of the page it failed on to its report."""
    outcome = yield
    report = outcome.get_result()
    tab = item.funcargs.get("page") if report.when == "call" and report.failed else None
    if tab is not None:
        path = ROOT / "test-artifacts" / "screenshots" / f"FAILED-{item.name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tab.screenshot(path=path, full_page=True)
            report.sections.append(("screenshot", f"{path} (the page at {tab.url})"))
        except Exception as exc:  # the browser itself may be what failed
            report.sections.append(("screenshot", f"none: {exc}"))


def _reachable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


class ProductionStack:
    """A stack of its own on the production topology: throw-away databases, a Redis database, free ports, a
    temp state, and two model configs: flights_delay, and ``penguins_reviewed`` (the penguins model with
    ``serving.approval: required`` and ``train_on_landing``; nothing is landed for it at ``up``, so ``up``
    does not train it).

    Its ``up`` (about two minutes, most of it the first training run) starts in the background as soon as the
    run's tests are collected, and goes on while the other tests run; the tests that need it run last. With
    ``drill``, the fault drill (scripts/fault_drill.py, another two minutes) follows ``up`` in the background
    too, and the stack is handed to its tests once the drill is over."""

    def __init__(self, drill: bool) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mlops_production_"))
        include = self.folder / "include"
        shutil.copytree(ROOT / "include", include)
        # `up` trains flights_delay alone (the other example models would only add training on two cores); the
        # second model, penguins_reviewed, trains when a test lands its data, and waits for a person's approval.
        penguins = include / "models" / "penguins.yaml"
        reviewed = yaml.safe_load(penguins.read_text())
        reviewed.update(name=REVIEWED, expectation_suite="expectations/penguins.json", train_on_landing=True,
                        serving={**reviewed.get("serving", {}), "approval": "required"})
        (include / "models" / f"{REVIEWED}.yaml").write_text(yaml.safe_dump(reviewed))
        for other in ("flights_arr_delay.yaml", "penguins.yaml"):
            (include / "models" / other).unlink()
        self.prefix = f"mlops_t{uuid.uuid4().hex[:10]}"
        self.redis_url = f"redis://{REDIS}/{1 + uuid.uuid4().int % 15}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_", "MLFLOW_"))}
        env.update(MLOPS_HOME=str(self.folder / "state"), MLOPS_INCLUDE_DIR=str(include),
                   MLOPS_PG_SERVER=PG_SERVER, MLOPS_PG_DATABASE_PREFIX=self.prefix, MLOPS_REDIS_URL=self.redis_url,
                   AIRFLOW_PORT=str(free_port()), MLFLOW_PORT=str(free_port()), SERVING_PORT=str(free_port()))
        self.env = env
        self.output = self.folder / "up.log"
        self.up = subprocess.Popen([sys.executable, "scripts/stack.py", "up", "--topology", "production"], env=env,
                                   cwd=ROOT, stdout=open(self.output, "w"), stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
        self.drill: subprocess.Popen | None = None
        self.drill_report = self.folder / "drill.json"
        self._removing = threading.Event()  # no drill starts once the stack is being removed
        self._then_drill = threading.Thread(target=self._drill_after_up, daemon=True) if drill else None
        if self._then_drill is not None:
            self._then_drill.start()

    def _drill_after_up(self) -> None:
        if self.up.wait() != 0 or self._removing.is_set():
            return
        state = Path(self.env["MLOPS_HOME"])
        reader = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.env['MLFLOW_PORT']}",  # reading the registry is
                  "MLFLOW_TRACKING_USERNAME": "serving",  # all the drill does in MLflow
                  "MLFLOW_TRACKING_PASSWORD": (state / "mlflow" / "serving_password").read_text().strip()}
        self.drill = subprocess.Popen([sys.executable, "scripts/fault_drill.py", "--report", str(self.drill_report)],
                                      env={**self.env, **reader}, cwd=ROOT, stdout=open(self.folder / "drill.log", "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.drill.wait()

    def wait_up(self, timeout: float = 1200) -> str:
        """``up``'s output once it is done (asserting it succeeded), and the drill's end if it runs."""
        try:
            self.up.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the production stack was not up within {timeout:.0f} s: "
                        + self.output.read_text()[-3000:])
        output = self.output.read_text()
        assert self.up.returncode == 0, output[-6000:]
        if self._then_drill is not None:
            self._then_drill.join(timeout=900)
        return output

    def drilled(self) -> dict:
        """What the fault drill observed."""
        assert self._then_drill is not None, "the drill runs when a collected test asks for the fault_drill fixture"
        self.wait_up()
        log = (self.folder / "drill.log").read_text() if (self.folder / "drill.log").exists() else ""
        assert self.drill_report.exists(), f"the fault drill did not finish: {log[-3000:]}"
        return json.loads(self.drill_report.read_text())

    def remove(self) -> None:
        """Stop every process, drop the databases and the Redis database, remove the folder."""
        self._removing.set()
        if self._then_drill is not None and self.up.poll() is not None:
            self._then_drill.join(timeout=1)  # a drill just starting is now in self.drill
        for process in (self.up, self.drill):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
        subprocess.run([sys.executable, "scripts/stack.py", "down"], env=self.env, cwd=ROOT, capture_output=True,
                       timeout=180)
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()
        admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for database in ("airflow", "mlflow", "mlflow_auth", "monitoring"):
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.prefix}_{database}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)


_production: ProductionStack | None = None


def _production_services() -> str | None:
    """Why the production topology cannot run here, if it cannot."""
    pg_address = PG_SERVER.rsplit("@", 1)[-1]
    if not (_reachable(pg_address) and _reachable(REDIS)):
        return f"needs PostgreSQL at {pg_address} and Redis at {REDIS}"
    return None


def pytest_collection_finish(session):
    """Start the production stack's ``up`` now if a collected test needs it."""
    global _production
    uses = [set(getattr(item, "fixturenames", ())) for item in session.items]
    if any("production_stack" in names for names in uses) and not session.config.option.collectonly \
            and _production_services() is None:
        _production = ProductionStack(drill=any("fault_drill" in names for names in uses))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    if _production is not None:
        _production.remove()


@pytest.fixture(scope="session")
def production_stack():
    """The stack up on the production topology, its first training run done: its environment and ``make up``'s
    output."""
    reason = _production_services()
    if reason:
        pytest.skip(reason)
    assert _production is not None, "the production stack starts when a collected test asks for it"
    return _production.env, _production.wait_up()


@pytest.fixture(scope="session")
def fault_drill(production_stack):
    """What the fault drill observed on the production stack (run right after its ``up``)."""
    return _production.drilled()
