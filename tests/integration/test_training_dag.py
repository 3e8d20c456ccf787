"""The whole training DAG with dag.test() on real 2013 flights, against a real MLflow store and a real
prediction service on loopback."""

import json
import re
import shutil
from datetime import date, timedelta

import httpx
import pytest

from pipelines.config import ChallengerPolicy
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
    dagbag, airflow_db, landed, flights_tables, prediction_service, dag_file, capsys
):
    """serving.rollout: canary -> the gated candidate becomes challenger and takes its share of the traffic;
    champion moves only when the promote_<model> DAG decides. On the way, the statistics behind each decision:
    the gate's paired comparison with the champion on the challenger's version page; the monitoring DAG's
    anytime-valid comparison of the canary's labelled rows on the model page and in ``mlops-loop models``; and,
    with ``serving.challenger.act: propose``, the monitoring run starting promote_<model> with its decision,
    which that run then carries out."""
    from pipelines.config import GatePolicy, load_model_config
    from pipelines.registry import stage_challenger
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

    run = dag_file("training").build_training_dag(cfg).test(
        run_conf={**GOOD, "data_interval_end": "2013-03-15", "reason": "canary"})
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

    pages = _operator_pages()
    _assert_version_page_shows_the_gate_comparison(pages, challenger)

    # Two days of canary traffic after the training interval, their outcomes landed; then the monitoring DAG
    # judges them under a policy that cannot decide yet (min_rows above the rows served).
    window = (date(2013, 3, 15), date(2013, 3, 17))
    _serve_canary_days(cfg, flights_tables, prediction_service, window)
    judging = ChallengerPolicy(metric="log_loss", effect=0.01, min_rows=100_000, act="none")
    status = _monitor_challenger(dag_file, cfg, judging, window)
    assert status["decision"] == "continue" and status["rows_needed"] > 0
    _assert_model_page_and_cli_show_the_comparison(pages, capsys, challenger.version, status)

    # act: propose, and a policy that decides on few requests: better by a margin no log loss difference
    # comes near -> retire, proposed to promote_<model> and carried out by it.
    proposing = ChallengerPolicy(metric="log_loss", framing="superiority", margin=2.0, min_rows=50, act="propose")
    status = _monitor_challenger(dag_file, cfg, proposing, window)
    assert status["decision"] == "retire" and status["interval"][1] < 2.0, status
    [(run_id, conf)] = _dag_runs(f"promote_{MODEL}")
    assert run_id == f"retire__monitor_{MODEL}__v{challenger.version}"  # proposed once per version and decision
    assert conf["action"] == "retire" and conf["version"] == str(challenger.version)
    assert conf["reason"] == f"monitor_{MODEL} 2013-03-15_2013-03-17: {status['summary']}"
    assert conf["proposed_by"] == f"monitor_{MODEL} 2013-03-15_2013-03-17"
    promote = dagbag.dags[f"promote_{MODEL}"]
    run = promote.test(run_conf=conf)
    assert run.state == "success", _states(run)
    assert "challenger" not in client.get_registered_model(MODEL).aliases
    assert client.get_model_version(MODEL, challenger.version).tags["retired_reason"] == conf["reason"]
    health = httpx.get(f"{prediction_service}/health").json()
    assert (health["version"], health["challenger_version"]) == (champion, None)

    # Staged again by hand (as the training DAG stages it), the canary is promoted by an operator.
    stage_challenger(client, MODEL, str(challenger.version), "canary", 0.5)
    reloaded = httpx.post(f"{prediction_service}/admin/reload", headers=admin_headers()).json()
    assert reloaded["challenger_version"] == str(challenger.version)
    run = promote.test(run_conf={"action": "promote", "reason": "canary held up"})
    assert run.state == "success", _states(run)
    assert client.get_model_version_by_alias(MODEL, "champion").version == challenger.version
    assert client.get_model_version_by_alias(MODEL, "previous").version == champion
    health = httpx.get(f"{prediction_service}/health").json()
    assert (health["version"], health["challenger_version"]) == (str(challenger.version), None)
    refused = promote.test(run_conf={"action": "retire", "reason": "nothing staged"})
    assert refused.state == "failed"


