"""Continuous training: one ``train_<model>`` DAG per model config in include/models/.

Wiring only: a task per step of the training pipeline (``pipelines.training_steps.pipeline``), in its order
and with its inputs; what Airflow adds (assets, retries, mapping, short-circuits, the approval operator) is
here. The steps import their libraries when they run, so this file parses with nothing heavier than
airflow.sdk, pydantic and PyYAML.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from pipelines.airflow_edge import assets
from pipelines.airflow_edge.broken_config import stand_in_dag
from pipelines.airflow_edge.callbacks import failure_callback
from pipelines.config import ModelConfig, StatePaths, read_model_configs, training_dag_id
from pipelines.errors import InputError
from pipelines.training_steps.pipeline import Step, training_steps

DOC = """\
### Continuous training for `{name}`

{description}

A **{task}** model. **Steps**: ingest the landed files of the data interval → validate them with the Great
Expectations suite `{suite}` and check that the target fits the task (a failing batch is quarantined
and the run stops here) → version the training snapshot with DVC → {split} split → train {n_candidates}
hyperparameter candidates in parallel (MLflow child runs) → evaluate the best on the holdout against the
current champion → **gate** → **infra validation**
(the candidate, served by a staging instance of the prediction service, must answer its input example and
200 holdout rows with its evaluated predictions) → register the version and move the `champion` alias
(the former champion keeps `previous`) → the prediction service loads it. {approval}

**A rejected candidate** ends the run green with `register` and `deploy` *skipped*: the reasons are in
the `gate` (or `infra_validate`) task log and on the MLflow run (`gate/decision.json`, tag
`infra_validation_reason`). Every run's verdict, one line (the gate's failed checks, the infra validation
error, the message of a task that failed), is on the model's page (*Model* tab) and printed by
`mlops-loop train`.

{landing}**Trigger with config** to train on another interval: `data_interval_start` / `data_interval_end`
(`[start, end)`, dates) and a `reason` that is stored on the model version.

**Unchanged inputs are not recomputed**: a step whose input data, config and code are the same as in an
earlier run reuses that run's outputs (a candidate already trained is not fitted again); its log and the
MLflow run's `cache.<step>` tags say so. Tick `force` to recompute every step.

**Bad data fails at once**: a file that cannot be read, a batch that fails validation or a target that does
not fit the task fails its task with no retry; the message names the file or batch, the column and why.
"""

_LANDING_DOC = """\
**Trains when data lands**: landing files for this model (`mlops-loop land`, `make init`) updates its Asset,
and a run starts on the days that were landed.

"""

_APPROVAL_DOC = """\
**Approval required**: after infra validation the run waits in `approve` for a person's answer (Airflow UI,
*Required Actions*), shown the gate's decision and the metrics against the champion. Approve registers and
deploys the candidate; Reject, or no answer within {hours:g} h, skips `register` and `deploy`, with the answer
and its reason on the MLflow run (tags `approval`, `approval_by`, `approval_at`, `approval_reason`). While a run
waits, later runs of this DAG wait too (one run at a time); if the champion changes meanwhile, `register`
refuses the candidate (it was judged against another champion)."""


def _ctx(cfg: ModelConfig):
    from pipelines.run_context import run_context_from

    return run_context_from(get_current_context(), cfg)


@contextmanager
def _bad_input_fails_at_once() -> Iterator[None]:
    """Bad landed data or a bad interval is not transient: fail the task for good instead of retrying it."""
    try:
        yield
    except InputError as exc:
        raise AirflowFailException(str(exc)) from exc


def _on_failure(cfg: ModelConfig):
    alert = failure_callback(cfg)

    def callback(context) -> None:
        """A task that failed for good records the run's verdict (where and why), raises a run_failed alert,
        and ends the run's parent MLflow run as FAILED (not left RUNNING). Each whatever the others do."""
        for part in (lambda c: _record_failure(cfg, c), alert, _close_mlflow_run_on_failure):
            try:
                part(context)
            except Exception:
                logging.getLogger(__name__).exception("the failure callback of train_%s", cfg.name)

    return callback


