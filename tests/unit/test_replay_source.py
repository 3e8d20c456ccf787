"""The history a replay lands and serves, built from the model config alone (``pipelines.replay.TableReplay``):
its days, its examples with their event time, its landing through the code of `mlops-loop land`, a shift
applied before anything lands; and the replay's plan of windows."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
from model_state import state_with_model

from pipelines.config import StatePaths, load_model_config
from pipelines.ingest import LandingFileError
from pipelines.replay import ReplayPlan, TableReplay, default_start, replay_source
from pipelines.shifts import parse_shift

CONFIG = """\
name: shop
task: regression
feeds:
  - name: shop
    key: [order_id]
    columns: {order_id: int, ordered_at: datetime, basket: float, items: int, channel: string, spent: float}
features:
  numeric: [basket, items]
  categorical: [channel]
  target: spent
  event_time: ordered_at
  example_id: order_id
start_date: 2024-01-01
"""


@pytest.fixture()
def state(tmp_path, monkeypatch) -> StatePaths:
    return state_with_model(tmp_path, monkeypatch, "shop", CONFIG)


def orders(first_day: str = "2024-03-01", days: int = 4, per_day: int = 50, seed: int = 0) -> pd.DataFrame:
    """``per_day`` orders on each of ``days`` days (UTC), at times written as ISO text, as in a user's file."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    at = (pd.Timestamp(first_day, tz="UTC") + pd.to_timedelta(np.repeat(np.arange(days), per_day), unit="D")
          + pd.to_timedelta(rng.uniform(0, 86_399, n), unit="s"))
    basket = rng.normal(60, 15, n).round(2)
    return pd.DataFrame({"order_id": np.arange(1, n + 1), "ordered_at": at.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                         "basket": basket, "items": rng.integers(1, 9, n), "channel": rng.choice(["web", "app"], n),
                         "spent": (basket * 1.1 + rng.normal(0, 3, n)).round(2)})


@pytest.fixture()
def history(tmp_path, state):
    path = tmp_path / "later.csv"
    orders().to_csv(path, index=False)
    return path


def test_the_source_has_the_days_of_the_file_and_a_days_examples_with_their_event_time(state, history):
    cfg = load_model_config("shop")
    source = replay_source(cfg, [str(history)])
    assert isinstance(source, TableReplay)
    assert source.days() == [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3), date(2024, 3, 4)]
    examples = source.examples(date(2024, 3, 2), date(2024, 3, 3))
    assert len(examples) == 50 and examples["order_id"].between(51, 100).all()
    times = examples["ordered_at"]
    assert str(times.dt.tz) == "UTC" and (times.dt.floor("D") == pd.Timestamp("2024-03-02", tz="UTC")).all()
    assert {"basket", "items", "channel", "spent"} <= set(examples.columns)
    assert examples["channel"].dtype == object and examples["items"].dtype == "int64"  # as the training steps read
    assert source.examples(date(2024, 3, 10), date(2024, 3, 11)).empty


def test_the_source_lands_day_files_as_land_does_and_leaves_a_landed_day_alone(state, history):
    cfg = load_model_config("shop")
    source = replay_source(cfg, [str(history)])
    folder = state.landing("shop", "shop")
    assert source.land(state.landing_root("shop"), date(2024, 3, 1), date(2024, 3, 3)) == {"shop": 2}
    assert sorted(p.name for p in folder.iterdir()) == ["2024-03-01.parquet", "2024-03-02.parquet"]
    landed = pd.read_parquet(folder / "2024-03-02.parquet")
    assert landed["order_id"].tolist() == list(range(51, 101)) and str(landed["ordered_at"].dt.tz) == "UTC"
    assert source.land(state.landing_root("shop"), date(2024, 3, 1), date(2024, 3, 3)) == {"shop": 0}  # same rows
    assert default_start(cfg, state, source) == date(2024, 3, 3)
    other = tmp_orders(history.parent, seed=5)
    with pytest.raises(LandingFileError, match="day 2024-03-01 already landed with other rows"):
        replay_source(cfg, [str(other)]).land(state.landing_root("shop"), date(2024, 3, 1), date(2024, 3, 2))
    replay_source(cfg, [str(other)], keep_replaced=True).land(state.landing_root("shop"), date(2024, 3, 1),
                                                               date(2024, 3, 2))
    assert len(list((folder / "replaced").iterdir())) == 1


def tmp_orders(folder, seed: int):
    path = folder / f"other_{seed}.parquet"
    orders(seed=seed).to_parquet(path, index=False)
    return path