OPERATOR_TOKEN = "integration-operator"


def _operator_pages():
    """The operator pages the plugin mounts, with a stand-in for Airflow's login (the plugin passes the real one)."""
    from fastapi import Header, HTTPException
    from fastapi.params import Depends
    from fastapi.testclient import TestClient

    from pipelines.operator_ui.app import create_app

    def logged_in(authorization: str | None = Header(None)) -> None:
        if authorization != f"Bearer {OPERATOR_TOKEN}":
            raise HTTPException(401, "Not authenticated")

    return TestClient(create_app([Depends(logged_in)]), headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})


def _cells(table: str) -> list[list[str]]:
    """The text of each data row's cells of an HTML table."""
    import html

    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", r,
                                                                                        flags=re.S)]
            for r in rows if "<td" in r]


def _assert_version_page_shows_the_gate_comparison(pages, version) -> None:
    """The version page's table of paired comparisons holds, check by check, what the training run's gate
    recorded in gate/decision.json: difference, interval, p-value, decision, rows and rows needed."""
    import mlflow

    from pipelines.gate import Reason

    decision = mlflow.artifacts.load_dict(f"runs:/{version.tags['mlflow_parent_run_id']}/gate/decision.json")
    tested = [Reason.from_dict(r) for r in decision["reasons"] if r.get("comparison")]
    assert tested and tested[0].check == "margin:roc_auc", decision["reasons"]
    page = pages.get(f"/models/{MODEL}/versions/{version.version}")
    assert page.status_code == 200, page.text
    heading = "Compared with the champion on the same holdout rows"
    table = page.text[page.text.index(heading):]
    rows = _cells(table[:table.index("</table>")])
    assert len(rows) == len(tested)
    for cells, reason in zip(rows, tested, strict=True):
        c = reason.comparison
        needed = "n/a" if c.rows_needed is None else \
            f"{c.rows_needed:,} for {c.effect:+.4g} at {c.power * 100:.0f}% power"
        assert cells[0] == reason.check and cells[1].startswith(f"{c.test}, ")
        assert cells[4:] == [f"{c.difference:+.4f}",
                             f"[{c.interval[0]:+.4f}, {c.interval[1]:+.4f}] ({c.interval_level * 100:.0f}%)",
                             f"{c.p_value:.3g}", reason.decision, f"{c.rows:,}", needed], cells
    assert tested[0].comparison.rows > 1000 and tested[0].passed  # the champion scored on the 14-day holdout


def _serve_canary_days(cfg, flights_tables, url: str, days: tuple[date, date]) -> None:
    """Land [start, end), send its flights to the service with request ids and event times (25 rows a request,
    so both models answer some), land their outcomes, and wait until the service's log holds every row."""
    from pipelines.config import StatePaths
    from pipelines.replay import land_outcomes, send_examples, wait_until_logged
    from pipelines.sources.flights import NycFlights13Replay

    state, source = StatePaths.from_env(), NycFlights13Replay(flights_tables)
    source.land(state.landing_root(cfg.landing_name), *days)
    served = 0
    with httpx.Client() as http:
        for day in (days[0] + timedelta(days=n) for n in range((days[1] - days[0]).days)):
            outcomes = send_examples(http, url, cfg, source.examples(day, day + timedelta(days=1)),
                                     request_prefix=f"canary-{day}", rows_per_request=25)
            land_outcomes(cfg, state, day, outcomes)
            served += len(outcomes)
    # local days end at 05:00 UTC the next day: the log's event times run into the day after the window
    wait_until_logged(cfg, days[0], days[1] + timedelta(days=1), served)


