"""Where the pipeline meets Airflow: what the DAG files, the Celery workers and the command line need of
Airflow, and nothing the steps need.

- ``approval_operator``: the training DAG's approval task (the standard provider's ``ApprovalOperator``);
- ``broken_config``: the stand-in DAG of a model config that does not load;
- ``callbacks``: the DAGs' task callbacks (a task that failed for good raises an alert);
- ``assets``: the URIs of a model's Airflow Assets;
- ``airflow_api``: a client of Airflow's REST API (trigger a DAG, follow its run, record an Asset event);
- ``stack_runs``: a replay's windows run by the model's DAGs on the stack, through that client;
- ``celery_worker`` and ``preload``: the task libraries a Celery worker or the LocalExecutor's forkserver
  imports once before forking its task processes.

The rule (``tests/unit/test_airflow_edge.py`` guards it): no module of ``pipelines`` outside this package
imports ``airflow`` or ``celery``, at the top or inside a function, and none imports this package, except
``pipelines/cli.py``. The command line is a shell like ``dags/``, ``plugins/`` and ``scripts/``: its
``train``, ``land`` and ``replay`` commands drive the stack's Airflow through ``airflow_api``. So the steps
run the same in a DAG, in a test and in a benchmark. This file imports nothing, so the command line importing
``airflow_api`` or ``assets`` (which reach Airflow over HTTP) does not import Airflow.
"""
