"""The Celery workers' configuration (production topology): Airflow's default Celery config, plus the task
libraries imported once in each worker's main process before it forks its pool. Every task process is forked
from a pool process, so it inherits pandas, scikit-learn, MLflow, Great Expectations, Evidently and the steps
(``pipelines.preload``) instead of importing them again: what the LocalExecutor gets from its forkserver.

Set with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=pipelines.celery_worker.CELERY_CONFIG``. Only a worker
imports the libraries (on Celery's ``worker_init`` signal); the scheduler, which reads the same config,
does not.
"""

from __future__ import annotations

import importlib
import logging

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

from pipelines.preload import TASK_MODULES

CELERY_CONFIG = DEFAULT_CELERY_CONFIG

log = logging.getLogger(__name__)


@worker_init.connect
def import_task_modules(**_) -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)
    log.info("imported %d task modules before forking the pool", len(TASK_MODULES))
