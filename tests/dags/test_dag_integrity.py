"""Every DAG loads, is documented, owned, tagged and retried, and parses fast."""

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
PLUGINS = DAGS.parent / "plugins"


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dag_ids, "no DAGs found"


def test_one_training_dag_per_model_config(dagbag):
    from pipelines.config import list_model_configs

    expected = {f"train_{cfg.name}" for cfg in list_model_configs()}
    assert expected and expected <= set(dagbag.dag_ids)


@pytest.mark.parametrize("attribute", ["tags", "doc_md"])
def test_every_dag_is_tagged_and_documented(dagbag, attribute):
    for dag_id, dag in dagbag.dags.items():
        assert getattr(dag, attribute), f"{dag_id} has no {attribute}"


def test_every_task_has_an_owner_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            # A data failure or an operator's rollback is not transient: retrying only delays the alert. A
            # deploy retries the service itself, and restores the aliases when it gives up.
            if task.task_id not in ("validate", "move_champion_back", "move_aliases", "deploy"):
                assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_one_rollback_dag_per_model_config(dagbag):
    from pipelines.config import list_model_configs

    for cfg in list_model_configs():
        dag = dagbag.dags[f"rollback_{cfg.name}"]
        assert dag.schedule is None if hasattr(dag, "schedule") else True
        assert set(dag.params.keys()) == {"reason", "to_version"}
        assert "deploy" in dag.get_task("move_champion_back").downstream_task_ids


def test_one_promote_dag_per_model_config(dagbag):
    from pipelines.config import list_model_configs

    for cfg in list_model_configs():
        dag = dagbag.dags[f"promote_{cfg.name}"]
        assert dag.params["action"] == "promote" and dag.params.get_param("action").schema["enum"] == [
            "promote", "retire"]
        assert "deploy" in dag.get_task("move_aliases").downstream_task_ids


def test_training_dag_shape(dagbag):
    dag = dagbag.dags["train_flights_delay"]
    order = ["ingest", "validate", "version", "split", "train", "evaluate", "gate", "infra_validate", "register",
             "deploy"]
    assert set(order) == set(dag.task_ids)
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids, f"{upstream} -> {downstream}"
    assert set(dag.params.keys()) >= {"data_interval_start", "data_interval_end", "reason"}


def test_with_approval_required_the_training_dag_waits_for_a_person_before_registering(flights_config):
    """serving.approval: required puts the standard provider's ApprovalOperator between infra validation and
    register; it rejects when no one answers in time."""
    import runpy

    from airflow.providers.standard.operators.hitl import ApprovalOperator

    build = runpy.run_path(str(DAGS / "training.py"))["build_training_dag"]
    serving = flights_config.serving.model_copy(update={"approval": "required", "approval_timeout_hours": 5})
    dag = build(flights_config.model_copy(update={"serving": serving}))
    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator)
    assert approve.upstream_task_ids == {"infra_validate"} and approve.downstream_task_ids == {"register"}
    assert approve.defaults == ["Reject"] and approve.response_timeout.total_seconds() == 5 * 3600
    assert list(approve.serialized_params) == ["approval_reason"] and "Approval required" in dag.doc_md
    assert "approve" not in build(flights_config).task_ids


