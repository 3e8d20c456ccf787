"""The whole training DAG with dag.test() on real 2013 flights, against a real MLflow store and a real
prediction service on loopback."""

import shutil
from datetime import date

import httpx
import pytest

from pipelines.deployment import admin_headers

pytestmark = pytest.mark.integration

MODEL = "flights_delay"
GOOD = {"data_interval_start": "2013-01-01", "data_interval_end": "2013-03-01", "reason": "integration test"}


@pytest.fixture(scope="module")
def landed(state_root, flights_tables):
    from pipelines.sources.flights import land_nycflights13

    land_nycflights13(state_root / "landing" / MODEL, date(2013, 1, 1), date(2013, 3, 1), tables=flights_tables)
    return state_root / "landing" / MODEL


@pytest.fixture(scope="module")
def training_dag(dagbag, airflow_db):
    return dagbag.dags[f"train_{MODEL}"]


def _client():
    import mlflow

    from pipelines.tracking import configure_mlflow

    configure_mlflow()
    return mlflow.MlflowClient()


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _verdict(run) -> str:
    """The run's verdict as ``mlops-loop train`` and the model's page say it."""
    from pipelines.config import StatePaths
    from pipelines.training_outcomes import run_verdict

    return run_verdict(StatePaths.from_env(), MODEL, run.run_id).line