def _monitor_challenger(dag_file, cfg, policy, window: tuple[date, date]) -> dict:
    """A monitoring DAG run of ``window`` with the challenger judged by ``policy``; the comparison it wrote,
    checked against the window's rows in the prediction log."""
    from pipelines import monitoring_store as store
    from pipelines.challenger_comparison import canary_span
    from pipelines.config import StatePaths
    from pipelines.monitoring_tasks import challenger_status, read_route

    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"challenger": policy})})
    start, end = window
    run = dag_file("monitoring").build_monitoring_dag(cfg).test(run_conf={
        "window_start": start.isoformat(), "window_end": end.isoformat(), "reason": "canary judged"})
    states = _states(run)
    assert run.state == "success" and states["compare_challenger"] == "success", states
    assert states["propose_release"] == ("success" if policy.act == "propose" else "skipped"), states
    status = challenger_status(cfg, StatePaths.from_env())
    champion, challenger = status["champion_version"], status["challenger_version"]
    logged = {route: read_route(cfg, start, end, route, version)
              for route, version in (("champion", champion), ("canary", challenger))}
    assert min(len(rows) for rows in logged.values()) > 100  # both models answered a share of the window's rows
    assert (status["feed"], status["metric"], status["window"]) == ("canary", "log_loss", f"{start}_{end}")
    # the unit is the request (its rows averaged into one): every request served while the canary was answering
    # labelled, none counted twice
    within = [canary_span(logged["champion"], logged["canary"]), logged["canary"]]
    requests = {str(r) for rows in within for r in rows["request_id"]}
    assert status["rows"] == len(requests) and status["pending"] == 0
    with store.engine().connect() as connection:
        [window_row] = [row for row in store.load_windows(connection, MODEL)
                        if (row["window_start"], row["window_end"]) == window]
    assert json.loads(window_row["details"])["challenger"] == status  # and the window's row in the monitoring store
    return status


def _assert_model_page_and_cli_show_the_comparison(pages, capsys, version: str, status: dict) -> None:
    """The model page and ``mlops-loop models`` show the labelled rows, the interval and the rows still needed."""
    from pipelines.cli import main

    lower, upper = status["interval"]
    page = pages.get(f"/models/{MODEL}")
    assert page.status_code == 200, page.text
    text = page.text[page.text.index(f"Challenger v{version} against the champion"):]
    [facts] = [dict(zip(re.findall(r"<dt>(.*?)</dt>", block), re.findall(r"<dd>(.*?)</dd>", block), strict=True))
               for block in re.findall(r'<dl class="challenger">(.*?)</dl>', text, flags=re.S)[:1]]
    assert facts["Labelled requests"] == str(status["rows"])
    assert f"interval [{lower:+.4g}, {upper:+.4g}] (threshold +0)" in facts["Improvement"]  # not worse, no margin
    assert facts["Decision"].startswith("none yet") and f"no decision before {status['min_rows']} requests" in facts[
        "Decision"]
    assert facts["Requests still needed"] == f"about {status['rows_needed']} labelled"
    capsys.readouterr()
    main(["models"])
    listed = capsys.readouterr().out
    line = next(line for line in listed.splitlines() if f"challenger v{version} against the champion" in line)
    assert f"log_loss (canary): {status['rows']} labelled requests" in line
    assert f"interval [{lower:+.4g}, {upper:+.4g}]" in line
    assert line.endswith(f"about {status['rows_needed']} more labelled requests needed"), line


def _dag_runs(dag_id: str) -> list[tuple[str, dict]]:
    """The runs of ``dag_id`` in Airflow's metadata DB that another DAG started (TriggerDagRunOperator)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    with create_session() as session:
        return [(r.run_id, r.conf) for r in session.query(DagRun).filter(
            DagRun.dag_id == dag_id, DagRun.run_type == DagRunType.OPERATOR_TRIGGERED)]


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
