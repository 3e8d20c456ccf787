"""A training run's verdict in one line: the step that refused its candidate (the gate, infra validation) or
failed records why, and ``mlops-loop train`` says it for the run it followed."""

import json
import shutil
from dataclasses import replace
from datetime import date

import mlflow
import numpy as np
import pytest
from toy_models import toy_frame

from pipelines.cli import report_runs
from pipelines.config import StatePaths
from pipelines.training_steps.results import Evaluation, Splits

MODEL = "flights_delay"
DAG = f"train_{MODEL}"


@pytest.fixture()
def state(tmp_path, monkeypatch) -> StatePaths:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    return StatePaths.from_env()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, empty_mlflow_db):
    """One MLflow store for the module (creating one costs seconds)."""
    from toy_models import ToyRegistry

    root = tmp_path_factory.mktemp("mlflow")
    shutil.copyfile(empty_mlflow_db, root / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        yield ToyRegistry(root)


@pytest.fixture()
def runs(registry, request):
    """A training run as ``split`` and ``evaluate`` leave it: its parent MLflow run and its best candidate's."""
    from pipelines.run_context import RunContext

    ids = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=registry.experiment) as run:
            ids.append(run.info.run_id)
    ctx = RunContext(DAG, f"manual__{request.node.name}", date(2013, 1, 1), date(2013, 3, 1))
    splits = Splits(train="", validation="", holdout="", digests={}, holdout_start=None, split_method="time",
                    parent_run_id=ids[0], experiment_id=registry.experiment,
                    lineage={"airflow_dag_id": DAG, "airflow_run_id": ctx.run_id})
    return ctx, splits, ids[1]


def _evaluation(best: str, **fields) -> Evaluation:
    """What ``evaluate`` hands on, with only what a test names filled in."""
    from pipelines.gate import EvaluationReport

    return Evaluation(**{"best_run_id": best, "model_uri": "", "params": {}, "threshold": None, "classes": None,
                         "candidate": EvaluationReport({}), "champion": None, "champion_note": "no champion yet",
                         "champion_error": None, "candidates": [], "holdout_output": "", "monitoring_tags": {},
                         **fields})


def _report(run_id: str, state: str, capsys, **tasks) -> tuple[int, str]:
    code = report_runs({DAG: {"dag_run_id": run_id, "state": state, "tasks": tasks}})
    return code, capsys.readouterr().out.strip()


def test_a_refusing_gate_records_its_failed_checks_and_train_says_them(runs, state, flights_config, capsys):
    from pipelines.gate import EvaluationReport
    from pipelines.training_steps.promotion import gate

    ctx, splits, best = runs
    candidate = {"metrics": {"roc_auc": 0.5012, "pr_auc": 0.41, "brier": 0.2},
                 "slices": [{"column": "origin", "value": "EWR", "rows": 900, "roc_auc": 0.61}]}
    record = gate(flights_config, ctx, state, splits,
                  _evaluation(best, candidate=EvaluationReport.from_dict(candidate))).to_dict()
    assert not record["promote"]

    code, said = _report(ctx.run_id, "success", capsys, gate="success", infra_validate="skipped", register="skipped")
    assert code == 0
    assert said == f"{DAG}: not promoted: gate refused: roc_auc 0.5012 is below floor 0.6000"


def test_a_failed_infra_validation_records_its_error_and_train_says_it(runs, state, flights_config, tmp_path, capsys):
    from pipelines.training_steps.promotion import infra_validate

    ctx, splits, best = runs
    toy_frame(50, 4).to_parquet(tmp_path / "holdout.parquet")
    np.save(tmp_path / "output.npy", np.zeros((50, 2)))
    splits = replace(splits, holdout=str(tmp_path / "holdout.parquet"), digests={"holdout": "holdout-v1"})
    gone = (tmp_path / "deleted-run" / "model").as_uri()  # the candidate's artifacts are gone
    outcome = infra_validate(flights_config, ctx, state, splits, _evaluation(
        best, model_uri=gone, holdout_output=str(tmp_path / "output.npy"))).to_dict()
    assert not outcome["passed"]

    code, said = _report(ctx.run_id, "success", capsys, gate="success", infra_validate="success", register="skipped")
    assert code == 0
    assert said == (f"{DAG}: not promoted: infra validation failed: cannot read the model's artifacts: No such "
                    "artifact: 'model'")


