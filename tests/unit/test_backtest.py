"""The measure and decide steps over history, in process: normal weeks of a seasonal table start nothing,
a concept change that makes the champion worse starts a retrain within two windows, and a window whose data
failed validation is never ok."""

from datetime import date, timedelta

import numpy as np
import pytest
from test_monitoring_limits import config, history

from pipelines.backtest import backtest
from pipelines.calibration import calibrate
from pipelines.monitoring_limits import resolve


@pytest.fixture(scope="module")
def judged_history():
    cfg = config()
    reference, later = history(120), history(84, start=date(2020, 4, 30), seed=5)

    def scores(frame):  # the champion: the true relation, as a model trained on the reference learned it
        return (2 * frame.x + 0.2 * frame.season).to_numpy()

    holdout = reference.iloc[-1000:]
    calibration = calibrate(cfg, reference, scores(reference), holdout.y.to_numpy(), scores(holdout), None, None)
    shift_from = date(2020, 4, 30) + timedelta(days=56)
    drifted = later.day >= str(shift_from)
    later.loc[drifted, "y"] += 3 * np.sin(later.loc[drifted, "x"] * 3)  # a concept change the model misses
    start, end = date(2020, 4, 30), date(2020, 4, 30) + timedelta(days=84)
    invalid = {(start + timedelta(days=14), start + timedelta(days=21))}
    return backtest(cfg, reference, scores(reference), later, scores(later), resolve(cfg, calibration), None, None,
                    start, end, invalid=invalid)


def test_normal_weeks_start_nothing_and_a_failed_validation_is_never_ok(judged_history):
    actions = [w.decision.action for w in judged_history]
    assert len(actions) == 12
    assert actions[:8] == ["ok", "ok", "invalid_data", "ok", "ok", "ok", "ok", "ok"]


def test_a_concept_change_starts_a_retrain_within_two_windows(judged_history):
    after = [w.decision for w in judged_history[8:]]
    assert after[0].action == "hold" and after[1].action == "retrain"
    assert any(s.name == "performance" for s in after[0].signals)