def test_with_approval_required_a_proposed_release_waits_for_a_person_and_a_form_run_does_not(flights_config,
                                                                                            monkeypatch):
    """promote_<model> with serving.approval: required: approve_release before move_aliases asks a person only
    when the monitoring DAG proposed the run (proposed_by set), with the proposal as the question."""
    import runpy

    from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
    from airflow.sdk.exceptions import TaskAwaitingInput

    build = runpy.run_path(str(DAGS / "release.py"))["build_promote_dag"]
    serving = flights_config.serving.model_copy(update={"approval": "required", "approval_timeout_hours": 5})
    dag = build(flights_config.model_copy(update={"serving": serving}))
    approve = dag.get_task("approve_release")
    assert isinstance(approve, ApprovalOperator) and approve.downstream_task_ids == {"move_aliases"}
    assert approve.defaults == ["Reject"] and approve.response_timeout.total_seconds() == 5 * 3600
    assert "approve_release" in dag.doc_md and "proposed_by" in dag.params
    assert "approve_release" not in build(flights_config).task_ids

    asked = []

    def ask(operator, context):  # what HITLOperator.execute does: write the question, then wait for its answer
        asked.append((operator.subject, operator.body))
        raise TaskAwaitingInput(method_name="execute_complete")

    monkeypatch.setattr(HITLOperator, "execute", ask)
    form = {"action": "retire", "reason": "canary looked worse", "version": "3", "proposed_by": None}
    assert approve.execute({"params": form}) is None and asked == []  # a person's own decision
    proposed = {**form, "reason": "monitor_flights_delay 2013-05-01: retire", "proposed_by": "monitor_flights_delay"
                " 2013-05-01_2013-05-08"}
    with pytest.raises(TaskAwaitingInput):
        approve.execute({"params": proposed})
    [(subject, body)] = asked
    assert subject == "Retire challenger v3 of flights_delay?"
    assert "`monitor_flights_delay 2013-05-01_2013-05-08` proposes to **retire** challenger v3" in body
    assert "monitor_flights_delay 2013-05-01: retire" in body

    pushed = {}
    ti = type("TaskInstance", (), {"xcom_push": lambda self, key, value: pushed.update({key: value})})()
    approve.execute_complete({"params": proposed, "ti": ti}, {
        "chosen_options": ["Approve"], "params_input": {"approval_reason": "the interval is clear"},
        "responded_at": datetime(2013, 5, 8, 9, tzinfo=UTC), "responded_by_user": {"id": "1", "name": "ana"}})
    assert pushed == {"approval": "approved by ana: the interval is clear"}  # move_aliases adds it to the reason


def test_the_assets_chain_landing_training_serving_and_monitoring(dagbag, flights_config):
    """Each model's Assets: landed data read by ingest, the snapshot and the served model made by training,
    the served model read by monitoring, which makes the monitored window; train_on_landing schedules on the
    landed data (with the cron, when there is one)."""
    import runpy

    uris = lambda objects: {getattr(o, "uri", None) for o in objects}  # noqa: E731
    train, monitor = dagbag.dags["train_flights_delay"], dagbag.dags["monitor_flights_delay"]
    assert uris(train.get_task("ingest").inlets) == {"x-mlops://landed/flights_delay"}
    assert uris(train.get_task("version").outlets) == {"x-mlops://snapshot/flights_delay"}
    assert uris(train.get_task("deploy").outlets) == {"x-mlops://served/flights_delay"}
    assert uris(dagbag.dags["rollback_flights_delay"].get_task("deploy").outlets) == {"x-mlops://served/flights_delay"}
    assert uris(monitor.get_task("measure").inlets) == {"x-mlops://served/flights_delay"}
    assert uris(monitor.get_task("decide").outlets) == {"x-mlops://monitored/flights_delay"}

    build = runpy.run_path(str(DAGS / "training.py"))["build_training_dag"]
    on_landing = build(flights_config.model_copy(update={"train_on_landing": True, "schedule": None}))
    assert "x-mlops://landed/flights_delay" in str(on_landing.timetable.asset_condition)
    assert "x-mlops://landed" not in str(getattr(train.timetable, "asset_condition", ""))  # not configured
    both = build(flights_config.model_copy(update={"train_on_landing": True, "schedule": "0 3 * * *"}))
    assert type(both.timetable).__name__ == "AssetOrTimeSchedule"
    assert "Trains when data lands" in both.doc_md


PARSED_FILES = sorted(DAGS.glob("*.py")) + sorted(PLUGINS.glob("*.py"))
HEAVY = ("pandas", "sklearn", "mlflow", "great_expectations", "evidently", "dvc")


