"""The retrain policy: a noisy window starts nothing, a long drift starts one retrain per cooldown, data
that failed validation starts none, and late labels are counted, not guessed."""

from datetime import date, timedelta

import pandas as pd
import pytest

from pipelines.config import MonitoringConfig, RetrainPolicy
from pipelines.monitoring import WindowMeasurement, WindowRecord, decide, join_labels, record_of
from pipelines.monitoring_limits import resolve

DAY0 = date(2013, 7, 1)


@pytest.fixture()
def cfg(flights_config):
    # the streak mechanics, driven by the dataset-drift share (counted here, as the flights' configs do)
    monitoring = MonitoringConfig(min_rows=100, performance_floors={"roc_auc": 0.6}, retrain=RetrainPolicy(
        consecutive_windows=2, cooldown_days=7, clear_ratio=0.5,
        signals=["dataset_drift", "key_feature_drift", "performance"]))
    return flights_config.model_copy(update={"monitoring": monitoring})


def window(day: int, share: float, rows: int = 1000) -> WindowMeasurement:
    start = DAY0 + timedelta(days=day)
    return WindowMeasurement(start, start + timedelta(days=1), "1", rows, drift_share=share,
                             dataset_drift=share >= 0.5)


def replay(cfg, shares: list[float], valid: bool = True) -> list[str]:
    """Decide each window in order, as the DAG does, and return the actions."""
    history: list[WindowRecord] = []
    actions = []
    for day, share in enumerate(shares):
        m = window(day, share)
        limits = resolve(cfg, None)
        decision = decide(cfg, m, history, limits, None if valid else "expect_column_values_to_be_between(temp)")
        history.append(record_of(m, cfg, decision.action, limits))
        actions.append(decision.action)
    return actions


def test_one_noisy_window_starts_nothing(cfg):
    assert replay(cfg, [0.1, 0.6, 0.1, 0.1, 0.6, 0.1]) == ["ok", "hold", "ok", "ok", "hold", "ok"]


def test_a_window_between_the_thresholds_holds_the_streak(cfg):
    # 0.3 is under the 0.5 threshold but over the 0.25 clearing level: the streak is neither broken nor grown.
    assert replay(cfg, [0.6, 0.3, 0.6]) == ["hold", "ok", "retrain"]


def test_a_long_drift_starts_one_retrain_per_cooldown(cfg):
    actions = replay(cfg, [0.7] * 12)
    assert actions.count("retrain") == 2
    assert actions[:2] == ["hold", "retrain"]
    first, second = [i for i, a in enumerate(actions) if a == "retrain"]
    assert second - first >= 7


def test_data_that_failed_validation_never_starts_a_retrain(cfg):
    assert "retrain" not in replay(cfg, [0.7] * 4, valid=False)
    assert replay(cfg, [0.7] * 4, valid=False) == ["invalid_data"] * 4  # never ok, never a retrain


def test_a_gap_in_the_windows_ends_the_streak(cfg):
    m = window(30, 0.7)
    # a breach a month ago is not "the window before"
    earlier = record_of(window(0, 0.7), cfg, "hold", resolve(cfg, None))
    assert decide(cfg, m, [earlier], resolve(cfg, None)).action == "hold"
    yesterday = record_of(window(29, 0.7), cfg, "hold", resolve(cfg, None))
    assert decide(cfg, m, [earlier, yesterday], resolve(cfg, None)).action == "retrain"


def test_small_windows_are_reported_not_judged(cfg):
    assert decide(cfg, window(0, 0.9, rows=50), [], resolve(cfg, None)).action == "insufficient"


def test_realized_performance_below_floor_is_a_breach(cfg):
    m = window(0, 0.0)
    m.labelled_rows, m.realized = 500, {"roc_auc": 0.52, "pr_auc": 0.4}
    decision = decide(cfg, m, [], resolve(cfg, None))
    assert decision.action == "hold" and decision.signals[0].name == "performance"
    assert "roc_auc 0.520 < floor 0.600" in decision.reason


def test_key_feature_drift_alone_is_a_breach(cfg):
    cfg = cfg.model_copy(update={"monitoring": cfg.monitoring.model_copy(
        update={"drift": cfg.monitoring.drift.model_copy(update={"key_features": {"temp": 1.0}})})})
    m = window(0, 0.1)
    m.drift_scores = {"temp": 1.4}
    assert [s.name for s in decide(cfg, m, [], resolve(cfg, None)).signals] == ["key_feature_drift"]


def test_labels_join_by_request_and_row_and_pending_ones_are_counted():
    served = pd.DataFrame({"request_id": ["a", "a", "b", "c"], "row_index": [0, 1, 0, 0],
                           "prediction": [0.9, 0.2, 0.5, 0.4]})
    labels = pd.DataFrame({"request_id": ["a", "a", "b", "b"], "row_index": [0, 1, 0, 0], "delayed": [1, 0, 0, 1]})
    joined, pending = join_labels(served, labels, "delayed")
    assert pending == 1  # request c has no outcome yet
    assert joined[["request_id", "row_index", "delayed"]].values.tolist() == [["a", 0, 1], ["a", 1, 0], ["b", 0, 1]]
    # b's outcome landed twice: the last one wins


def test_a_breaching_window_with_no_landed_data_holds_instead_of_retraining(cfg):
    limits = resolve(cfg, None)
    history = [record_of(window(0, 0.7), cfg, "hold", limits)]
    decision = decide(cfg, window(1, 0.7), history, limits, landed=False)
    assert decision.action == "hold" and "no data landed" in decision.reason
    assert decide(cfg, window(1, 0.7), history, limits).action == "retrain"


def test_a_retrain_trains_on_the_models_history_up_to_the_windows_end(flights_config):
    """The champion was trained on [2013-01-01, 2013-04-01). A window inside that interval and one after it
    both retrain on everything from the model's first day to the window's end; a training window
    (split.training_window_days) bounds that history as it bounds any training run's."""
    from pipelines.config import SplitConfig
    from pipelines.monitoring_tasks import MonitorContext, retrain_conf

    assert flights_config.default_interval == (date(2013, 1, 1), date(2013, 4, 1))
    inside = MonitorContext("monitor_flights_delay", "scheduled__2013-03-08", date(2013, 3, 1), date(2013, 3, 8))
    after = MonitorContext("monitor_flights_delay", "scheduled__2013-06-08", date(2013, 6, 1), date(2013, 6, 8))
    conf = retrain_conf(flights_config, inside, "dataset drift")
    assert conf == {"data_interval_start": "2013-01-01", "data_interval_end": "2013-03-08",
                    "reason": "monitor_flights_delay 2013-03-01_2013-03-08: dataset drift",
                    "triggered_by": "scheduled__2013-03-08"}
    conf = retrain_conf(flights_config, after, "dataset drift")
    assert (conf["data_interval_start"], conf["data_interval_end"]) == ("2013-01-01", "2013-06-08")
    windowed = flights_config.model_copy(update={"split": SplitConfig(training_window_days=28)})
    conf = retrain_conf(windowed, after, "dataset drift")
    assert (conf["data_interval_start"], conf["data_interval_end"]) == ("2013-05-11", "2013-06-08")
    before = MonitorContext("monitor_flights_delay", "manual__x", date(2012, 12, 1), date(2012, 12, 8))
    conf = retrain_conf(flights_config, before, "dataset drift")  # before the model's first day: the window
    assert (conf["data_interval_start"], conf["data_interval_end"]) == ("2012-12-01", "2012-12-08")
