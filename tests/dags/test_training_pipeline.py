"""The training DAG and in-process runs follow one definition of the pipeline (training_steps.pipeline)."""

import subprocess
import sys


def test_each_training_dag_has_a_task_per_step_waiting_for_its_inputs_and_checks(dagbag):
    from pipelines.config import list_model_configs
    from pipelines.training_steps.pipeline import training_steps

    for cfg in list_model_configs():
        dag = dagbag.dags[f"train_{cfg.name}"]
        steps = {step.name: step for step in training_steps(cfg)}
        assert set(dag.task_ids) == set(steps), dag.dag_id
        for step in steps.values():
            upstream = dag.get_task(step.name).upstream_task_ids
            # A check's result and the approval are pulled from XCom: no edge of their own.
            taken = {n for n in step.inputs if steps[n].proceeds is None and steps[n].run is not None}
            assert upstream == taken | ({step.after} if step.after else set()), f"{dag.dag_id}.{step.name}"


def test_a_check_that_says_no_ends_an_in_process_run(flights_config, tmp_path):
    """``replace`` stands in for every step: the run stops at the gate that refuses, as the DAG's
    short-circuit skips everything after it."""
    from datetime import date
    from types import SimpleNamespace

    from pipelines.run_context import RunContext
    from pipelines.training_steps.pipeline import run_in_process, training_steps

    called = []

    def stand_in(name):
        def run(cfg, ctx, state, *inputs):
            called.append((name, len(inputs)))
            return SimpleNamespace(promote=False, passed=True)
        return run

    replace = {step.name: stand_in(step.name) for step in training_steps(flights_config)}
    done = run_in_process(flights_config, RunContext("train_x", "r", date(2013, 1, 1), date(2013, 2, 1)), None,
                          replace=replace)
    assert list(done) == ["ingest", "validate", "version", "split", "train", "evaluate", "gate"]
    assert len(done["train"]) == len(flights_config.search.candidates())
    assert ("evaluate", 2) in called and ("train", 2) in called  # the split and the params


def test_the_pipeline_and_its_steps_load_no_airflow():
    """In-process runs, tests and benchmarks use the steps without Airflow."""
    code = ("import sys; import pipelines.training_steps.pipeline; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
