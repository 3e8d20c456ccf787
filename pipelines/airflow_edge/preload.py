"""What a training or monitoring task imports, loaded once by the process its task processes are forked from:
the LocalExecutor's forkserver (scripts/stack.py) and each Celery worker (``celery_worker.py`` here). Each task
then inherits them instead of importing them again (seconds per task on 2 cores)."""

TASK_MODULES = (
    "airflow.sdk", "airflow.sdk.execution_time.task_runner", "pandas", "pyarrow.parquet", "sklearn.ensemble",
    "sklearn.metrics", "sklearn.calibration", "mlflow", "mlflow.sklearn", "skops.io", "great_expectations",
    "dvc.repo", "matplotlib.pyplot", "httpx", "evidently", "evidently.presets",
    "pipelines.training_steps.pipeline", "pipelines.task_types", "pipelines.monitoring_tasks",
)
