"""A training task that fails for good records its run's verdict through the DAG's failure callback: the
task, and the error's message on one line, which ``mlops-loop train`` prints for the run it followed."""

from datetime import date
from types import SimpleNamespace

import pytest

MODEL = "flights_delay"
DAG = f"train_{MODEL}"


@pytest.fixture()
def state(tmp_path, monkeypatch):
    from pipelines.config import StatePaths

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    return StatePaths.from_env()


def _fail(dagbag, task_id: str, run_id: str, error: BaseException, map_index: int = -1) -> None:
    """What Airflow does when ``task_id`` of the training DAG fails for good: run its failure callbacks."""
    task = dagbag.dags[DAG].get_task(task_id)
    ti = SimpleNamespace(dag_id=DAG, run_id=run_id, task_id=task_id, map_index=map_index,
                         xcom_pull=lambda **_: None)
    callbacks = task.on_failure_callback
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        callback({"ti": ti, "task_instance": ti, "run_id": run_id, "exception": error})


def _said(run_id: str, capsys, **tasks) -> str:
    from pipelines.cli import report_runs

    assert report_runs({DAG: {"dag_run_id": run_id, "state": "failed", "tasks": tasks}}) == 1
    return capsys.readouterr().out.strip()


def test_an_ingest_that_fails_records_its_message(dagbag, state, flights_config, capsys):
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.errors import InputError
    from pipelines.run_context import RunContext
    from pipelines.training_steps.data import ingest

    ctx = RunContext(DAG, "manual__ingest", date(2013, 1, 1), date(2013, 1, 8))
    with pytest.raises(InputError) as refused:  # nothing landed
        ingest(flights_config, ctx, state)
    _fail(dagbag, "ingest", ctx.run_id, AirflowFailException(str(refused.value)))

    landing = state.landing(flights_config.landing_name, "flights")
    assert _said(ctx.run_id, capsys, ingest="failed", validate="upstream_failed") == (
        f"{DAG}: run manual__ingest FAILED at ingest: no landed files for feed 'flights' in [2013-01-01, 2013-01-08) "
        f"under {landing} (expected names like YYYY-MM-DD.csv or YYYY-MM-DD.parquet)")


def test_a_batch_that_fails_validation_records_every_failed_expectation_on_one_line(dagbag, state, capsys):
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.validation import DataValidationError, ExpectationOutcome, ValidationOutcome

    outcome = ValidationOutcome("flights_delay", False, 12, [
        ExpectationOutcome("expect_column_values_to_be_in_set", "origin", False, "50 unexpected rows", {}),
        ExpectationOutcome("row_volume", None, False, "150 rows per day, below 25%", {})])
    error = DataValidationError(outcome, state.root / "report.html", "the batch of 2013-03-01..2013-03-07")
    assert "\n" in str(error)
    _fail(dagbag, "validate", "manual__validate", AirflowFailException(str(error)))

    assert _said("manual__validate", capsys, ingest="success", validate="failed") == (
        f"{DAG}: run manual__validate FAILED at validate: the batch of 2013-03-01..2013-03-07: 2 of 12 expectations "
        "of suite 'flights_delay' failed: - expect_column_values_to_be_in_set on 'origin': observed 50 unexpected "
        f"rows - row_volume: observed 150 rows per day, below 25% report: {state.root / 'report.html'}")


def test_any_other_error_is_named_by_its_type_and_a_mapped_task_by_its_index(dagbag, state, capsys):
    _fail(dagbag, "train", "manual__train", MemoryError("cannot allocate 8 GiB"), map_index=2)
    assert _said("manual__train", capsys, **{"train[2]": "failed", "evaluate": "upstream_failed"}) == (
        f"{DAG}: run manual__train FAILED at train[2]: MemoryError: cannot allocate 8 GiB")