def _record_failure(cfg: ModelConfig, context) -> None:
    from pipelines.training_outcomes import FAILED, RunVerdict, record_verdict

    ti, error = context["ti"], context.get("exception")
    map_index = getattr(ti, "map_index", -1)
    task = f"{ti.task_id}[{map_index}]" if map_index is not None and map_index >= 0 else ti.task_id
    # Bad input is failed for good with a message written for the operator; anything else is named by its type.
    message = str(error) if isinstance(error, (str, InputError, AirflowFailException)) \
        else f"{type(error).__name__}: {error}" if error is not None else ""
    record_verdict(StatePaths.from_env(), cfg.name, RunVerdict(ti.dag_id, ti.run_id, task, FAILED, message))


def _close_mlflow_run_on_failure(context) -> None:
    from pipelines.training_steps.run_records import mark_run_failed

    ti = context["ti"]
    if ti.task_id in ("ingest", "validate", "version", "split"):
        return
    mark_run_failed(ti.xcom_pull(task_ids="split"), f"{ti.task_id} failed: {context.get('exception')}")


def _task_options(cfg: ModelConfig, landed: Asset) -> dict[str, dict]:
    """What a step's task adds to the DAG's defaults."""
    return {
        "ingest": {"inlets": [landed]},
        "validate": {"retries": 0},
        "version": {"outlets": [Asset(assets.training_snapshot(cfg))]},
        "train": {"map_index_template": "{{ task.op_kwargs['hyperparameters'] }}",
                  "max_active_tis_per_dagrun": cfg.search.max_parallel},
        # See deployment.deploy: a retry would report the restored aliases as deployed.
        "deploy": {"retries": 0, "outlets": [Asset(assets.served_model(cfg))]},
    }


# Steps whose bad input (landed data, an interval, a champion that moved since the gate) fails them for good.
_FAIL_AT_ONCE = {"ingest", "validate", "version", "split", "train", "register"}


def _result_key(step: Step) -> str:
    """The XCom key of a step's result when its task returns something else: a check returns whether the run
    goes on, the approval operator the option chosen."""
    return "approval" if step.run is None else "decision"


def _step_task(cfg: ModelConfig, step: Step, pulled: list[Step], pushed: bool, options: dict):
    """The task of a step: the payloads of its inputs in (``inputs``, and ``pulled`` from XCom by key), the
    payload of its result out. A check's task returns whether the run goes on."""

    def run(inputs: dict, hyperparameters: dict | None = None):
        from pipelines.training_steps.pipeline import from_payload, run_step

        ti = get_current_context()["ti"]
        payloads = {**inputs, **{p.name: ti.xcom_pull(task_ids=p.name, key=_result_key(p)) for p in pulled}}
        candidate = () if hyperparameters is None else (hyperparameters,)
        with _bad_input_fails_at_once() if step.name in _FAIL_AT_ONCE else nullcontext():
            payload = run_step(cfg, _ctx(cfg), StatePaths.from_env(), step, payloads, *candidate)
        if step.proceeds is None:
            return payload
        if pushed:
            ti.xcom_push(key=_result_key(step), value=payload)
        return step.proceeds(from_payload(step, payload))

    if step.proceeds:
        return task.short_circuit(task_id=step.name, ignore_downstream_trigger_rules=True, **options)(run)
    # Each key of the result is its own XCom too, as the Airflow UI lists them.
    return task(task_id=step.name, multiple_outputs=True, **options)(run)


