"""Continuous monitoring: one ``monitor_<model>`` DAG per model config in include/models/.

Wiring only; the steps live in ``pipelines.monitoring_tasks`` (I/O) and ``pipelines.monitoring`` (pure).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, Param, get_current_context, task

from pipelines.airflow_edge import assets
from pipelines.airflow_edge.broken_config import stand_in_dag
from pipelines.airflow_edge.callbacks import failure_callback
from pipelines.config import ModelConfig, StatePaths, monitoring_dag_id, read_model_configs, training_dag_id

DOC = """\
### Continuous monitoring for `{name}`

Judges one window of the prediction service's traffic ({window} day(s); a scheduled run judges its data
interval, a manual run the `window_start` / `window_end` you give):

- **validate_window**: the window's landed data against the expectation suite `include/{suite}`. A window
  whose data failed it is `invalid_data`, never ok, and starts no retrain.
- **measure**: reads the window from the prediction log and the champion's exact training snapshot (by its
  DVC data hash); computes Evidently's per-column drift tests against it (and the drift of the champion's
  scores), judged with the limits calibrated on the champion's own history; missing-value shares; the
  champion's metric estimated from its scores before the labels land (binary); and, for rows whose outcome
  has landed in the `{labels}` feed, the task type's realized metrics, overall and per slice (rows still
  waiting for labels are counted). Late labels update the windows before it.
- **decide**: each signal's rule (drift, performance against the champion's holdout value and its noise,
  estimated performance, data quality), then the retrain policy of the model config (`monitoring.retrain`):
  {streak} breaching window(s) in a row, a cooldown of {cooldown} days, hysteresis at {clear:.0%} of each
  limit. The window's row goes to the `monitoring_metrics` table and its numbers to the champion's MLflow
  run; alerts go to the log (and webhook / e-mail when configured).
- **report**: Evidently's drift and data summary report (HTML, from a sample), saved under
  `reports/{name}/monitoring/` and logged to the champion's MLflow run.
- **retrain**: when the policy says so, starts `train_{name}` on the model's history up to the window's end,
  with the reason in its conf.
- **compare_challenger**: when a shadow or canary challenger is staged, the window's labelled rows of both
  models, added to an anytime-valid confidence sequence of the challenger's improvement in {challenger_metric}
  (`serving.challenger`); the result (rows, interval, decision, rows still needed) goes to the window's
  details and the model page. With `serving.challenger.act: propose` (now `{act}`), a decision starts
  `promote_{name}` with it.
"""


def _mctx(cfg: ModelConfig):
    from pipelines.monitoring_tasks import monitor_context_from

    return monitor_context_from(get_current_context(), cfg)


def build_monitoring_dag(cfg: ModelConfig) -> DAG:
    policy = cfg.monitoring
    with DAG(
        dag_id=monitoring_dag_id(cfg.name),
        description=f"Drift, realized performance and retraining of {cfg.model_name}",
        doc_md=DOC.format(name=cfg.name, window=policy.window_days, suite=cfg.expectation_suite,
                          labels=policy.labels_feed, challenger_metric=cfg.challenger_metric,
                          act=cfg.serving.challenger.act, streak=policy.retrain.consecutive_windows,
                          cooldown=policy.retrain.cooldown_days, clear=policy.retrain.clear_ratio),
        schedule=CronDataIntervalTimetable(policy.schedule, timezone="UTC") if policy.schedule else None,
        start_date=cfg.start_datetime,
        catchup=False,
        max_active_runs=1,  # windows are judged in order: each decision reads the ones before it
        render_template_as_native_obj=True,
        tags=["monitoring", cfg.name, *cfg.tags],
        default_args={"owner": cfg.owner, "retries": 2, "retry_delay": timedelta(seconds=20),
                      "execution_timeout": timedelta(hours=1), "on_failure_callback": failure_callback(cfg)},
        params={
            "window_start": Param(None, type=["null", "string"], format="date", title="Window start",
                                  description="First day of traffic to judge (event time), YYYY-MM-DD."),
            "window_end": Param(None, type=["null", "string"], format="date", title="Window end (exclusive)",
                                description="Empty: the run's logical date."),
            "reason": Param(None, type=["null", "string"], title="Reason", description="Why this run was started."),
        },
    ) as dag:
        state = StatePaths.from_env

        @task
        def validate_window() -> dict:
            from pipelines import monitoring_tasks as m

            return m.validate_window(cfg, _mctx(cfg), state())

        @task(inlets=[Asset(assets.served_model(cfg))])  # the model whose traffic it judges
        def measure() -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from pipelines import monitoring_tasks as m

            try:
                return m.measure(cfg, _mctx(cfg), state())
            except LookupError as exc:  # no champion yet: nothing to judge, not a failure
                raise AirflowSkipException(str(exc)) from exc

        @task(outlets=[Asset(assets.monitored_window(cfg))])
        def decide(measured: dict, validation: dict) -> dict:
            from pipelines import monitoring_tasks as m

            return m.decide(cfg, _mctx(cfg), state(), measured, validation)

        @task
        def report(measured: dict) -> dict:
            from pipelines import monitoring_tasks as m

            return m.report(cfg, _mctx(cfg), state(), measured)

        @task.short_circuit
        def retrain_needed(decision: dict) -> bool:
            return bool(decision["retrain"])

        @task
        def compare_challenger() -> dict:
            from pipelines import monitoring_tasks as m

            mctx = _mctx(cfg)
            compared = m.compare_challenger(cfg, mctx, state())
            m.record_challenger(cfg, mctx, compared)
            return compared

        @task.short_circuit
        def challenger_decided(compared: dict) -> bool:
            return bool(compared.get("propose"))

        measured = measure()
        decision = decide(measured, validate_window())
        decision >> report(measured)
        retrain_needed(decision) >> TriggerDagRunOperator(
            task_id="retrain",
            trigger_dag_id=training_dag_id(cfg.name),
            trigger_run_id="{{ ti.xcom_pull(task_ids='decide')['trigger_run_id'] }}",
            conf="{{ ti.xcom_pull(task_ids='decide')['conf'] }}",
            skip_when_already_exists=True,  # a retried task never starts a second training run
            retries=1,
        )
        compared = compare_challenger()
        decision >> compared
        challenger_decided(compared) >> TriggerDagRunOperator(
            task_id="propose_release",
            trigger_dag_id=f"promote_{cfg.name}",
            trigger_run_id="{{ ti.xcom_pull(task_ids='compare_challenger')['propose_run_id'] }}",
            conf="{{ ti.xcom_pull(task_ids='compare_challenger')['propose_conf'] }}",
            skip_when_already_exists=True,
            retries=1,
        )
    return dag


for _entry in read_model_configs():
    globals()[monitoring_dag_id(_entry.name)] = build_monitoring_dag(_entry.config) if _entry.config \
        else stand_in_dag(monitoring_dag_id(_entry.name), _entry)
