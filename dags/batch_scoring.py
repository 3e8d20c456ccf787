"""Batch scoring: one ``score_<model>`` DAG per model config; the champion scores a landed interval.

Wiring only; the step lives in ``pipelines.batch_scoring``.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, get_current_context, task

from pipelines.airflow_edge.broken_config import stand_in_dag
from pipelines.airflow_edge.callbacks import failure_callback
from pipelines.config import ModelConfig, StatePaths, read_model_configs, scoring_dag_id

DOC = """\
### Batch scoring for `{name}`

Scores every example landed in `[data_interval_start, data_interval_end)` with `{model}@champion` and
writes `predictions/{name}/<start>_<end>.parquet` under the state folder (example id, event time, slice
columns, score, model version, scoring time). The training batches are not touched.
"""


def build_scoring_dag(cfg: ModelConfig) -> DAG:
    with DAG(
        dag_id=scoring_dag_id(cfg.name),
        description=f"Batch scoring with {cfg.model_name}@champion",
        doc_md=DOC.format(name=cfg.name, model=cfg.model_name),
        schedule=None,
        start_date=cfg.start_datetime,
        catchup=False,
        tags=["scoring", cfg.name],
        default_args={"owner": cfg.owner, "retries": 2, "retry_delay": timedelta(seconds=20),
                      "on_failure_callback": failure_callback(cfg)},
        params={
            "data_interval_start": Param(None, type=["null", "string"], format="date", title="Interval start",
                                         description="First landed day to score, YYYY-MM-DD."),
            "data_interval_end": Param(None, type=["null", "string"], format="date", title="Interval end",
                                       description="Day after the last day to score, YYYY-MM-DD."),
        },
    ) as dag:

        @task
        def score() -> dict:
            from pipelines.batch_scoring import score_interval
            from pipelines.run_context import run_context_from

            ctx = run_context_from(get_current_context(), cfg)
            return score_interval(cfg, StatePaths.from_env(), ctx.start, ctx.end)

        score()
    return dag


for _entry in read_model_configs():
    globals()[scoring_dag_id(_entry.name)] = build_scoring_dag(_entry.config) if _entry.config \
        else stand_in_dag(scoring_dag_id(_entry.name), _entry)
