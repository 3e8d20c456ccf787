"""The stack's settings: every environment variable the pipelines, the DAGs, the CLI, the Airflow plugin and
the stack launcher (``scripts/stack.py``) read, in one typed object. ``docs/operations.md`` lists them.

Each field names its variable (the names ``make up``, ``env.sh``, docker-compose and the docs use), so a bad
value is refused naming the variable an operator set. An empty variable counts as unset. The prediction
service's own variables (its model, workers, tokens, ...) are ``ServingSettings``
(``pipelines.serving.settings``): the service builds it, its clients read it there. Runtime state paths are
``StatePaths`` (``pipelines.config``), rooted at ``state_home``.

Outside these two modules, code reads the environment only through ``stack_settings()``
(``tests/unit/test_settings.py`` checks it). It is cached on the values of the variables it reads, so a
process (or a test's ``monkeypatch.setenv``) that changes one gets a fresh object on its next call, with
nothing to reset.

This module is imported by DAG files at parse time (through ``pipelines.config``): it imports nothing heavier
than pydantic-settings.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def comma_separated(cls, value: Any) -> Any:
    """A variable holding a comma-separated list ("a, b,,c") as a tuple of its non-empty items."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, validate_by_name=True,
                                      validate_by_alias=True, extra="forbid", frozen=True)

    # Where things are
    state_home: Path = Field(PROJECT_ROOT / ".state", validation_alias="MLOPS_HOME",
                             description="The folder of all runtime state (StatePaths).")
    include_dir: Path = Field(PROJECT_ROOT / "include", validation_alias="MLOPS_INCLUDE_DIR",
                              description="Model configs (models/) and their suites (expectations/).")
    monitoring_db_url: str | None = Field(
        None, validation_alias="MLOPS_MONITORING_DB_URL",
        description="The monitoring store (any SQLAlchemy URL); unset: SQLite under $MLOPS_HOME/monitoring.")
    prediction_log_url: str | None = Field(
        None, validation_alias="MLOPS_PREDICTION_LOG_URL",
        description="The prediction log (any SQLAlchemy URL); unset: SQLite under $MLOPS_HOME/serving.")

    # MLflow
    tracking_uri: str | None = Field(
        None, validation_alias="MLFLOW_TRACKING_URI",
        description="The tracking store and registry; unset: the stack's server when $MLOPS_HOME holds its "
                    "pipeline login, else SQLite under $MLOPS_HOME/mlflow.")
    tracking_username: str | None = Field(None, validation_alias="MLFLOW_TRACKING_USERNAME",
                                          description="MLflow's login; unset: the pipeline's, from the state folder.")
    mlflow_port: int = Field(5000, validation_alias="MLFLOW_PORT", description="The stack's MLflow server.")
    mlflow_ui_url: str | None = Field(
        None, validation_alias="MLOPS_MLFLOW_UI_URL",
        description="The MLflow UI as an operator's browser reaches it; unset: an http tracking URI, else "
                    "http://127.0.0.1:$MLFLOW_PORT.")
    mlflow_admin_password: SecretStr | None = Field(None, validation_alias="MLFLOW_AUTH_ADMIN_PASSWORD",
                                                    description="python -m pipelines.mlflow_auth: the admin's.")
    mlflow_pipeline_password: SecretStr | None = Field(
        None, validation_alias="MLFLOW_PIPELINE_PASSWORD",
        description="python -m pipelines.mlflow_auth users: the pipeline user's.")
    mlflow_serving_password: SecretStr | None = Field(
        None, validation_alias="MLFLOW_SERVING_PASSWORD",
        description="python -m pipelines.mlflow_auth users: the prediction service user's.")

    # Airflow's API server, as the CLI reaches it
    airflow_api_url: str | None = Field(None, validation_alias="AIRFLOW__API__BASE_URL",
                                        description="Unset: http://127.0.0.1:$AIRFLOW_PORT.")
    airflow_port: int = Field(8080, validation_alias="AIRFLOW_PORT")
    airflow_admin_password: SecretStr | None = Field(
        None, validation_alias="AIRFLOW_ADMIN_PASSWORD",
        description="The admin's password; unset: the one the stack generated at its first start.")

    # The prediction service, as its clients (the deploy task, the CLI, the UI's link) reach it
    serving_url: str | None = Field(
        None, validation_alias="MLOPS_SERVING_URL",
        description="Unset: a model config's serving.url, else http://127.0.0.1:$SERVING_PORT.")
    serving_port: int = Field(8000, validation_alias="SERVING_PORT")

    # Alerts (a model config's monitoring.alert_webhook / alert_emails win)
    alert_webhook: str | None = Field(None, validation_alias="MLOPS_ALERT_WEBHOOK")
    alert_emails: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="MLOPS_ALERT_EMAILS",
                                                               description="Comma-separated.")
    smtp_host: str | None = Field(None, validation_alias="SMTP_HOST", description="Unset: no alert e-mail.")
    smtp_port: int = Field(25, validation_alias="SMTP_PORT")
    smtp_from: str = Field("mlops-loop@localhost", validation_alias="SMTP_FROM")

    git_commit: str = Field("unknown", validation_alias="MLOPS_GIT_COMMIT",
                            description="The code version recorded on runs where git cannot tell it (a "
                                        "container without .git).")

    # The stack launcher (scripts/stack.py: `make up`, `make down`, `make status`)
    default_model: str = Field("flights_delay", validation_alias="MLOPS_MODEL",
                               description="The model the stack's service answers /invocations and /predict with.")
    topology: Literal["embedded", "production"] | None = Field(
        None, validation_alias="MLOPS_TOPOLOGY",
        description="Unset: the one the stack in $MLOPS_HOME was brought up with, else embedded.")
    pg_server: str = Field("postgresql+psycopg2://postgres@127.0.0.1:5432", validation_alias="MLOPS_PG_SERVER",
                           description="The production topology's PostgreSQL server.")
    pg_database_prefix: str = Field("mlops", validation_alias="MLOPS_PG_DATABASE_PREFIX",
                                    description="Its databases: <prefix>_airflow, <prefix>_mlflow, ...")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="MLOPS_REDIS_URL",
                           description="The production topology's Celery broker.")

    _comma_separated = field_validator("alert_emails", mode="before")(comma_separated)

    def airflow_url(self) -> str:
        """The stack's Airflow API server: ``$AIRFLOW__API__BASE_URL``, else ``http://127.0.0.1:$AIRFLOW_PORT``."""
        return (self.airflow_api_url or f"http://127.0.0.1:{self.airflow_port}").rstrip("/")

    def mlflow_server_url(self) -> str:
        """The stack's own MLflow server: ``http://127.0.0.1:$MLFLOW_PORT``."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    def prediction_service_url(self, configured: str | None = None) -> str:
        """The prediction service: ``$MLOPS_SERVING_URL``, else ``configured`` (a model config's
        ``serving.url``), else the stack's own service at ``http://127.0.0.1:$SERVING_PORT``."""
        return (self.serving_url or configured or f"http://127.0.0.1:{self.serving_port}").rstrip("/")


VARIABLES = tuple(field.validation_alias for field in StackSettings.model_fields.values())


def stack_settings() -> StackSettings:
    """The stack's settings as the environment holds them now."""
    return _settings_for(tuple(os.environ.get(name) for name in VARIABLES))


@functools.lru_cache(maxsize=4)
def _settings_for(values: tuple[str | None, ...]) -> StackSettings:
    # ``values`` is only the cache key: the settings source reads the same variables.
    return StackSettings()
