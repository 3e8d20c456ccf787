import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.config import FeaturesConfig, GatePolicy, SliceFloor
from pipelines.gate import EvaluationReport, Reason, decide_promotion
from pipelines.holdout_pairs import HoldoutPairs
from pipelines.task_types import BinaryClassification

DIRECTIONS = BinaryClassification.metrics
BINARY = BinaryClassification(FeaturesConfig(numeric=["x"], target="y"))

POLICY = GatePolicy(floors={"roc_auc": 0.6}, ceilings={"brier": 0.25}, margin_metric="roc_auc", min_margin=0.01,
                    slice_floors=[SliceFloor(column="origin", metric="roc_auc", floor=0.55, min_rows=100)])


def simulated_pairs(rows: int, auc_candidate: float, auc_champion: float = 0.80, seed: int = 0,
                    prevalence: float = 0.1, correlation: float = 0.8,
                    candidate_calibration: float = 1.0) -> HoldoutPairs:
    """Two models' probabilities on one holdout (binormal: each class's score is its mean plus unit noise, the
    positives' mean set for the asked ROC AUC, the two models' noise correlated as two models of the same
    features are), as the evaluation step pairs them. ``candidate_calibration`` != 1 bends the candidate's
    probabilities (p ** c): the same ranking (same AUC), a worse Brier score."""
    rng = np.random.default_rng(seed)
    positive = (rng.random(rows) < prevalence).astype(int)
    first, second = rng.standard_normal(rows), rng.standard_normal(rows)
    noise = {"candidate": first, "champion": correlation * first + math.sqrt(1 - correlation ** 2) * second}
    frame = {"holdout_row": np.arange(rows), "truth": positive, "truth_positive": positive}
    for model, auc in (("candidate", auc_candidate), ("champion", auc_champion)):
        score = 1 / (1 + np.exp(-(math.sqrt(2) * stats.norm.ppf(auc) * positive + noise[model] - 2.5)))
        if model == "candidate":
            score = score ** candidate_calibration
        frame[f"{model}_score"], frame[f"{model}_predicted"] = score, (score >= 0.5).astype(int)
    return HoldoutPairs(pd.DataFrame(frame), BINARY)


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


def test_candidate_must_be_shown_better_than_champion_by_the_margin():
    """POLICY: superiority by 0.01 ROC AUC. The point estimates on the reports no longer decide: the paired
    test on the same rows does."""
    champion = report(auc=0.70, version="3")
    slightly = decide_promotion(report(auc=0.705), champion, POLICY, DIRECTIONS,
                                pairs=simulated_pairs(20_000, 0.805, seed=1))
    assert not slightly.promote and [r.check for r in slightly.failed] == ["margin:roc_auc"]
    clearly = decide_promotion(report(auc=0.72), champion, POLICY, DIRECTIONS,
                               pairs=simulated_pairs(20_000, 0.85, seed=1))
    assert clearly.promote, clearly.summary()


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
    decision = decide_promotion(candidate, champion, POLICY, DIRECTIONS, pairs=simulated_pairs(20_000, 0.85))
    assert not decision.promote and [r.check for r in decision.failed] == ["new_data"]


def test_holdout_the_champion_has_seen_is_refused():
    candidate = EvaluationReport(metrics={"roc_auc": 0.8, "brier": 0.2}, slices=report().slices,
                                 holdout_start="2013-02-01T00:00:00+00:00")
    champion = EvaluationReport(metrics={"roc_auc": 0.7, "brier": 0.2}, model_version="2",
                                holdout_start="2013-03-18T00:00:00+00:00")
    better = simulated_pairs(20_000, 0.85)
    decision = decide_promotion(candidate, champion, POLICY, DIRECTIONS, pairs=better)
    assert not decision.promote and [r.check for r in decision.failed] == ["fair_holdout"]
    later = EvaluationReport(metrics={"roc_auc": 0.8, "brier": 0.2}, slices=report().slices,
                             holdout_start="2013-06-17T00:00:00+00:00")
    assert decide_promotion(later, champion, POLICY, DIRECTIONS, pairs=better).promote


# the paired tests against the champion ------------------------------------------------------------------
SUPERIORITY = GatePolicy(floors={}, margin_metric="roc_auc")  # the defaults: superiority, margin 0, alpha 0.05
CHAMPION = EvaluationReport(metrics={"roc_auc": 0.80, "brier": 0.08}, model_version="3")
CANDIDATE = EvaluationReport(metrics={"roc_auc": 0.80, "brier": 0.08})


