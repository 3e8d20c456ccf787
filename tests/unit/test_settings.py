"""The stack's settings: every environment variable the code reads, in one typed object read through one
accessor (``pipelines.settings.stack_settings``); nothing else in pipelines/, dags/ or plugins/ reads the
environment, and docs/operations.md lists every variable."""

import ast
import re
from pathlib import Path

import pydantic
import pytest

from pipelines.serving.settings import ServingSettings
from pipelines.settings import PROJECT_ROOT, VARIABLES, StackSettings, stack_settings

SETTINGS_MODULES = {"pipelines/settings.py", "pipelines/serving/settings.py"}
# Where code may write the environment, and why: none of these values is a setting of ours.
ENVIRONMENT_WRITERS = {
    "pipelines/cli.py": "MLFLOW_HTTP_REQUEST_*: MLflow's client gives up at once when a person waits",
    "pipelines/tracking.py": "MLFLOW_TRACKING_USERNAME/PASSWORD: MLflow reads a login from the environment only",
    "pipelines/validation.py": "GX_ANALYTICS_ENABLED: Great Expectations reads it at import",
    "pipelines/serving/__main__.py": "the command's options, to the uvicorn workers' ServingSettings",
}
WRITER_METHODS = ("update", "setdefault")


def environment_uses(source: str) -> tuple[list[int], list[int]]:
    """The lines of ``source`` that read the environment, and those that write it (``os.environ[k] = v``,
    ``del os.environ[k]``, ``os.environ.update(...)``, ``os.environ.setdefault(...)``)."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    reads, writes = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os" \
                and {alias.name for alias in node.names} & {"environ", "environb", "getenv", "getenvb"}:
            reads.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
            reads.append(node.lineno)  # os's, imported under its own name (``environ.get``)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in ("getenv", "getenvb"):
                reads.append(node.lineno)
            elif node.attr in ("environ", "environb"):
                parent = parents[node]
                method_call = isinstance(parent, ast.Attribute) and parent.attr in WRITER_METHODS \
                    and isinstance(parents[parent], ast.Call) and parents[parent].func is parent
                item_write = isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store | ast.Del)
                (writes if method_call or item_write else reads).append(node.lineno)
    return sorted(reads), sorted(writes)


def test_the_check_finds_every_kind_of_read_and_tells_writes_apart():
    source = """
