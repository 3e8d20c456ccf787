import pytest

from pipelines.config import GatePolicy, SliceFloor
from pipelines.gate import EvaluationReport, decide_promotion
from pipelines.task_types import BinaryClassification

DIRECTIONS = BinaryClassification.metrics

POLICY = GatePolicy(floors={"roc_auc": 0.6}, ceilings={"brier": 0.25}, margin_metric="roc_auc", min_margin=0.01,
                    slice_floors=[SliceFloor(column="origin", metric="roc_auc", floor=0.55, min_rows=100)])


def report(auc=0.7, brier=0.2, slices=None, version=None):
    slices = slices if slices is not None else [
        {"column": "origin", "value": "EWR", "rows": 500, "roc_auc": 0.7},
        {"column": "origin", "value": "JFK", "rows": 500, "roc_auc": 0.68},
    ]
    return EvaluationReport(metrics={"roc_auc": auc, "brier": brier}, slices=slices, model_version=version)


def test_first_model_passing_floors_is_promoted():
    decision = decide_promotion(report(), None, POLICY, DIRECTIONS)
    assert decision.promote and decision.verdict == "approved"
    assert any("no current champion" in r.message for r in decision.reasons)


def test_candidate_below_floor_is_rejected_with_the_observed_value():
    decision = decide_promotion(report(auc=0.52), None, POLICY, DIRECTIONS)
    assert not decision.promote
    [floor] = [r for r in decision.failed if r.check == "floor:roc_auc"]
    assert floor.observed == 0.52 and "0.5200 is below floor 0.6000" in floor.message


def test_candidate_must_beat_champion_by_the_margin():
    assert not decide_promotion(report(auc=0.705), report(auc=0.70, version="3"), POLICY, DIRECTIONS).promote
    assert decide_promotion(report(auc=0.72), report(auc=0.70, version="3"), POLICY, DIRECTIONS).promote


def test_ceiling_on_lower_is_better_metric():
    decision = decide_promotion(report(brier=0.3), None, POLICY, DIRECTIONS)
    assert [r.check for r in decision.failed] == ["ceiling:brier"]


def test_one_weak_slice_blocks_promotion_and_is_named():
    slices = [{"column": "origin", "value": "EWR", "rows": 500, "roc_auc": 0.7},
              {"column": "origin", "value": "LGA", "rows": 500, "roc_auc": 0.5}]
    decision = decide_promotion(report(slices=slices), None, POLICY, DIRECTIONS)
    assert not decision.promote
    assert [r.check for r in decision.failed] == ["slice:origin=LGA:roc_auc"]
    assert "origin=LGA" in decision.summary()


def test_small_slice_is_reported_but_not_gated():
    slices = [{"column": "origin", "value": "EWR", "rows": 500, "roc_auc": 0.7},
              {"column": "origin", "value": "TINY", "rows": 5, "roc_auc": 0.1}]
    decision = decide_promotion(report(slices=slices), None, POLICY, DIRECTIONS)
    assert decision.promote
    assert any("TINY" in r.message and "not gated" in r.message for r in decision.reasons)


def test_missing_slice_fails_closed():
    decision = decide_promotion(report(slices=[]), None, POLICY, DIRECTIONS)
    assert not decision.promote and "no rows" in decision.summary()


def test_nan_metric_never_passes():
    decision = decide_promotion(report(auc=float("nan")), None, POLICY, DIRECTIONS)
    assert not decision.promote


def test_every_check_is_reported_even_after_a_failure():
    decision = decide_promotion(report(auc=0.5, brier=0.4), report(auc=0.7, version="1"), POLICY, DIRECTIONS)
    assert {r.check for r in decision.failed} >= {"floor:roc_auc", "ceiling:brier", "margin:roc_auc"}
    assert decision.to_dict()["verdict"] == "rejected"


@pytest.mark.parametrize("auc", [0.6, 0.9])
def test_floor_is_inclusive(auc):
    assert decide_promotion(report(auc=auc), None, POLICY, DIRECTIONS).promote


def test_evaluation_of_a_one_class_slice_is_strict_json():
    """XCom (the real API server, not dag.test) refuses NaN: a one-class slice must give None."""
    import json

    import numpy as np
    import pandas as pd

    from pipelines.config import FeaturesConfig
    from pipelines.evaluation import evaluate_output

    holdout = pd.DataFrame({"y": [0, 1, 0, 1, 0], "origin": ["A", "A", "A", "A", "B"]})
    task = BinaryClassification(FeaturesConfig(numeric=[], categorical=["origin"], target="y", slices=["origin"]))
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3])
    report = evaluate_output(task, holdout, np.column_stack([1 - scores, scores]), ["0", "1"], 0.5)
    [b] = [row for row in report.slices if row["value"] == "B"]
    assert b["roc_auc"] is None
    json.dumps({"metrics": report.metrics, "slices": report.slices}, allow_nan=False)
    decision = decide_promotion(report, None, GatePolicy(floors={}, margin_metric="roc_auc", slice_floors=[
        SliceFloor(column="origin", metric="roc_auc", floor=0.5, min_rows=1)]), DIRECTIONS)
    assert not decision.promote and "origin=B" in decision.summary()
    json.dumps(decision.to_dict(), allow_nan=False)


def test_champion_that_cannot_be_scored_blocks_promotion():
    decision = decide_promotion(report(auc=0.9), None, POLICY, DIRECTIONS,
                                champion_error="champion v3 could not score: KeyError")
    assert not decision.promote
    assert "could not be compared" in decision.summary() and "KeyError" in decision.summary()


def test_retraining_on_the_champions_own_snapshot_is_rejected():
    candidate = EvaluationReport(metrics={"roc_auc": 0.8, "brier": 0.2}, slices=report().slices, data_hash="abc")
    champion = EvaluationReport(metrics={"roc_auc": 0.7, "brier": 0.2}, model_version="2", data_hash="abc")
    decision = decide_promotion(candidate, champion, POLICY, DIRECTIONS)
    assert not decision.promote and [r.check for r in decision.failed] == ["new_data"]


def test_holdout_the_champion_has_seen_is_refused():
    candidate = EvaluationReport(metrics={"roc_auc": 0.8, "brier": 0.2}, slices=report().slices,
                                 holdout_start="2013-02-01T00:00:00+00:00")
    champion = EvaluationReport(metrics={"roc_auc": 0.7, "brier": 0.2}, model_version="2",
                                holdout_start="2013-03-18T00:00:00+00:00")
    decision = decide_promotion(candidate, champion, POLICY, DIRECTIONS)
    assert not decision.promote and [r.check for r in decision.failed] == ["fair_holdout"]
    later = EvaluationReport(metrics={"roc_auc": 0.8, "brier": 0.2}, slices=report().slices,
                             holdout_start="2013-06-17T00:00:00+00:00")
    assert decide_promotion(later, champion, POLICY, DIRECTIONS).promote