def test_a_deliberately_worse_candidate_is_rejected_with_its_difference_and_interval():
    decision = decide_promotion(CANDIDATE, CHAMPION, SUPERIORITY, DIRECTIONS, pairs=simulated_pairs(20_000, 0.77))
    assert not decision.promote
    [primary] = decision.failed
    assert primary.check == "margin:roc_auc" and primary.comparison.test == "delong"
    assert primary.observed < 0 and primary.comparison.interval[1] < 0 and primary.comparison.p_value > 0.5
    assert primary.decision == "not better with 95% confidence"
    assert primary.message.startswith(f"roc_auc: {primary.observed:+.4f} [") and ", p=" in primary.message
    assert "rows were enough to show +0.01" in primary.message  # 20k rows would have shown the declared effect


def test_an_equal_candidate_is_held_in_the_large_majority_of_seeded_runs():
    """Today's point-estimate rule promotes about half of these; the paired test at alpha 0.05 about 5%."""
    promoted = sum(decide_promotion(CANDIDATE, CHAMPION, SUPERIORITY, DIRECTIONS,
                                    pairs=simulated_pairs(5_000, 0.80, seed=seed)).promote for seed in range(200))
    assert promoted <= 20, f"{promoted} of 200 equal candidates promoted"


def test_a_clearly_better_candidate_is_promoted_and_the_summary_shows_the_test():
    decision = decide_promotion(CANDIDATE, CHAMPION, SUPERIORITY, DIRECTIONS, pairs=simulated_pairs(20_000, 0.83))
    assert decision.promote, decision.summary()
    [primary] = [r for r in decision.reasons if r.comparison is not None]
    assert primary.decision == "better with 95% confidence" and primary.comparison.interval[0] > 0
    assert decision.summary().startswith("approved: all 1 checks passed (roc_auc: +0.0")


def test_non_inferiority_with_a_margin_passes_an_equal_candidate_on_a_big_holdout():
    policy = GatePolicy(floors={}, margin_metric="roc_auc", framing="non_inferiority", min_margin=0.01)
    decision = decide_promotion(CANDIDATE, CHAMPION, policy, DIRECTIONS, pairs=simulated_pairs(50_000, 0.80, seed=3))
    assert decision.promote, decision.summary()
    [primary] = decision.reasons
    assert primary.comparison.framing == "non_inferiority" and primary.comparison.interval[0] > -0.01
    assert primary.decision == "not worse by more than 0.01 with 95% confidence"
    # sized for an equal candidate (effect 0) against the -0.01 threshold
    assert primary.comparison.effect == 0.0 and primary.comparison.rows_needed < 50_000
    # the same candidate asked to be better is not promoted
    assert not decide_promotion(CANDIDATE, CHAMPION, SUPERIORITY, DIRECTIONS,
                                pairs=simulated_pairs(50_000, 0.80, seed=3)).promote


def test_a_failed_guardrail_blocks_a_better_candidate_and_the_alpha_split_is_stated():
    """The candidate ranks better (ROC AUC) but its probabilities are bent: its Brier score is much worse."""
    policy = GatePolicy(floors={}, margin_metric="roc_auc", guardrails={"brier": 0.005, "log_loss": 0.5})
    pairs = simulated_pairs(20_000, 0.83, candidate_calibration=0.3)
    decision = decide_promotion(CANDIDATE, CHAMPION, policy, DIRECTIONS, pairs=pairs)
    assert not decision.promote
    assert [r.check for r in decision.failed] == ["guardrail:brier"]
    brier = decision.failed[0]
    assert brier.comparison.framing == "non_inferiority" and brier.comparison.alpha == 0.025
    assert brier.decision.startswith("may be worse by more than 0.005")
    assert "roc_auc at alpha 0.05; 2 guardrails at 0.025 each (Bonferroni)" in brier.required
    primary = next(r for r in decision.reasons if r.check == "margin:roc_auc")
    assert primary.passed and "2 guardrails at 0.025 each" in primary.required


def test_a_holdout_too_small_to_decide_says_so():
    policy = GatePolicy(floors={}, margin_metric="roc_auc", min_effect=0.01)
    decision = decide_promotion(CANDIDATE, CHAMPION, policy, DIRECTIONS, pairs=simulated_pairs(800, 0.81, seed=2))
    assert not decision.promote
    [primary] = decision.failed
    needed = primary.comparison.rows_needed
    assert needed > 800 and primary.decision == "holdout too small to decide"
    assert f"holdout too small to decide: 800 rows, ~{needed:,} would show +0.01" in decision.summary()