def test_a_shift_changes_what_lands_and_what_is_served_alike_from_its_day(state, history):
    cfg = load_model_config("shop")
    plain = replay_source(cfg, [str(history)])
    shifted = replay_source(cfg, [str(history)], parse_shift("label+100@2024-03-03"))
    before, after = date(2024, 3, 2), date(2024, 3, 3)
    day = pd.Timedelta(days=1)
    assert shifted.examples(before, before + day).equals(plain.examples(before, before + day))
    np.testing.assert_allclose(shifted.examples(after, after + day)["spent"],
                               plain.examples(after, after + day)["spent"] + 100)
    shifted.land(state.landing_root("shop"), after, after + day)
    landed = pd.read_parquet(state.landing("shop", "shop") / "2024-03-03.parquet")
    np.testing.assert_allclose(landed["spent"], shifted.examples(after, after + day)["spent"])


def test_a_history_file_is_read_as_strictly_as_land_reads_a_batch(state, tmp_path):
    cfg = load_model_config("shop")
    path = tmp_path / "extra.csv"
    orders().assign(coupon="x").to_csv(path, index=False)
    with pytest.raises(LandingFileError, match=r"columns \['coupon'\] are not in feed 'shop'"):
        replay_source(cfg, [str(path)])
    with pytest.raises(ValueError, match="give the history to replay: --source FILE"):
        replay_source(cfg, [])
    timeless = cfg.model_copy(update={"features": cfg.features.model_copy(update={"event_time": None})})
    with pytest.raises(ValueError, match="shop has no event time: its history cannot be replayed day by day"):
        replay_source(timeless, [str(path)])
    with pytest.raises(ValueError, match=r"shop has no feed\(s\) \['orders'\]"):
        TableReplay.from_files(cfg, {"orders": path})


def test_the_plan_cuts_the_days_into_windows_and_refuses_an_empty_one():
    plan = ReplayPlan(date(2024, 3, 1), date(2024, 3, 18), every=7)
    assert plan.windows() == [(date(2024, 3, 1), date(2024, 3, 8)), (date(2024, 3, 8), date(2024, 3, 15)),
                              (date(2024, 3, 15), date(2024, 3, 18))]
    with pytest.raises(ValueError, match="nothing to replay"):
        ReplayPlan(date(2024, 3, 18), date(2024, 3, 18), every=7).windows()
    with pytest.raises(ValueError, match="--every must be at least 1"):
        ReplayPlan(date(2024, 3, 1), date(2024, 3, 18), every=0).windows()


class FakeRuns:
    """The monitor and the training runs, in memory: the monitor writes the window's row (a retrain on the
    second window) and notes which days' outcomes had landed when it ran."""

    def __init__(self, state: StatePaths):
        self.state, self.labelled_at_monitor, self.followed = state, {}, []
        self.polls, self.polls_at_monitor = [], {}

    def monitor(self, window_start, window_end) -> str:
        from pipelines import monitoring_store as store

        folder = self.state.landing("shop", "outcomes")
        self.labelled_at_monitor[window_start] = sorted(p.stem for p in folder.glob("*.parquet"))
        self.polls_at_monitor[window_start] = len(self.polls)
        retrain = window_start == date(2024, 3, 3)
        with store.engine().begin() as connection:
            store.save_window(connection, {
                "model_name": "shop", "window_start": window_start, "window_end": window_end, "model_version": "1",
                "rows": 100, "drift_share": 0.25, "decision": "retrain" if retrain else "ok",
                "reason": "drift" if retrain else "", "triggered_run_id": "retrain__w2" if retrain else None,
                "details": {"realized": {"rmse": 3.2}}})
        return "success"

    def follow_training(self, run_id: str) -> str:
        self.followed.append(run_id)
        return "success"

    def training_state(self, run_id: str) -> str | None:
        return "success"


