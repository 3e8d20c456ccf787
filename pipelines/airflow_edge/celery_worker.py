"""The Celery workers' configuration (production topology): Airflow's default Celery config, plus the task
libraries imported once in each worker's main process before it forks its pool. Every task process is forked
from a pool process, so it inherits pandas, scikit-learn, MLflow, Great Expectations, Evidently and the steps
(``pipelines.airflow_edge.preload``) instead of importing them again: what the LocalExecutor gets from its
forkserver.

Set with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=pipelines.airflow_edge.celery_worker.CELERY_CONFIG``. Only a
worker imports the libraries (on Celery's ``worker_init`` signal); the scheduler, which reads the same config,
does not.
"""

from __future__ import annotations

import importlib
import logging

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

from pipelines.airflow_edge.preload import TASK_MODULES

CELERY_CONFIG = DEFAULT_CELERY_CONFIG

log = logging.getLogger(__name__)


@worker_init.connect
def import_task_modules(**_) -> None:
    """An optimisation only: a module that fails to import here is imported (or fails) in its task instead."""
    imported = 0
    for module in TASK_MODULES:
        try:
            importlib.import_module(module)
            imported += 1
        except Exception as exc:
            log.warning("not preloaded: %s (%s)", module, exc)
    log.info("imported %d of %d task modules before forking the pool", imported, len(TASK_MODULES))