def test_the_default_effect_of_a_loss_is_two_percent_of_the_champions_value():
    from pipelines.gate import primary_effect

    assert primary_effect(GatePolicy(margin_metric="rmse", min_margin=0.5), 40.0) == pytest.approx(0.5 + 0.8)
    assert primary_effect(GatePolicy(margin_metric="roc_auc", min_margin=0.005), 0.8) == pytest.approx(0.015)
    assert primary_effect(GatePolicy(margin_metric="roc_auc", framing="non_inferiority", min_margin=0.01), 0.8) == 0
    assert primary_effect(GatePolicy(margin_metric="roc_auc", min_effect=0.02), 0.8) == 0.02


def test_attempts_on_one_holdout_are_counted_and_capped():
    pairs = simulated_pairs(20_000, 0.85)
    within = decide_promotion(CANDIDATE, CHAMPION, SUPERIORITY, DIRECTIONS, pairs=pairs, attempt=20)
    assert within.promote and within.to_dict()["attempt"] == 20
    assert "attempt 20 of at most 20 on this holdout" in [r.message for r in within.reasons]
    past = decide_promotion(CANDIDATE, CHAMPION, SUPERIORITY, DIRECTIONS, pairs=pairs, attempt=21)
    assert not past.promote and [r.check for r in past.failed] == ["holdout_reuse"]
    assert "attempt 21 on this holdout, past the cap of 20" in past.summary()
    assert decide_promotion(CANDIDATE, CHAMPION, SUPERIORITY.model_copy(update={"max_attempts_per_holdout": 30}),
                            DIRECTIONS, pairs=pairs, attempt=21).promote
    # a first version: only the absolute checks
    first = decide_promotion(CANDIDATE, None, SUPERIORITY, DIRECTIONS, attempt=40)
    assert first.promote and "holdout_reuse" not in [r.check for r in first.reasons]


def test_a_champion_without_paired_predictions_fails_closed():
    decision = decide_promotion(report(auc=0.9), CHAMPION, SUPERIORITY, DIRECTIONS)
    assert not decision.promote
    assert "no per-row predictions of both models on the holdout" in decision.summary()


def test_the_decision_and_its_comparisons_round_trip_as_strict_json():
    policy = GatePolicy(floors={}, margin_metric="roc_auc", guardrails={"pr_auc": 0.02})
    decision = decide_promotion(CANDIDATE, CHAMPION, policy, DIRECTIONS, pairs=simulated_pairs(5_000, 0.82), attempt=1)
    record = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert [Reason.from_dict(r) for r in record["reasons"]] == decision.reasons
    bootstrap = next(r for r in decision.reasons if r.check == "guardrail:pr_auc")
    assert bootstrap.comparison.test == "paired_bootstrap"
    assert Reason.from_dict({"check": "floor:roc_auc", "passed": True, "observed": 0.7, "required": ">= 0.6",
                             "message": "old record"}).comparison is None


# each gated slice against the champion ------------------------------------------------------------------
def slice_pairs(slices: dict[str, tuple[int, float]], auc_champion: float = 0.80) -> HoldoutPairs:
    """Pairs of several slices of ``origin`` (value -> rows, the candidate's ROC AUC on them), each simulated
    as ``simulated_pairs`` does, in one holdout."""
    frames = [simulated_pairs(rows, auc, auc_champion, seed=i).frame.assign(**{"slice:origin": value})
              for i, (value, (rows, auc)) in enumerate(slices.items())]
    frame = pd.concat(frames, ignore_index=True)
    return HoldoutPairs(frame.assign(holdout_row=np.arange(len(frame))), BINARY)


def sliced(slices: dict[str, tuple[int, float]]) -> EvaluationReport:
    return EvaluationReport(metrics={"roc_auc": 0.80, "brier": 0.08}, slices=[
        {"column": "origin", "value": value, "rows": rows, "roc_auc": auc} for value, (rows, auc) in slices.items()])


SLICED = GatePolicy(floors={}, margin_metric="roc_auc", framing="non_inferiority", min_margin=0.01,
                    slice_floors=[SliceFloor(column="origin", metric="roc_auc", floor=0.55, min_rows=100, margin=0.02)])


def test_a_candidate_worse_on_one_slice_is_blocked_by_that_slice_alone():
    """Better overall and on EWR, clearly worse on LGA: the slice's paired test against the champion blocks it,
    though LGA's ROC AUC clears the slice floor."""
    slices = {"EWR": (30_000, 0.84), "LGA": (10_000, 0.72)}
    decision = decide_promotion(sliced(slices), CHAMPION, SLICED, DIRECTIONS, pairs=slice_pairs(slices))
    assert not decision.promote
    [lga] = decision.failed
    assert lga.check == "slice_guardrail:origin=LGA:roc_auc" and lga.comparison.rows == 10_000
    assert lga.comparison.framing == "non_inferiority" and lga.comparison.alpha == 0.025
    assert lga.message.startswith("slice origin=LGA roc_auc: -0.")
    assert lga.decision.startswith("may be worse by more than 0.02")
    assert "not worse than champion v3 on slice origin=LGA by more than 0.02" in lga.required
    assert "2 guardrails at 0.025 each (Bonferroni)" in lga.required
    assert "origin=LGA" in decision.summary()
    assert next(r for r in decision.reasons if r.check == "slice:origin=LGA:roc_auc").passed  # its floor alone