def test_the_loop_serves_each_day_to_the_models_route_lands_outcomes_after_the_delay_and_follows_retrains(
        state, history):
    import httpx

    from pipelines.replay import replay_windows

    cfg = load_model_config("shop")
    posted = []

    def serve(request: httpx.Request) -> httpx.Response:
        import json

        body = json.loads(request.content)["dataframe_split"]
        posted.append((request.url.path, request.headers["X-Request-ID"], body["columns"], len(body["data"])))
        return httpx.Response(200, json={"predictions": [50.0] * len(body["data"])})

    def logged_a_poll_late(cfg, start, end) -> int:
        """The service's log: what was posted for the window, written only by the second poll."""
        polls.append(start)
        days = {d.isoformat() for d in pd.date_range(start, end, inclusive="left").date}
        return sum(n for _, request_id, _, n in posted if request_id[:10] in days) if len(polls) % 2 == 0 else 0

    runs, said, polls = FakeRuns(state), [], []
    runs.polls = polls
    replayed = replay_windows(cfg, state, replay_source(cfg, [str(history)]), "http://service",
                              ReplayPlan(date(2024, 3, 1), date(2024, 3, 5), every=2, label_delay_days=1), runs,
                              say=said.append, client=httpx.Client(transport=httpx.MockTransport(serve)),
                              logged_rows=logged_a_poll_late)
    assert {path for path, *_ in posted} == {"/models/shop/invocations"}
    assert all(columns == ["basket", "items", "channel", "ordered_at"] for _, _, columns, _ in posted)
    assert sum(n for *_, n in posted) == 200 and posted[0][1].startswith("2024-03-01-shop-")
    assert [w.served for w in replayed] == [100, 100]
    # A day's outcomes land once the next day has been served: the window's last day is still pending.
    assert runs.labelled_at_monitor == {date(2024, 3, 1): ["2024-03-01"],
                                        date(2024, 3, 3): ["2024-03-01", "2024-03-02", "2024-03-03"]}
    outcomes = state.landing("shop", "outcomes")
    assert sorted(p.stem for p in outcomes.iterdir()) == ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
    landed = pd.read_parquet(outcomes / "2024-03-02.parquet")
    assert list(landed.columns) == ["request_id", "row_index", "spent"] and len(landed) == 50
    assert runs.followed == ["retrain__w2"] and replayed[1].training_state == "success"
    # Each monitor ran only once the log held every row the window served.
    assert runs.polls_at_monitor == {date(2024, 3, 1): 2, date(2024, 3, 3): 4}
    assert said[0].startswith("2024-03-01..2024-03-03: served   100, monitor success, drift share 0.25, "
                              "realized rmse 3.200, champion v1: ok")
    assert "    retrain: drift" in said and "    training run retrain__w2: success" in said


def test_a_log_that_does_not_catch_up_stops_the_replay_saying_what_it_holds(state):
    from pipelines.replay import wait_until_logged

    cfg = load_model_config("shop")
    with pytest.raises(RuntimeError, match=r"shop: the prediction log holds 3 of the 5 rows served for "
                                           r"2024-03-01\.\.2024-03-03 after 0 s"):
        wait_until_logged(cfg, date(2024, 3, 1), date(2024, 3, 3), 5, lambda *_: 3, timeout_s=0)


@pytest.mark.parametrize(("shift", "says"), [
    ("basket*2", "error: shift 'basket*2' has no @DAY"),
    ("coupon+1@2024-03-02", "error: shift 'coupon+1@2024-03-02': shop has no column 'coupon' in its feeds or features"),
])
def test_the_command_refuses_a_bad_shift_before_anything_lands(state, history, shift, says):
    from pipelines.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["replay", "shop", "--source", str(history), "--shift", shift])
    assert exited.value.code.startswith(says) and not state.root.exists()


class FakeAirflowApi:
    """The calls StackRuns makes of pipelines.airflow_edge.airflow_api.AirflowApi, answered from memory."""

    def __init__(self):
        self.triggered, self.followed = [], []

    def trigger(self, dag_id: str, conf: dict) -> str:
        self.triggered.append((dag_id, conf))
        return "manual__1"

    def wait(self, runs, progress=print) -> dict:
        self.followed.extend(runs)
        return {dag_id: {"state": "success", "dag_run_id": run_id} for dag_id, run_id in runs}

    def get(self, path: str):
        import httpx

        known = path == "/dags/train_shop/dagRuns/retrain__w2"
        return httpx.Response(200 if known else 404, json={"state": "running"} if known else {})


def test_the_stack_runs_trigger_the_monitor_with_the_window_and_follow_only_a_run_that_exists(state):
    from pipelines.airflow_edge.stack_runs import StackRuns

    api = FakeAirflowApi()
    runs = StackRuns(load_model_config("shop"), api)
    assert runs.monitor(date(2024, 3, 1), date(2024, 3, 8)) == "success"
    assert api.triggered == [("monitor_shop", {"window_start": "2024-03-01", "window_end": "2024-03-08",
                                               "reason": "replay"})]
    assert runs.training_state("retrain__w2") == "running" and runs.training_state("nope") is None
    assert runs.follow_training("nope") == "not started"
    assert runs.follow_training("retrain__w2") == "success"
    assert api.followed == [("monitor_shop", "manual__1"), ("train_shop", "retrain__w2")]