def _add_steps(cfg: ModelConfig, steps: tuple[Step, ...], options: dict[str, dict]) -> None:
    """A task per step, each taking its inputs' results and waiting for the check before it. A check's result
    and the approval are pulled from XCom by the steps that take them (no edge of their own)."""
    by_name = {s.name: s for s in steps}
    taken = {name for s in steps for name in s.inputs}
    tasks = {}
    for step in steps:
        if step.run is None:
            from pipelines.airflow_edge.approval_operator import CandidateApproval

            tasks[step.name] = CandidateApproval(task_id=step.name, cfg=cfg)
        else:
            pulled = [by_name[n] for n in step.inputs if by_name[n].proceeds or by_name[n].run is None]
            made = _step_task(cfg, step, pulled, step.name in taken, options.get(step.name, {}))
            inputs = {n: tasks[n] for n in step.inputs if by_name[n] not in pulled}
            tasks[step.name] = made.partial(inputs=inputs).expand(hyperparameters=cfg.search.candidates()) \
                if step.per_candidate else made(inputs=inputs)
        if step.after:
            tasks[step.after] >> tasks[step.name]


def _schedule(cfg: ModelConfig, landed: Asset):
    """The model's cron, its landed data (``train_on_landing``), either, or None (manual runs only)."""
    cron = CronDataIntervalTimetable(cfg.schedule, timezone="UTC") if cfg.schedule else None
    if not cfg.train_on_landing:
        return cron
    return AssetOrTimeSchedule(timetable=cron, assets=landed) if cron else [landed]


def build_training_dag(cfg: ModelConfig) -> DAG:
    interval = cfg.default_interval
    landed = Asset(assets.landed_data(cfg))
    with DAG(
        dag_id=training_dag_id(cfg.name),
        description=f"Continuous training of {cfg.model_name}",
        doc_md=DOC.format(name=cfg.name, description=cfg.description.strip(), task=cfg.task,
                          suite=cfg.expectation_suite_path.relative_to(cfg.expectation_suite_path.parents[1]),
                          split="time-based" if cfg.split_method == "time" else "seeded random",
                          n_candidates=len(cfg.search.candidates()),
                          landing=_LANDING_DOC if cfg.train_on_landing else "",
                          approval=_APPROVAL_DOC.format(hours=cfg.serving.approval_timeout_hours)
                          if cfg.serving.approval == "required" else ""),
        schedule=_schedule(cfg, landed),
        start_date=cfg.start_datetime,
        catchup=False,
        max_active_runs=1,
        tags=["training", cfg.name, *cfg.tags],
        default_args={"owner": cfg.owner, "retries": 2, "retry_delay": timedelta(seconds=20),
                      "retry_exponential_backoff": True, "execution_timeout": timedelta(hours=2),
                      "on_failure_callback": _on_failure(cfg)},
        params={
            "data_interval_start": Param(str(interval[0]) if interval else None, type=["null", "string"],
                                         format="date", title="Interval start (inclusive)",
                                         description="First day of landed data to ingest, YYYY-MM-DD."),
            "data_interval_end": Param(str(interval[1]) if interval else None, type=["null", "string"],
                                       format="date", title="Interval end (exclusive)",
                                       description="Day after the last day to ingest, YYYY-MM-DD."),
            "reason": Param(None, type=["null", "string"], title="Reason",
                            description="Why this run was started; stored on the model version."),
            "force": Param(False, type="boolean", title="Recompute every step",
                           description="Steps whose inputs (data, config, code) are unchanged reuse their "
                                       "earlier outputs; tick to compute them all again."),
            "gate_drill_shuffle_labels": Param(False, type="boolean", title="Gate fire drill",
                                               description="Train on shuffled labels to prove that the "
                                                           "gate rejects a bad model."),
        },
    ) as dag:
        _add_steps(cfg, training_steps(cfg), _task_options(cfg, landed))
    return dag


for _entry in read_model_configs():
    globals()[training_dag_id(_entry.name)] = build_training_dag(_entry.config) if _entry.config \
        else stand_in_dag(training_dag_id(_entry.name), _entry)