@pytest.fixture(scope="module")
def heavy_imports_at_parse() -> dict[str, str]:
    """For each DAG and plugin file, the heavy libraries that running it imports: one process imports the Airflow
    SDK the files build on (and nothing heavy, or every file is charged with it), then each file runs in a fork
    of its own, so no file sees another's imports."""
    probe = (
        "import os, runpy, sys\n"
        "import airflow.sdk\n"
        f"heavy = {HEAVY!r}\n"
        "already = [m for m in heavy if m in sys.modules]\n"
        "for path in sys.argv[1:]:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        runpy.run_path(path)\n"
        "        found = sorted(set(already) | {m for m in heavy if m in sys.modules})\n"
        "        print(f'HEAVY {path}=' + ','.join(found), flush=True)\n"
        "        os._exit(0)\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "    assert os.waitstatus_to_exitcode(status) == 0, path\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, *map(str, PARSED_FILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(line[len("HEAVY "):].split("=", 1) for line in result.stdout.splitlines() if line.startswith("HEAVY "))


@pytest.mark.parametrize("dag_file", PARSED_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_library(dag_file, heavy_imports_at_parse):
    """Parsing a DAG file, or loading a plugin (every Airflow component does), must not import the ML stack
    (that is what keeps parsing in milliseconds)."""
    heavy = heavy_imports_at_parse[str(dag_file)]
    assert heavy == "", f"{dag_file.name} imports {heavy} at parse time"


def test_every_task_alerts_when_it_fails_for_good(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            assert task.on_failure_callback, f"{dag_id}.{task.task_id} raises no alert when it fails"


def test_monitoring_dag_shape(dagbag):
    dag = dagbag.dags["monitor_flights_delay"]
    assert {"validate_window", "measure"} <= dag.get_task("decide").upstream_task_ids
    assert dag.get_task("retrain").trigger_dag_id == "train_flights_delay"
    assert "retrain" in dag.get_task("retrain_needed").downstream_task_ids
    assert set(dag.params.keys()) == {"window_start", "window_end", "reason"}


def test_a_broken_model_config_fails_only_its_own_dags(tmp_path):
    """A config with a bad field: its DAGs are stand-ins that fail naming the file and the field; every other
    model's DAGs load as usual and the DAG files have no import error."""
    include = tmp_path / "include"
    shutil.copytree(DAGS.parent / "include", include)
    broken = include / "models" / "broken.yaml"
    broken.write_text((include / "models" / "penguins.yaml").read_text().replace("name: penguins", "name: broken")
                      .replace("task: multiclass", "task: multiclas"))
    probe = (
        "import os, json; from airflow.dag_processing.dagbag import DagBag; "
        "bag = DagBag(dag_folder=os.environ['AIRFLOW__CORE__DAGS_FOLDER'], safe_mode=False); "
        "stand_in = bag.dags['train_broken']; "
        "print('RESULT=' + json.dumps({'errors': list(bag.import_errors), 'dags': sorted(bag.dag_ids), "
        "'tasks': stand_in.task_ids, 'doc': stand_in.doc_md, 'tags': sorted(stand_in.tags)}))"
    )
    env = {**os.environ, "MLOPS_INCLUDE_DIR": str(include)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    [line] = [x for x in result.stdout.splitlines() if x.startswith("RESULT=")] or [result.stderr[-3000:]]
    found = json.loads(line[len("RESULT="):])
    assert found["errors"] == []
    assert {"train_flights_delay", "train_penguins", "monitor_penguins", "rollback_broken"} <= set(found["dags"])
    assert found["tasks"] == ["config_error"] and "config-error" in found["tags"]
    assert str(broken) in found["doc"] and "task" in found["doc"] and "multiclas" in found["doc"]


def test_bad_input_fails_a_training_task_at_once_and_other_errors_are_retried():
    """A bad landed file, batch, target or interval cannot be fixed by a retry: the task fails for good
    (AirflowFailException) instead of retrying twice with back-off; anything else keeps its retries."""
    import runpy

    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.ingest import LandingFileError

    fails_at_once = runpy.run_path(str(DAGS / "training.py"))["_bad_input_fails_at_once"]
    with pytest.raises(AirflowFailException, match="2013-01-05.csv: missing columns"):
        with fails_at_once():
            raise LandingFileError("landing/flights/2013-01-05.csv: missing columns ['dest']")
    with pytest.raises(ConnectionError):
        with fails_at_once():
            raise ConnectionError("MLflow is restarting")
