"""Short replays of 2013 through the live loop: the monitoring DAG (dag.test) against a real MLflow server
and a real prediction service. A stable period starts no retrain; a drifted one starts exactly one."""

from datetime import date

import pytest

pytestmark = pytest.mark.integration

MODEL = "flights_delay"
TRAIN = {"data_interval_start": "2013-01-01", "data_interval_end": "2013-02-08", "reason": "monitoring test"}


@pytest.fixture(scope="module")
def cfg():
    """Weekly windows so a test replays a few weeks in a few runs; two breaching weeks start a retrain."""
    from pipelines.config import MonitoringConfig, RetrainPolicy, load_model_config

    base = load_model_config(MODEL)
    monitoring = MonitoringConfig(**{**base.monitoring.model_dump(), "window_days": 7, "report_sample_rows": 2000,
                                     "retrain": RetrainPolicy(**{**base.monitoring.retrain.model_dump(),
                                                                 "consecutive_windows": 2, "cooldown_days": 28})})
    return base.model_copy(update={"monitoring": monitoring})


@pytest.fixture(scope="module")
def source(flights_tables):
    from pipelines.sources.flights import NycFlights13Replay

    return NycFlights13Replay(flights_tables)


@pytest.fixture(scope="module")
def champion(dagbag, airflow_db, state_root, source, prediction_service):
    source.land(state_root / "landing" / MODEL, date(2013, 1, 1), date(2013, 2, 15))
    run = dagbag.dags[f"train_{MODEL}"].test(run_conf=TRAIN)
    assert run.state == "success"
    return run


@pytest.fixture(scope="module")
def monitor_dag(cfg, champion, dag_file):
    return dag_file("monitoring").build_monitoring_dag(cfg)


def _monitor(dag, start: str, end: str):
    run = dag.test(run_conf={"window_start": start, "window_end": end, "reason": "replay"})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert run.state == "success", states
    return states


def _retrain_runs():
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return [(r.run_id, r.conf) for r in session.query(DagRun).filter(DagRun.dag_id == f"train_{MODEL}")
                if r.run_id.startswith("retrain__")]


def _windows():
    from pipelines import monitoring_store as store

    with store.engine().connect() as connection:
        return {(str(r["window_start"]), str(r["window_end"])): r
                for r in store.load_windows(connection, MODEL)}


def test_a_stable_period_starts_no_retrain(cfg, state_root, source, prediction_service, monitor_dag):
    from pipelines.config import StatePaths
    from pipelines.replay import replay_days

    replay_days(cfg, StatePaths.from_env(), source, prediction_service, date(2013, 2, 15), date(2013, 3, 1))
    for start, end in (("2013-02-15", "2013-02-22"), ("2013-02-22", "2013-03-01")):
        states = _monitor(monitor_dag, start, end)
        assert states["retrain"] == "skipped" and states["report"] == "success"
    assert _retrain_runs() == []
    windows = _windows()
    week = windows[("2013-02-15", "2013-02-22")]
    assert week["rows"] > 5000 and week["data_valid"] and week["decision"] in ("ok", "hold")
    assert week["labelled_rows"] == week["rows"] and week["pending_labels"] == 0
    assert week["metric"] == "roc_auc" and 0.6 < week["realized"] < 0.9
    # judged against the champion's own holdout, and estimated from its calibrated scores before the labels
    assert 0.6 < week["baseline"] < 0.9 and abs(week["estimated"] - week["realized"]) < 0.05
    assert (state_root / "reports" / MODEL / "monitoring" / "2013-02-15_2013-02-22" / "drift_report.html").is_file()


def test_a_drifted_period_starts_exactly_one_retrain(cfg, source, prediction_service, monitor_dag):
    from pipelines.config import StatePaths
    from pipelines.replay import replay_days

    # Summer: the weather and the routes are nothing like January's. The last week's outcomes have not
    # landed yet when it is judged: its rows are counted as pending, not guessed.
    replay_days(cfg, StatePaths.from_env(), source, prediction_service, date(2013, 6, 1), date(2013, 6, 22))
    late = replay_days(cfg, StatePaths.from_env(), source, prediction_service, date(2013, 6, 22),
                       date(2013, 6, 29), labels=False)["pending"]
    weeks = [("2013-06-01", "2013-06-08"), ("2013-06-08", "2013-06-15"), ("2013-06-15", "2013-06-22"),
             ("2013-06-22", "2013-06-29")]
    actions = []
    for start, end in weeks:
        _monitor(monitor_dag, start, end)
        actions.append(_windows()[(start, end)]["decision"])
    assert actions == ["hold", "retrain", "hold", "hold"], actions  # then the cooldown holds it
    [(run_id, conf)] = _retrain_runs()
    assert run_id == f"retrain__monitor_{MODEL}__2013-06-08_2013-06-15"
    assert conf["data_interval_end"] == "2013-06-15" and conf["data_interval_start"] == "2013-01-01"
    assert "breaching windows in a row" in conf["reason"]
    last = _windows()[weeks[-1]]
    # Only the flights of Jun 21 evening (local time; Jun 22 in UTC event time) have their outcome yet.
    assert last["labelled_rows"] + last["pending_labels"] == last["rows"] > 0
    assert last["pending_labels"] > 0.95 * last["rows"]

    # The outcomes land late; the next run recomputes that week's realized metrics.
    from pipelines.replay import land_outcomes

    for day, outcomes in late.items():
        land_outcomes(cfg, StatePaths.from_env(), day, outcomes)
    _monitor(monitor_dag, "2013-06-29", "2013-07-06")
    last = _windows()[weeks[-1]]
    assert last["labelled_rows"] == last["rows"] and last["pending_labels"] == 0
    assert 0.5 < last["realized"] < 0.95 and last["decision"] == "hold"  # the decision stands
    assert _windows()[("2013-06-29", "2013-07-06")]["decision"] == "insufficient"  # nothing served that week
    assert len(_retrain_runs()) == 1


def test_prediction_log_rows_equal_rows_served():
    from pipelines.prediction_store import read_log

    timed = read_log().event_time.notna().sum()
    assert timed > 30_000
