"""The operator pages' HTML: Jinja2 templates from ``templates/``, every value escaped."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import quote

TEMPLATES = Path(__file__).parent / "templates"


def airflow_dag_url(dag_id: str) -> str:
    """A DAG's page in the Airflow UI (same origin as the operator pages)."""
    return f"/dags/{quote(dag_id, safe='')}"


def airflow_run_url(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


@cache
def _environment():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                              trim_blocks=True, lstrip_blocks=True)
    from pipelines.tracking import mlflow_run_url

    environment.globals.update(airflow_dag_url=airflow_dag_url, airflow_run_url=airflow_run_url,
                               mlflow_run_url=mlflow_run_url)
    return environment


def render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)