def test_first_run_makes_a_champion_that_is_served(training_dag, landed, prediction_service, state_root):
    run = training_dag.test(run_conf=GOOD)
    assert run.state == "success", _states(run)

    client = _client()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    tags = champion.tags
    assert tags["airflow_dag_id"] == f"train_{MODEL}"
    assert tags["airflow_run_id"] == run.run_id
    assert len(tags["data_hash"]) == 32 and tags["gate_decision"] == "approved"
    assert tags["git_commit"] and tags["training_reason"] == "integration test"
    assert tags["infra_validation"] == "passed" and _states(run)["infra_validate"] == "success"
    assert _verdict(run) == f"registered v{champion.version} as champion"
    # The data hash names the exact bytes in the DVC remote.
    assert (state_root / "dvc" / "remote" / "files" / "md5" / tags["data_hash"][:2]
            / tags["data_hash"][2:]).is_file()

    health = httpx.get(f"{prediction_service}/health").json()
    assert health["version"] == str(champion.version) and health["data_hash"] == tags["data_hash"]
    row = {"distance": 1400.0, "sched_dep_hour": 17.5, "sched_arr_hour": 20.0, "day_of_week": 4.0, "temp": 30.0,
           "dewp": 20.0, "humid": 60.0, "wind_dir": 270.0, "wind_speed": 12.0, "precip": 0.0, "visib": 10.0,
           "carrier": "UA", "origin": "EWR", "dest": "IAH"}
    answer = httpx.post(f"{prediction_service}/invocations", json={"dataframe_records": [row, row]})
    assert answer.status_code == 200, answer.text
    probabilities = answer.json()["predictions"]
    assert len(probabilities) == 2 and all(abs(sum(p) - 1) < 1e-6 for p in probabilities)
    bad = httpx.post(f"{prediction_service}/invocations", json={"dataframe_records": [{**row, "distance": "far"}]})
    assert bad.status_code == 400 and "distance" in bad.json()["message"]

    # The parent MLflow run is closed, holds the plots and the decision, and names its best candidate.
    parent = client.get_run(tags["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["gate_decision"] == "approved"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "evaluation")}
    assert {"evaluation/roc.png", "evaluation/calibration.png", "evaluation/slices.png"} <= artifacts
    assert parent.data.metrics["holdout_roc_auc"] > 0.6


def test_worse_candidate_is_rejected_and_champion_kept(training_dag, landed, prediction_service):
    client = _client()
    before = client.get_model_version_by_alias(MODEL, "champion").version
    versions_before = len(client.search_model_versions(f"name='{MODEL}'"))

    run = training_dag.test(run_conf={**GOOD, "gate_drill_shuffle_labels": True, "reason": "gate drill"})
    states = _states(run)
    assert run.state == "success", states
    assert states["gate"] == "success" and states["register"] == "skipped" and states["deploy"] == "skipped"
    assert states["infra_validate"] == "skipped"

    assert client.get_model_version_by_alias(MODEL, "champion").version == before
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions_before
    experiment = client.get_experiment_by_name(MODEL)
    runs = client.search_runs([experiment.experiment_id], f"tags.airflow_run_id = '{run.run_id}'")
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["gate_decision"] == "rejected"
    assert parent.data.tags["gate_summary"].startswith("rejected: ")
    assert "below floor" in parent.data.tags["gate_summary"]  # shuffled labels give a coin-flip AUC
    assert _verdict(run) == "not promoted: gate refused: " + parent.data.tags["gate_summary"].removeprefix("rejected: ")
    # The same interval again: the data steps reuse the first run's outputs; the drill's candidates differ.
    assert all(parent.data.tags[f"cache.{step}"].startswith("hit: inputs unchanged")
               for step in ("ingest", "validate", "version", "split")), parent.data.tags
    candidates = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert candidates and all(r.data.tags["cache"] == "miss: computed: gate_drill changed" for r in candidates)


def test_rollback_dag_restores_previous_and_the_service_follows(dagbag, airflow_db, prediction_service):
    import mlflow

    from pipelines.registry import promote_version

    client = _client()
    v1 = client.get_model_version_by_alias(MODEL, "champion")
    # A second version (the same model, registered again) becomes champion, then is rolled back.
    v2 = mlflow.register_model(v1.source if v1.source.startswith("models:/m-") else f"models:/{MODEL}/{v1.version}",
                               MODEL, tags={"airflow_run_id": "manual-copy"})
    promote_version(client, MODEL, str(v2.version))
    reloaded = httpx.post(f"{prediction_service}/admin/reload", headers=admin_headers()).json()
    assert reloaded["version"] == str(v2.version)

    run = dagbag.dags[f"rollback_{MODEL}"].test(run_conf={"reason": "integration test rollback"})
    assert run.state == "success", _states(run)
    assert client.get_model_version_by_alias(MODEL, "champion").version == v1.version
    assert client.get_model_version_by_alias(MODEL, "previous").version == v2.version
    assert client.get_model_version(MODEL, v1.version).tags["rollback_reason"] == "integration test rollback"
    assert httpx.get(f"{prediction_service}/health").json()["version"] == str(v1.version)

    refused = dagbag.dags[f"rollback_{MODEL}"].test(run_conf={"reason": "again", "to_version": "999"})
    assert refused.state == "failed"
    assert client.get_model_version_by_alias(MODEL, "champion").version == v1.version


def test_canary_rollout_stages_a_challenger_until_the_promote_dag_decides(
    dagbag, airflow_db, landed, flights_tables, prediction_service
):
    """serving.rollout: canary -> the gated candidate becomes challenger and takes its share of the traffic;
    champion moves only when an operator promotes it with promote_<model>."""
    import importlib.util
    import os

    from pipelines.config import GatePolicy, load_model_config
    from pipelines.sources.flights import land_nycflights13

    land_nycflights13(landed, date(2013, 3, 1), date(2013, 3, 15), tables=flights_tables)
    cfg = load_model_config(MODEL)
    cfg = cfg.model_copy(update={  # this test is about rollout: one candidate, and any that meets the floors
        "serving": cfg.serving.model_copy(update={"rollout": "canary", "canary_share": 0.5}),
        "gate": GatePolicy(**{**cfg.gate.model_dump(), "framing": "non_inferiority", "min_margin": 1.0}),
        "search": cfg.search.model_copy(update={"grid": {k: v[:1] for k, v in cfg.search.grid.items()}}),
    })
    client = _client()
    champion = client.get_model_version_by_alias(MODEL, "champion").version

    spec = importlib.util.spec_from_file_location(
        "training_dag_file", os.path.join(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], "training.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.build_training_dag(cfg).test(run_conf={**GOOD, "data_interval_end": "2013-03-15", "reason": "canary"})
    assert run.state == "success", _states(run)
    challenger = client.get_model_version_by_alias(MODEL, "challenger")
    assert client.get_model_version_by_alias(MODEL, "champion").version == champion
    assert challenger.tags["rollout"] == "canary" and challenger.tags["airflow_run_id"] == run.run_id
    health = httpx.get(f"{prediction_service}/health").json()
    assert (health["version"], health["challenger_version"], health["challenger_mode"]) == (
        champion, str(challenger.version), "canary")
    row = {"distance": 1400.0, "sched_dep_hour": 17.5, "sched_arr_hour": 20.0, "day_of_week": 4.0, "temp": 30.0,
           "dewp": 20.0, "humid": 60.0, "wind_dir": 270.0, "wind_speed": 12.0, "precip": 0.0, "visib": 10.0,
           "carrier": "UA", "origin": "EWR", "dest": "IAH"}
    served = {httpx.post(f"{prediction_service}/invocations", json={"dataframe_records": [row]}).headers[
        "X-Model-Version"] for _ in range(40)}
    assert served == {champion, str(challenger.version)}

    promote = dagbag.dags[f"promote_{MODEL}"]
    run = promote.test(run_conf={"action": "promote", "reason": "canary held up"})
    assert run.state == "success", _states(run)
    assert client.get_model_version_by_alias(MODEL, "champion").version == challenger.version
    assert client.get_model_version_by_alias(MODEL, "previous").version == champion
    health = httpx.get(f"{prediction_service}/health").json()
    assert (health["version"], health["challenger_version"]) == (str(challenger.version), None)
    refused = promote.test(run_conf={"action": "retire", "reason": "nothing staged"})
    assert refused.state == "failed"


def test_batch_failing_validation_is_quarantined_and_registers_nothing(
    training_dag, landed, flights_tables, state_root
):
    from pipelines.sources.flights import land_nycflights13

    flights = flights_tables["flights"]
    corrupt = flights[(flights.month == 3) & (flights.day < 8)].copy()
    corrupt.loc[corrupt.index[:50], "origin"] = "XXX"  # an airport the suite does not know
    weather = flights_tables["weather"]
    land_nycflights13(landed, date(2013, 3, 1), date(2013, 3, 8),
                      tables={"flights": corrupt, "weather": weather[weather.month == 3]})
    client = _client()
    versions_before = len(client.search_model_versions(f"name='{MODEL}'"))

    run = training_dag.test(run_conf={"data_interval_start": "2013-03-01", "data_interval_end": "2013-03-08"})
    states = _states(run)
    assert run.state == "failed"
    assert states["validate"] == "failed" and states["version"] in ("upstream_failed", "None")
    # The failure callback recorded why, on one line: the batch, each failed expectation, the report.
    assert _verdict(run).startswith("FAILED at validate: the batch of 2013-03-01..2013-03-07 landed under ")
    assert "expect_column_values_to_be_in_set on 'origin'" in _verdict(run) and "report: " in _verdict(run)
    assert len(client.search_model_versions(f"name='{MODEL}'")) == versions_before
    quarantined = list((state_root / "quarantine" / MODEL).glob("2013-03-01_2013-03-08__*"))
    assert len(quarantined) == 1 and (quarantined[0] / "validation_report.html").is_file()
    assert not (state_root / "curated" / MODEL / "validated" / "2013-03-01_2013-03-08").exists()
    assert len(list((landed / "flights").glob("2013-03-0[1-7].csv"))) == 7  # raw files are kept
    shutil.rmtree(quarantined[0])
