"""Monitoring judged against the model's own history: drift limits calibrated on reference windows, the
champion's holdout value as the performance baseline with the window's noise, and performance estimated
from calibrated probabilities before the labels land."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.calibration import calibrate, metric_baselines
from pipelines.config import ModelConfig
from pipelines.monitoring import (
    WindowMeasurement,
    decide,
    estimate_performance,
    measure_window,
    scan_frame,
    signals,
)
from pipelines.monitoring_limits import Calibration, resolve
from pipelines.task_types.binary import _expected_metric


def config(task: str = "regression", **monitoring) -> ModelConfig:
    target = {"regression": "y", "binary": "label"}[task]
    return ModelConfig.model_validate({
        "name": "own_table", "task": task,
        "feeds": [{"name": "rows", "columns": {"day": "datetime", "season": "float", "x": "float", "shop": "string",
                                               target: "float" if task == "regression" else "string"}}],
        "features": {"numeric": ["season", "x"], "categorical": ["shop"], "target": target, "event_time": "day",
                     **({"positive_class": "1"} if task == "binary" else {})},
        "monitoring": {"window_days": 7, "min_rows": 100, **monitoring},
    })


def history(days: int, start: date = date(2020, 1, 1), rows_per_day: int = 60, seed: int = 0) -> pd.DataFrame:
    """A table whose ``season`` follows a 28-day cycle (a week never looks like the whole reference), with
    a steady numeric column, a category, and a target that depends on both numbers."""
    rng = np.random.default_rng(seed)
    day = np.repeat(np.arange(days), rows_per_day)
    season = 10 * np.sin(2 * np.pi * day / 28) + rng.normal(0, 1, day.size)
    x = rng.normal(0, 1, day.size)
    return pd.DataFrame({
        "day": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(day, unit="D"), "season": season, "x": x,
        "shop": rng.choice(["a", "b", "c"], size=day.size, p=[0.5, 0.3, 0.2]),
        "y": 2 * x + 0.2 * season + rng.normal(0, 1, day.size),
    })


def measured(cfg: ModelConfig, frame: pd.DataFrame, calibration: Calibration | None, profile_of: pd.DataFrame):
    from pipelines.drift import profile_reference

    limits = resolve(cfg, calibration)
    frame = frame.assign(prediction=0.0)
    profile = profile_reference(profile_of.assign(prediction=0.0), ["season", "x", "prediction"], ["shop"])
    return measure_window(cfg, scan_frame(cfg, frame), profile, None, None, "1", limits), limits


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return history(120)


@pytest.fixture(scope="module")
def calibration(reference) -> Calibration:
    cfg = config()
    holdout = reference.iloc[-1000:]
    return calibrate(cfg, reference, np.zeros(len(reference)), holdout["y"].to_numpy(),
                     (2 * holdout["x"] + 0.2 * holdout["season"]).to_numpy(), None, None)


def test_the_reference_is_cut_into_windows_of_the_monitoring_window(calibration):
    # 120 days: 17 weeks, and one day of 60 rows, fewer than min_rows (not a window)
    assert calibration.method == "windows of 7 day(s)" and calibration.windows == 17
    assert calibration.window_rows == 420
    assert set(calibration.column_limits) == {"season", "x", "shop"}


def test_a_normal_week_of_a_seasonal_table_is_drift_under_evidentlys_defaults_and_not_under_its_own_limits(
        reference, calibration):
    cfg = config()
    later = history(56, start=date(2020, 4, 30), seed=1)  # eight more weeks of the same process
    weeks = [later[(later.day >= later.day.min() + timedelta(days=7 * w))
                   & (later.day < later.day.min() + timedelta(days=7 * (w + 1)))] for w in range(8)]
    default = [measured(cfg, week, None, reference)[0] for week in weeks]
    own = [measured(cfg, week, calibration, reference)[0] for week in weeks]
    assert sum("season" in m.drifted_columns for m in default) >= 6  # a week of a cycle against the whole cycle
    assert not any("season" in m.drifted_columns for m in own)
    assert sum(len(m.drifted_columns) for m in own) <= 1  # of 24 column-weeks: a mean + 3 std limit's odd one
    assert not any(m.dataset_drift for m in own)
    assert calibration.column_limits["season"] > 1.0  # a week of the cycle is that far from the whole


def test_a_shifted_column_drifts_against_its_own_limit_and_a_normal_window_never_reaches_the_share(
        reference, calibration):
    cfg = config()
    week = history(7, start=date(2020, 4, 30), seed=2)
    m, limits = measured(cfg, week.assign(x=week.x + 0.5), calibration, reference)
    assert m.drifted_columns == ["x"]
    assert limits.drift_share == calibration.drift_share and m.drift_share < limits.drift_share
    both, _ = measured(cfg, week.assign(x=week.x + 0.5, shop="c"), calibration, reference)
    assert sorted(both.drifted_columns) == ["shop", "x"] and both.dataset_drift


def test_the_config_overrides_a_calibrated_limit(calibration):
    cfg = config(drift={"thresholds": {"x": 0.9}, "drift_share": 0.4})
    limits = resolve(cfg, calibration)
    assert limits.column_limit("x") == 0.9 and limits.drift_share == 0.4
    assert limits.column_limit("season") == calibration.column_limits["season"]


def test_an_error_far_above_the_holdouts_is_a_performance_signal_and_one_within_the_noise_is_not(calibration):
    cfg = config()
    limits = resolve(cfg, calibration)
    rmse = calibration.baselines["rmse"]
    assert rmse.value == pytest.approx(1.0, abs=0.1) and rmse.rows == 420
    window = WindowMeasurement(date(2020, 5, 1), date(2020, 5, 8), "1", 400, labelled_rows=400)
    window.realized = {"rmse": rmse.value * 2.8}
    decision = decide(cfg, window, [], limits)
    assert [s.name for s in decision.signals] == ["performance"]
    assert "against the champion's holdout" in decision.signals[0].detail
    window.realized = {"rmse": rmse.value + rmse.noise(400)}  # one standard deviation worse: noise
    assert decide(cfg, window, [], limits).action == "ok"


def test_a_window_still_waiting_for_some_labels_is_judged_on_those_landed_within_their_wider_noise(calibration):
    cfg = config(min_rows=200)  # and performance.min_labelled_rows 100
    limits = resolve(cfg, calibration)
    rmse = calibration.baselines["rmse"]
    window = WindowMeasurement(date(2020, 5, 1), date(2020, 5, 8), "1", 250, labelled_rows=150, pending_labels=100)
    window.realized = {"rmse": rmse.value * 1.5}
    assert 1.5 * rmse.value - rmse.value > limits.confidence_z * rmse.noise(150)
    assert [s.name for s in decide(cfg, window, [], limits).signals] == ["performance"]
    window.labelled_rows, window.pending_labels = 60, 190  # too few to judge: ok, and says so
    decision = decide(cfg, window, [], limits)
    assert decision.action == "ok" and decision.reason == (
        "no signal (realized performance not judged yet: 60 of 250 rows labelled, fewer than 100; the labels "
        "still to land are judged with the next windows)")


def test_the_baselines_noise_shrinks_with_the_square_root_of_the_rows():
    cfg = config()
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1, 5000)
    baselines = metric_baselines(cfg, truth, truth + rng.normal(0, 1, 5000), None, None, rows=400)
    rmse = baselines["rmse"]
    assert rmse.holdout_rows == 5000
    # a window's noise and the holdout value's add: sqrt(400/1600 + 400/5000) of the spread at 400 rows
    assert rmse.noise(1600) == pytest.approx(rmse.spread * np.sqrt(0.25 + 0.08))
    assert rmse.noise(400) == pytest.approx(rmse.spread * np.sqrt(1 + 0.08))
    # the bootstrap spread of RMSE at 400 rows of unit-variance errors is about 1 / sqrt(2 * 400)
    assert rmse.spread == pytest.approx(1 / np.sqrt(800), rel=0.3)


def test_a_window_that_failed_validation_is_invalid_data_and_names_the_expectation(calibration):
    cfg = config()
    quiet = WindowMeasurement(date(2020, 5, 1), date(2020, 5, 8), "1", 400)
    decision = decide(cfg, quiet, [], resolve(cfg, calibration), "expect_column_max_to_be_between(year) failed")
    assert decision.action == "invalid_data"
    assert decision.signals[0].name == "validation" and "expect_column_max_to_be_between(year)" in decision.reason
    assert "--replace" in decision.reason and "train_own_table" in decision.reason


def test_the_expected_roc_auc_of_a_hand_computed_case():
    # Scores 0.9, 0.8, 0.3, 0.2 taken as the chances of being positive. Expected positives and negatives
    # above each cut: TP 0.9, 1.7, 2.0, 2.2 and FP 0.1, 0.3, 1.0, 1.8, so the curve passes through
    # (FPR, TPR) = (1/18, 9/22), (3/18, 17/22), (10/18, 20/22), (1, 1); the area under it is 0.8283.
    scores = np.array([0.2, 0.9, 0.3, 0.8])
    assert _expected_metric("roc_auc", scores, scores, 0.5) == pytest.approx(0.82828, abs=1e-4)


def test_the_estimate_follows_the_realized_roc_auc_under_covariate_shift_and_says_when_it_cannot():
    from sklearn.metrics import roc_auc_score

    cfg = config("binary")
    task = cfg.task_type
    rng = np.random.default_rng(3)
    logit = rng.normal(0, 1.5, 20_000)
    truth = np.where(rng.random(logit.size) < 1 / (1 + np.exp(-logit)), "1", "0")
    scores = 1 / (1 + np.exp(-(0.6 * logit + 0.4)))  # ranks right, probabilities off: needs calibration
    estimator, note = task.fit_estimator(truth[:5000], scores[:5000], ["0", "1"], "roc_auc")
    # the scores are a logistic distortion of the true chances: Platt's map undoes it, and is chosen
    assert estimator.usable and "(logistic map): off by" in note and "(isotonic " in note
    limits = resolve(cfg, Calibration("bootstrap windows", 30, 1000, {}, {}, 0.5, None, {}, estimator, note))
    shifted = logit[5000:] > 0.5  # a window of the riskier rows only: its ROC AUC is lower
    m = WindowMeasurement(None, None, "1", int(shifted.sum()))
    estimate_performance(cfg, m, scores[5000:][shifted], limits)
    realized = roc_auc_score(truth[5000:][shifted] == "1", scores[5000:][shifted])
    assert realized < 0.75 and m.estimated["roc_auc"] == pytest.approx(realized, abs=0.03)
    regression = config()
    m = WindowMeasurement(None, None, "1", 500)
    estimate_performance(regression, m, np.zeros(500), resolve(regression, None))
    assert m.estimated == {} and m.estimate_note.startswith("not estimated: a regression's error")


def test_a_table_of_an_older_release_gains_the_task_neutral_columns(tmp_path):
    from pipelines import monitoring_store as store

    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    old = sa.create_engine(url)
    with old.begin() as connection:
        connection.execute(sa.text(
            "CREATE TABLE monitoring_metrics (id INTEGER PRIMARY KEY, model_name VARCHAR(200) NOT NULL, "
            "window_start DATE NOT NULL, window_end DATE NOT NULL, computed_at DATETIME NOT NULL, "
            "airflow_run_id VARCHAR(250), model_version VARCHAR(32), rows INTEGER NOT NULL, drift_share FLOAT, "
            "dataset_drift BOOLEAN, prediction_drift FLOAT, labelled_rows INTEGER NOT NULL, "
            "pending_labels INTEGER NOT NULL, realized_roc_auc FLOAT, realized_pr_auc FLOAT, realized_brier FLOAT, "
            "data_valid BOOLEAN, breached BOOLEAN NOT NULL, cleared BOOLEAN NOT NULL, decision VARCHAR(32) NOT NULL, "
            "reason TEXT NOT NULL, triggered_run_id VARCHAR(250), report_path TEXT, details TEXT NOT NULL)"))
    engine = store.engine(url)
    with engine.begin() as connection:
        store.save_window(connection, {
            "model_name": "m", "window_start": date(2020, 1, 1), "window_end": date(2020, 1, 8), "rows": 10,
            "labelled_rows": 5, "pending_labels": 0, "metric": "rmse", "realized": 2.0, "estimated": None,
            "baseline": 1.0, "breached": False, "cleared": True, "decision": "ok", "reason": "", "details": {}})
        (row,) = store.load_windows(connection, "m")
    assert (row["metric"], row["realized"], row["baseline"]) == ("rmse", 2.0, 1.0)


def test_a_performance_metric_the_served_output_cannot_measure_is_refused_at_load():
    with pytest.raises(ValueError, match="log_loss.*cannot be measured from the served multiclass"):
        ModelConfig.model_validate({**config().model_dump(exclude_none=True), "task": "multiclass",
                                    "monitoring": {"performance": {"metrics": ["log_loss"]}}})


def every_rule_fires_case():
    """For each rule: a window that raises it (and nothing else raises it in the quiet window)."""
    from pipelines.monitoring_limits import MetricBaseline

    base = MetricBaseline("rmse", 1.0, False, 0.05, 400)
    limits = resolve(config(drift={"key_features": {"x": 0.3}}), None)
    limits = limits.__class__(**{**limits.__dict__, "baselines": {"rmse": base}, "ceilings": {"rmse": 5.0}})

    def window(**fields):
        m = WindowMeasurement(date(2020, 5, 1), date(2020, 5, 8), "1", 400, drift_share=0.0,
                              drift_scores={"x": 0.0}, prediction_drift=0.0)
        for name, value in fields.items():
            setattr(m, name, value)
        return m

    return limits, window(), {
        "dataset_drift": window(drift_share=0.6, drifted_columns=["x", "season"]),
        "key_feature_drift": window(drift_scores={"x": 0.31}),
        "prediction_drift": window(prediction_drift=0.25),
        "performance": window(labelled_rows=400, realized={"rmse": 1.4}),
        "estimated_performance": window(estimated={"rmse": 1.4}),
        "data_quality": window(quality_alerts=["x: 30.0% of rows missing (limit 5%)"]),
    }


@pytest.mark.parametrize("rule", ["dataset_drift", "key_feature_drift", "prediction_drift", "performance",
                                  "estimated_performance", "data_quality"])
def test_every_rule_raises_its_signal_with_its_evidence_and_stays_quiet_on_a_quiet_window(rule):
    from pipelines.monitoring import RULES, signals

    limits, quiet, firing = every_rule_fires_case()
    assert set(RULES) == set(firing)  # a new rule gets a case here
    assert signals(quiet, limits) == []
    raised = RULES[rule](firing[rule], limits, 1.0)
    assert [s.name for s in raised] == [rule] and raised[0].detail
    assert [s.name for s in signals(firing[rule], limits)] == [rule]


def test_by_default_drift_is_shown_and_alerted_but_only_performance_and_key_features_start_a_retrain(calibration):
    cfg = config()
    limits = resolve(cfg, calibration)
    drifted = WindowMeasurement(date(2020, 5, 1), date(2020, 5, 8), "1", 400, drift_share=1.0,
                                drifted_columns=["season", "x", "shop"], prediction_drift=9.0)
    decision = decide(cfg, drifted, [], limits)
    assert decision.action == "ok" and {s.name for s in decision.signals} == {"dataset_drift", "prediction_drift"}
    assert decision.reason.startswith("no retrain signal; noted: ")


def test_the_stratified_rmse_of_a_hand_computed_case():
    # Strata of x: below 1.0 (holdout MSE 4) and from 1.0 (MSE 16). A window of three rows below and one above
    # weighs them 3:1: sqrt((3 * 4 + 1 * 16) / 4) = sqrt(7). Rows in a stratum the holdout cannot speak for
    # (a category it never had) are left out while they are few, and make the window unestimated when many.
    from pipelines.task_types.estimation import ErrorProfile
    from pipelines.task_types.regression import stratified_rmse

    numeric = ErrorProfile("x", "numeric", [1.0], [], [4.0, 16.0], 1.0, 0.05)
    assert stratified_rmse(numeric, np.array([0.5, 2.0]), np.array([3, 1]), 0.8) == pytest.approx(np.sqrt(7))
    shops = ErrorProfile("shop", "categorical", [], ["a", "b", "c"], [1.0, 9.0, None], 1.0, 0.05)
    # "c" has too few holdout rows, "d" is new: 1 of 10 rows unknown is within the coverage of 0.8
    assert stratified_rmse(shops, np.array(["a", "b", "d"], dtype=object), np.array([6, 3, 1]), 0.8) == \
        pytest.approx(np.sqrt((6 * 1.0 + 3 * 9.0) / 9))
    assert np.isnan(stratified_rmse(shops, np.array(["a", "c"], dtype=object), np.array([5, 5]), 0.8))


def heteroscedastic(days: int, seed: int, start: date = date(2020, 1, 1)) -> pd.DataFrame:
    """A regression whose error grows with ``x`` (as an arrival delay's does late in the day), a ``season`` of
    no bearing on the error, and a ``shop`` whose error depends on the day it was seen: shop a has its bad
    days (a storm) on even days, shop b on odd ones, so what its strata say on some days does not hold on
    others."""
    rng = np.random.default_rng(seed)
    day = np.repeat(np.arange(days), 200)
    x = rng.uniform(0, 10, day.size)
    shop = rng.choice(["a", "b", "c"], day.size)
    scale = (1 + x) * np.where(shop == np.where(day % 2 == 0, "a", "b"), 3.0, 1.0)
    return pd.DataFrame({"day": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(day, unit="D"), "x": x,
                         "season": rng.normal(0, 1, day.size), "shop": shop,
                         "y": 2 * x + rng.normal(0, 1, day.size) * scale})


def test_the_regression_estimate_follows_a_shift_towards_larger_errors_and_refuses_a_profile_that_does_not_hold():
    from pipelines.drift import profile_reference

    cfg = config()
    task = cfg.task_type
    holdout = heteroscedastic(20, seed=4)
    importance = {"x": 0.9, "shop": 0.3, "season": 0.0}
    estimator, note = task.fit_estimator(holdout.y.to_numpy(), 2 * holdout.x.to_numpy(), None, "rmse",
                                         holdout=holdout, importance=importance)
    assert estimator.usable and [p.feature for p in estimator.profiles] == ["x"]
    assert "refused: shop (off by" in note  # its strata's errors moved with the day
    assert estimator.profiles[0].check_error <= task.MAX_CHECK_ERROR
    limits = resolve(cfg, Calibration("bootstrap windows", 30, 1000, {}, {}, 0.5, None,
                                      metric_baselines(cfg, holdout.y.to_numpy(), 2 * holdout.x.to_numpy(), None,
                                                       None, rows=1400), estimator, note))
    later = heteroscedastic(7, seed=5, start=date(2020, 2, 1))
    for window, worse in ((later, False), (later[later.x > 5], True)):  # as it is; only the larger x
        m = WindowMeasurement(None, None, "1", len(window))
        profile = profile_reference(window, ["x", "season"], ["shop"])
        estimate_performance(cfg, m, 2 * window.x.to_numpy(), limits, profile)
        realized = float(np.sqrt(np.mean((window.y - 2 * window.x) ** 2)))
        assert m.estimated["rmse"] == pytest.approx(realized, rel=0.1)
        assert [s.name for s in signals(m, limits)] == (["estimated_performance"] if worse else [])
    # without the holdout's rows (a version calibrated before) it says so, and estimates nothing
    none, why = task.fit_estimator(holdout.y.to_numpy(), 2 * holdout.x.to_numpy(), None, "rmse")
    assert none is None and why.startswith("not estimated: a regression's error")
    # the window says why its champion's calibration made no estimator: the calibration's own reason
    small, why = task.fit_estimator(holdout.y.to_numpy()[:500], 2 * holdout.x.to_numpy()[:500], None, "rmse",
                                    holdout=holdout.iloc[:500], importance={"x": 1.0})
    limits = resolve(cfg, Calibration("bootstrap windows", 30, 1000, {}, {}, 0.5, None, {}, small, why))
    m = WindowMeasurement(None, None, "1", 500)
    estimate_performance(cfg, m, np.zeros(500), limits)
    assert small is None and m.estimated == {} and m.estimate_note == why
    assert why.startswith("not estimated: the holdout has fewer than")


def test_a_calibration_keeps_the_regression_estimator_through_its_stored_form(reference):
    import json

    cfg = config()
    holdout = reference.iloc[-2000:]
    calibration = calibrate(cfg, reference, np.zeros(len(reference)), holdout["y"].to_numpy(),
                            (2 * holdout["x"] + 0.2 * holdout["season"]).to_numpy(), None, None,
                            holdout=holdout, importance={"x": 1.0, "season": 0.1, "shop": 0.0})
    stored = Calibration.from_dict(json.loads(json.dumps(calibration.as_dict(), allow_nan=False)))
    assert stored == calibration and stored.estimator.profiles
    assert {p.feature for p in stored.estimator.profiles} <= {"x", "season"}


def test_the_feature_importance_ranks_the_feature_the_model_relies_on_first():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    from pipelines.monitoring_tasks import feature_importance
    from pipelines.training import model_inputs

    cfg = config()
    frame = history(30)  # y = 2 x + 0.2 season + noise, season spread 10 times as wide as x
    model = make_pipeline(ColumnTransformer([("numbers", "passthrough", ["season", "x"])]), LinearRegression())
    model.fit(model_inputs(frame, cfg.features), frame.y)
    importance = feature_importance(cfg, model, frame)
    assert max(importance, key=importance.get) == "x" and importance["shop"] == pytest.approx(0.0)


def test_the_holdout_is_checked_on_alternate_days_when_it_has_an_event_time():
    task = config().task_type
    days = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(np.repeat(np.arange(6), 10), unit="D")
    holdout = pd.DataFrame({"day": days.to_numpy()[::-1], "x": np.arange(60.0)})  # in any order
    halves = task.holdout_halves(holdout, seed=0)
    assert (halves == (holdout.day.dt.day % 2 == 0).to_numpy()).all() or \
        (halves == (holdout.day.dt.day % 2 == 1).to_numpy()).all()
    at_random = task.holdout_halves(holdout.drop(columns="day"), seed=0)
    assert at_random.sum() == 30 and not (at_random == halves).all()