import os
from os import getenv
a = os.environ.get("A")
b = os.getenv("B")
c = os.environ["C"]
d = dict(os.environ)
e = "E" in os.environ
f = environ.get("F")
os.environ["G"] = "1"
del os.environ["G"]
os.environ.update(H="1")
os.environ.setdefault("I", "1")
"""
    reads, writes = environment_uses(source)
    assert reads == [3, 4, 5, 6, 7, 8, 9] and writes == [10, 11, 12, 13]


def _sources():
    for folder in ("pipelines", "dags", "plugins"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            yield path.relative_to(PROJECT_ROOT).as_posix(), path.read_text()


def test_only_the_settings_modules_read_the_environment():
    reads = {name: lines for name, source in _sources() if name not in SETTINGS_MODULES
             for lines in [environment_uses(source)[0]] if lines}
    assert reads == {}, "read the environment through pipelines.settings.stack_settings(), not os.environ"


def test_only_the_listed_modules_write_the_environment():
    writers = {name for name, source in _sources() if environment_uses(source)[1]}
    assert writers == set(ENVIRONMENT_WRITERS)


@pytest.fixture
def clean_environment(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults(clean_environment):
    settings = stack_settings()
    assert (settings.state_home, settings.include_dir) == (PROJECT_ROOT / ".state", PROJECT_ROOT / "include")
    assert settings.tracking_uri is None and settings.mlflow_port == 5000
    assert settings.airflow_url() == "http://127.0.0.1:8080" and settings.airflow_admin_password is None
    assert settings.prediction_service_url() == "http://127.0.0.1:8000"
    assert (settings.alert_webhook, settings.alert_emails, settings.smtp_host, settings.smtp_port,
            settings.smtp_from) == (None, (), None, 25, "mlops-loop@localhost")
    assert settings.git_commit == "unknown"


def test_every_environment_variable_keeps_its_name(clean_environment, monkeypatch):
    values = {"MLOPS_HOME": "/srv/state", "MLOPS_INCLUDE_DIR": "/srv/include",
              "MLOPS_MONITORING_DB_URL": "postgresql://m", "MLOPS_PREDICTION_LOG_URL": "postgresql://p",
              "MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_TRACKING_USERNAME": "pipeline",
              "MLFLOW_PORT": "5001", "MLOPS_MLFLOW_UI_URL": "https://mlflow.example",
              "MLFLOW_AUTH_ADMIN_PASSWORD": "a", "MLFLOW_PIPELINE_PASSWORD": "p", "MLFLOW_SERVING_PASSWORD": "s",
              "AIRFLOW__API__BASE_URL": "http://airflow:8080/", "AIRFLOW_PORT": "8081",
              "AIRFLOW_ADMIN_PASSWORD": "pw", "MLOPS_SERVING_URL": "http://serving:8000/", "SERVING_PORT": "8001",
              "MLOPS_ALERT_WEBHOOK": "http://hook", "MLOPS_ALERT_EMAILS": "a@x, b@x,", "SMTP_HOST": "smtp",
              "SMTP_PORT": "587", "SMTP_FROM": "me@x", "MLOPS_GIT_COMMIT": "abc", "MLOPS_MODEL": "m",
              "MLOPS_TOPOLOGY": "production", "MLOPS_PG_SERVER": "postgresql://pg",
              "MLOPS_PG_DATABASE_PREFIX": "p", "MLOPS_REDIS_URL": "redis://r"}
    assert set(values) == set(VARIABLES)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = stack_settings()
    secrets = {"mlflow_admin_password", "mlflow_pipeline_password", "mlflow_serving_password",
               "airflow_admin_password"}
    assert {name: getattr(settings, name).get_secret_value() for name in secrets} == {
        "mlflow_admin_password": "a", "mlflow_pipeline_password": "p", "mlflow_serving_password": "s",
        "airflow_admin_password": "pw"}
    assert "pw" not in repr(settings)
    assert settings.model_dump(exclude=secrets) == {
        "state_home": Path("/srv/state"), "include_dir": Path("/srv/include"),
        "monitoring_db_url": "postgresql://m", "prediction_log_url": "postgresql://p",
        "tracking_uri": "http://mlflow:5000", "tracking_username": "pipeline", "mlflow_port": 5001,
        "mlflow_ui_url": "https://mlflow.example", "airflow_api_url": "http://airflow:8080/", "airflow_port": 8081,
        "serving_url": "http://serving:8000/", "serving_port": 8001, "alert_webhook": "http://hook",
        "alert_emails": ("a@x", "b@x"), "smtp_host": "smtp", "smtp_port": 587, "smtp_from": "me@x",
        "git_commit": "abc", "default_model": "m", "topology": "production", "pg_server": "postgresql://pg",
        "pg_database_prefix": "p", "redis_url": "redis://r"}
    assert settings.airflow_url() == "http://airflow:8080" and settings.prediction_service_url() == "http://serving:8000"


def test_an_empty_variable_is_unset(clean_environment, monkeypatch):
    for name in ("MLOPS_HOME", "MLOPS_SERVING_URL", "SMTP_PORT", "AIRFLOW_ADMIN_PASSWORD"):
        monkeypatch.setenv(name, "")
    settings = stack_settings()
    assert settings.state_home == PROJECT_ROOT / ".state" and settings.prediction_service_url() == \
        "http://127.0.0.1:8000" and settings.smtp_port == 25 and settings.airflow_admin_password is None


@pytest.mark.parametrize("name,value", [("SMTP_PORT", "smtp"), ("SERVING_PORT", "80a"),
                                        ("MLOPS_TOPOLOGY", "cloud")])
def test_a_bad_value_is_refused_naming_the_variable(clean_environment, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError, match=name):
        stack_settings()


def test_a_changed_environment_is_read_at_the_next_call(clean_environment, monkeypatch):
    first = stack_settings()
    assert stack_settings() is first  # unchanged: the same object
    monkeypatch.setenv("SERVING_PORT", "9100")
    assert stack_settings().prediction_service_url() == "http://127.0.0.1:9100"
    monkeypatch.delenv("SERVING_PORT")
    assert stack_settings().prediction_service_url() == "http://127.0.0.1:8000"


def test_the_prediction_service_is_the_variable_then_the_model_config_then_the_stacks_own(clean_environment,
                                                                                          monkeypatch):
    from pipelines.config import load_model_config
    from pipelines.deployment import serving_url

    cfg = load_model_config("flights_delay")
    assert cfg.serving.url is None and serving_url(cfg) == "http://127.0.0.1:8000"
    monkeypatch.setenv("SERVING_PORT", "8200")
    assert serving_url(cfg) == "http://127.0.0.1:8200"
    elsewhere = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"url": "http://svc:9/"})})
    assert serving_url(elsewhere) == "http://svc:9"
    monkeypatch.setenv("MLOPS_SERVING_URL", "http://serving:8000")
    assert serving_url(elsewhere) == serving_url(cfg) == "http://serving:8000"


def test_the_service_settings_come_from_the_same_environment(monkeypatch):
    monkeypatch.setenv("MLOPS_SERVING_ADMIN_TOKEN", "t0ken")
    monkeypatch.setenv("MLOPS_SERVING_WORKERS", "3")
    serving = ServingSettings()
    assert serving.admin_token.get_secret_value() == "t0ken" and serving.workers == 3


def test_state_paths_follow_mlops_home(monkeypatch, tmp_path):
    from pipelines.config import StatePaths

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    assert StatePaths.from_env().root == tmp_path / "state"


def test_the_operations_guide_lists_every_variable():
    guide = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    table = re.search(r"^### Settings\n(.*?)(?=^#)", guide, re.MULTILINE | re.DOTALL).group(1)
    listed = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", table, re.MULTILINE))
    fields = {**StackSettings.model_fields, **ServingSettings.model_fields}
    assert listed == {field.validation_alias for field in fields.values()}


def test_the_mlflow_link_and_the_status_command_follow_the_stacks_ports_and_urls(clean_environment, monkeypatch,
                                                                                  tmp_path):
    import httpx

    from pipelines import cli
    from pipelines.tracking import mlflow_ui_url

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))  # no stack login there: a SQLite tracking store
    monkeypatch.setenv("MLFLOW_PORT", "15000")
    assert mlflow_ui_url() == "http://127.0.0.1:15000"
    monkeypatch.setenv("MLOPS_MLFLOW_UI_URL", "https://mlflow.example/")
    assert mlflow_ui_url() == "https://mlflow.example"

    asked = []

    def unreachable(url, **_):
        asked.append(url)
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(httpx, "get", unreachable)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.internal:9090/")
    monkeypatch.setenv("SERVING_PORT", "18000")
    assert cli.status() == 1  # every service down
    assert asked == ["http://airflow.internal:9090/api/v2/monitor/health", "http://127.0.0.1:15000/health",
                     "http://127.0.0.1:18000/health"]