def test_an_equal_candidate_passes_every_slice_within_the_margin():
    slices = {"EWR": (20_000, 0.80), "LGA": (20_000, 0.80)}
    policy = SLICED.model_copy(update={"guardrails": {"brier": 0.01}})
    decision = decide_promotion(sliced(slices), CHAMPION, policy, DIRECTIONS, pairs=slice_pairs(slices))
    assert decision.promote, decision.summary()
    tested = {r.check: r for r in decision.reasons if r.comparison is not None}
    assert set(tested) == {"margin:roc_auc", "guardrail:brier", "slice_guardrail:origin=EWR:roc_auc",
                           "slice_guardrail:origin=LGA:roc_auc"}
    ewr = tested["slice_guardrail:origin=EWR:roc_auc"]
    assert ewr.decision == "not worse by more than 0.02 with 98.33% confidence"
    assert "3 guardrails (1 on metrics, 2 on slices) at 0.0167 each (Bonferroni)" in ewr.required
    assert tested["margin:roc_auc"].comparison.alpha == 0.05  # the primary keeps its alpha
    record = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert [Reason.from_dict(r) for r in record["reasons"]] == decision.reasons
    # without a margin a slice is held to its floor alone, as before
    plain = SLICED.model_copy(update={"slice_floors": [SliceFloor(column="origin", metric="roc_auc", floor=0.55)]})
    unsliced = decide_promotion(sliced(slices), CHAMPION, plain, DIRECTIONS, pairs=slice_pairs(slices))
    assert unsliced.promote and not any(r.check.startswith("slice_guardrail") for r in unsliced.reasons)


def test_a_slice_too_small_to_test_says_so():
    slices = {"EWR": (30_000, 0.80), "SMALL": (300, 0.80), "TINY": (50, 0.80)}
    decision = decide_promotion(sliced(slices), CHAMPION, SLICED, DIRECTIONS, pairs=slice_pairs(slices))
    checks = {r.check: r for r in decision.reasons}
    tiny = checks["slice_guardrail:origin=TINY:roc_auc"]  # below min_rows: not tested, as its floor is not gated
    assert tiny.passed and tiny.comparison is None and tiny.decision == "slice too small: not tested"
    assert "slice origin=TINY has 50 rows < 100: too small to compare its roc_auc with the champion" in tiny.message
    small = checks["slice_guardrail:origin=SMALL:roc_auc"]  # tested, but 300 rows cannot show it within 0.02
    assert not small.passed and small.decision == "slice too small to decide"
    needed = small.comparison.rows_needed
    assert needed > 300 and f"slice too small to decide: 300 rows, ~{needed:,} would show +0" in small.message
    assert "2 guardrails at 0.025 each" in small.required  # the tiny slice takes no share of alpha
    assert [r.check for r in decision.failed] == ["slice_guardrail:origin=SMALL:roc_auc"]


def test_a_slice_the_paired_predictions_do_not_hold_fails_closed():
    slices = {"EWR": (5_000, 0.80)}
    pairs = HoldoutPairs(simulated_pairs(5_000, 0.80).frame, BINARY)  # written without the slice column
    decision = decide_promotion(sliced(slices), CHAMPION, SLICED, DIRECTIONS, pairs=pairs)
    [ewr] = [r for r in decision.failed if r.check.startswith("slice_guardrail")]
    assert ewr.decision == "not tested" and "no slice column 'origin'" in ewr.message
    no_pairs = decide_promotion(sliced(slices), CHAMPION, SLICED, DIRECTIONS)
    assert "slice_guardrail:origin=EWR:roc_auc" in [r.check for r in no_pairs.failed]


def test_a_slice_margin_needs_a_metric_with_a_paired_test():
    with pytest.raises(ValueError, match="greater than 0"):
        SliceFloor(column="origin", floor=0.5, margin=0)
    with pytest.raises(ValueError, match="'balanced_accuracy' has no paired test"):
        SliceFloor(column="origin", metric="balanced_accuracy", floor=0.5, margin=0.02)