def test_a_failed_run_says_where_and_why_and_points_to_the_log_when_nothing_was_recorded(state, capsys):
    from pipelines.training_outcomes import FAILED, RunVerdict, record_verdict, verdict_path

    message = ("the batch of 2013-03-01..2013-03-07 landed under /x: 1 of 12 expectations of suite 'flights' failed:\n"
               "  - expect_column_values_to_be_in_set on 'origin': 50 unexpected rows\nreport: /r.html")
    record_verdict(state, MODEL, RunVerdict(DAG, "run 1", "validate", FAILED, message))
    code, said = _report("run 1", "failed", capsys, ingest="success", validate="failed", version="upstream_failed")
    assert code == 1
    assert said == (f"{DAG}: run run 1 FAILED at validate: the batch of 2013-03-01..2013-03-07 landed under /x: 1 "
                    "of 12 expectations of suite 'flights' failed: - expect_column_values_to_be_in_set on 'origin': "
                    "50 unexpected rows report: /r.html")

    code, said = _report("run 2", "failed", capsys, ingest="failed", validate="upstream_failed")
    assert code == 1
    assert said == (f"{DAG}: run run 2 FAILED at ingest, validate (no verdict recorded at "
                    f"{verdict_path(state, MODEL, 'run 2')}): the task log says why (Airflow UI, or "
                    ".state/airflow/logs)")


def test_a_registered_run_says_its_version(state, capsys):
    from pipelines.training_outcomes import REGISTERED, RunVerdict, record_verdict

    record_verdict(state, MODEL, RunVerdict(DAG, "run 3", "register", REGISTERED, "registered v4 as champion", "4"))
    assert _report("run 3", "success", capsys, register="success", deploy="success") == (
        0, f"{DAG}: registered v4 as champion, and deployed")


def test_a_long_reason_is_cut_to_one_line_and_an_unreadable_record_is_named(state):
    from pipelines.training_outcomes import (
        FAILED,
        LINE_LIMIT,
        RunVerdict,
        last_verdict,
        record_verdict,
        run_verdict,
        verdict_path,
    )

    long = RunVerdict(DAG, "run 4", "ingest", FAILED, "\n".join(f"line {n}" for n in range(500)))
    assert "\n" not in long.line and len(long.reason) <= LINE_LIMIT
    assert long.reason.endswith(" line 119 … (the task log has the rest)")
    record_verdict(state, MODEL, long)
    assert last_verdict(state, MODEL) == long
    broken = verdict_path(state, MODEL, "run 5")
    broken.write_text(json.dumps({"dag_id": DAG}))  # the newest file, and not a verdict
    with pytest.raises(ValueError, match="run_5.json is not a run verdict"):
        run_verdict(state, MODEL, "run 5")
    assert last_verdict(state, MODEL) == long  # the one before it
    with pytest.raises(ValueError, match="outcome is one of"):
        RunVerdict(DAG, "run 6", "gate", "maybe", "")


def test_gate_attempts_on_one_holdout_are_counted_across_training_runs_and_capped(registry, runs, state,
                                                                                   flights_config, tmp_path):
    """Each training run's gate on the same holdout (its digest) is one more attempt; a retry of a run's own gate
    is not; past ``max_attempts_per_holdout`` the gate refuses even a clearly better candidate."""
    from pipelines.gate import EvaluationReport
    from pipelines.training_steps.promotion import gate
    from tests.unit.test_gate import simulated_pairs

    ctx, splits, best = runs
    pairs = tmp_path / "paired_predictions.parquet"
    simulated_pairs(20_000, 0.85).frame.to_parquet(pairs)
    cfg = flights_config.model_copy(update={"gate": flights_config.gate.model_copy(
        update={"max_attempts_per_holdout": 2})})
    evaluation = _evaluation(
        best, paired_predictions=str(pairs),
        candidate=EvaluationReport({"roc_auc": 0.85, "pr_auc": 0.5, "brier": 0.1},
                                   [{"column": "origin", "value": "EWR", "rows": 900, "roc_auc": 0.8}]),
        champion=EvaluationReport({"roc_auc": 0.80, "pr_auc": 0.45, "brier": 0.1}, model_version="1"),
        champion_note="champion v1 scored on the same holdout")
    splits = replace(splits, digests={"holdout": "holdout-attempts"})
    decisions = [gate(cfg, ctx, state, splits, evaluation), gate(cfg, ctx, state, splits, evaluation)]  # a retry
    for _ in range(2):  # two later training runs on the same holdout
        with mlflow.start_run(experiment_id=registry.experiment) as run:
            pass
        decisions.append(gate(cfg, ctx, state, replace(splits, parent_run_id=run.info.run_id), evaluation))
    assert [d.attempt for d in decisions] == [1, 1, 2, 3]
    assert [d.promote for d in decisions] == [True, True, True, False]
    assert [r["check"] for r in decisions[-1].reasons if not r["passed"]] == ["holdout_reuse"]
    assert "attempt 3 on this holdout, past the cap of 2" in decisions[-1].summary
    paired = next(r for r in decisions[0].reasons if r["check"] == "margin:roc_auc")
    assert paired["comparison"]["test"] == "delong" and paired["decision"] == "better with 95% confidence"
    tags = mlflow.MlflowClient().get_run(run.info.run_id).data.tags
    assert (tags["holdout_digest"], tags["gate_attempt"], tags["gate_decision"]) == \
        ("holdout-attempts", "3", "rejected")
