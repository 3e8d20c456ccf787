"""The DAGs' task callbacks: what a task that failed for good tells the model's alert channels."""

from __future__ import annotations

from pipelines.alerts import alert
from pipelines.config import ModelConfig


def failure_callback(cfg: ModelConfig):
    """An Airflow ``on_failure_callback``: a task that failed for good raises a ``run_failed`` alert."""

    def on_failure(context) -> None:
        ti = context.get("task_instance") or context.get("ti")
        alert(cfg, "run_failed", f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} failed in run "
              f"{context.get('run_id')}: {context.get('exception')}",
              {"dag_id": getattr(ti, "dag_id", None), "task_id": getattr(ti, "task_id", None),
               "run_id": context.get("run_id")})

    return on_failure