# the gate's configuration --------------------------------------------------------------------------------
@pytest.mark.parametrize(("gate", "error"), [
    ({"min_margin": -0.01}, "greater than or equal to 0"),
    ({"framing": "equivalence"}, "superiority"),
    ({"alpha": 0.5}, "less than 0.5"),
    ({"power": 1.0}, "less than 1"),
    ({"min_margin": 0.01, "min_effect": 0.005}, "must exceed"),
    ({"guardrails": {"brier": 0.0}}, "must be > 0"),
    ({"margin_metric": "roc_auc", "guardrails": {"roc_auc": 0.01}}, "cannot also be a guardrail"),
    ({"max_attempts_per_holdout": 0}, "greater than or equal to 1"),
])
def test_a_gate_policy_out_of_bounds_is_refused(gate, error):
    with pytest.raises(ValueError, match=error):
        GatePolicy(**gate)


@pytest.mark.parametrize(("gate", "error"), [
    ({"guardrails": {"rmse": 0.1}}, "not a binary metric"),
    ({"guardrails": {"roc_auc": 0.01}}, "primary metric"),  # the default margin metric is the selection metric
])
def test_guardrails_must_be_the_tasks_metrics_other_than_the_primary(gate, error):
    from pipelines.config import ModelConfig

    with pytest.raises(ValueError, match=error):
        ModelConfig(name="toy", feeds=[{"name": "rows", "columns": {"x": "float", "y": "int"}}],
                    features={"numeric": ["x"], "target": "y"}, gate=gate)


def test_a_primary_metric_without_a_paired_test_is_refused():
    from pipelines.config import ModelConfig

    with pytest.raises(ValueError, match="no paired test"):
        ModelConfig(name="toy", task="multiclass", feeds=[{"name": "rows", "columns": {"x": "float", "y": "string"}}],
                    features={"numeric": ["x"], "target": "y"}, gate={"margin_metric": "balanced_accuracy"})


# both models' predictions on the holdout, as the evaluation step pairs them -------------------------------
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_paired_predictions_are_keyed_and_compare_every_metric_of_the_task(task):
    from pipelines.config import FeaturesConfig
    from pipelines.task_types import task_type_named

    rng = np.random.default_rng(0)
    rows = 400
    if task == "regression":
        target = rng.normal(10, 3, rows)
        outputs = {m: (target + rng.normal(0, s, rows), None, None) for m, s in (("candidate", 1), ("champion", 2))}
    else:
        classes = ["no", "yes"] if task == "binary" else ["a", "b", "c"]
        target = np.asarray(classes)[rng.integers(0, len(classes), rows)]
        outputs = {}
        for model in ("candidate", "champion"):
            logits = rng.normal(0, 1, (rows, len(classes))) + 2 * (target[:, None] == np.asarray(classes))
            outputs[model] = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), classes, 0.4)
    holdout = pd.DataFrame({"flight": [f"f{i}" for i in range(rows)], "x": 0.0, "y": target})
    kind = task_type_named(task)
    features = FeaturesConfig(numeric=["x"], target="y", example_id="flight",
                              **({"positive_class": "yes"} if task == "binary" else {}))
    from pipelines.holdout_pairs import pair_predictions

    frame = pair_predictions(kind(features), holdout, "flight", outputs)
    assert frame["flight"].tolist() == holdout["flight"].tolist() and len(frame) == rows
    pairs = HoldoutPairs(frame, kind(features))
    for metric in kind.metrics:
        if metric == "balanced_accuracy":
            continue
        result = pairs.compare(metric, framing="superiority", margin=0.0, alpha=0.05, effect=None, power=0.8)
        assert result.rows == rows and math.isfinite(result.p_value), metric
        if metric in kind.metrics and task != "multiclass":
            # each model's value is the metric the evaluation reports for it
            reported = kind(features).evaluate(kind(features).labels(holdout["y"]), outputs["candidate"][0],
                                               outputs["candidate"][1], outputs["candidate"][2])[metric]
            assert result.candidate == pytest.approx(reported, rel=1e-6), metric
    if task == "binary":
        assert (frame["candidate_predicted"] == (frame["candidate_score"] >= 0.4)).all()
    unkeyed = pair_predictions(kind(features), holdout, None, outputs)
    assert unkeyed["holdout_row"].tolist() == list(range(rows))
    sliced = pair_predictions(kind(features), holdout.assign(gate=np.arange(rows) % 2), "flight", outputs, ["gate"])
    assert list(sliced.columns) == [*frame.columns, "slice:gate"]
    assert len(HoldoutPairs(sliced, kind(features)).where("gate", "1").frame) == rows // 2
