"""The anytime-valid comparison of a shadow or canary challenger: its boundary against hand-computed and
reference values, its error under peeking by seeded simulation (against a fixed test repeated at every
look), its decisions on better and worse challengers in both feeds, and its state's round trip through JSON."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from pipelines import sequential_tests as st
from pipelines.paired_tests import decision_threshold

ALPHA = 0.05
LOOK = 1_000  # rows between looks
LOOKS = 50  # up to 50k rows


def squared_errors(rows, rng, challenger_mse=1.0, correlation=0.8):
    """Per-row squared errors of a champion (MSE 1) and a challenger (MSE ``challenger_mse``) whose errors
    are correlated, as two regressors trained on the same features are."""
    first, second = rng.standard_normal(rows), rng.standard_normal(rows)
    other = correlation * first + math.sqrt(1 - correlation ** 2) * second
    return first ** 2, challenger_mse * other ** 2


def looks_of(differences_by_block):
    """Running count, mean and sample variance at every look, from per-look blocks (seeds x looks x rows)."""
    sums = np.cumsum(differences_by_block.sum(axis=2), axis=1)
    squares = np.cumsum((differences_by_block ** 2).sum(axis=2), axis=1)
    rows = LOOK * np.arange(1, differences_by_block.shape[1] + 1)
    mean = sums / rows
    variance = (squares - rows * mean ** 2) / (rows - 1)
    return rows, mean, variance


# ---- the boundary --------------------------------------------------------------------------------------
def test_half_width_matches_the_hand_computed_value():
    # sqrt(4 * (100 + 50) * log((100 + 50) / (50 * 0.05²))) / 100 = sqrt(600 * log(1200)) / 100
    assert st.half_width(100, 4.0, 0.05, 50.0) == pytest.approx(0.6522304885, rel=1e-9)


def test_boundary_is_where_johari_mixture_likelihood_ratio_reaches_one_over_alpha():
    # Johari et al.'s mSPRT statistic with mixing variance tau²: sqrt(s² / (s² + n tau²)) *
    # exp(n² tau² mean² / (2 s² (s² + n tau²))); our n0 is s² / tau²
    variance, rows, n0 = 2.5, 4_000, st.mixing_rows(ALPHA)
    tau2 = variance / n0
    mean = float(st.half_width(rows, variance, ALPHA, n0))
    ratio = math.sqrt(variance / (variance + rows * tau2)) * math.exp(
        rows ** 2 * tau2 * mean ** 2 / (2 * variance * (variance + rows * tau2)))
    assert ratio == pytest.approx(1 / ALPHA, rel=1e-9)


def test_mixing_rows_make_the_boundary_narrowest_at_the_tuned_rows():
    n0 = st.mixing_rows(ALPHA, 10_000)
    at = float(st.half_width(10_000, 1.0, ALPHA, n0))
    assert at < float(st.half_width(10_000, 1.0, ALPHA, n0 * 1.3))
    assert at < float(st.half_width(10_000, 1.0, ALPHA, n0 / 1.3))
    # and it is wider than a fixed-sample 95% interval there: the price of looking at every row count
    assert 1.96 / 100 < at < 2 * 1.96 / 100


# ---- error under peeking -------------------------------------------------------------------------------
def test_equal_models_peeked_at_every_1000_rows_are_rarely_decided_and_a_repeated_z_test_is_not():
    seeds = 300
    rng = np.random.default_rng(24)
    champion, challenger = squared_errors(seeds * LOOKS * LOOK, rng)
    rows, mean, variance = looks_of((champion - challenger).reshape(seeds, LOOKS, LOOK))

    width = st.half_width(rows, variance, ALPHA, st.mixing_rows(ALPHA))
    decided = ((mean - width > 0) | (mean + width < 0)).any(axis=1)  # either promote or retire, ever
    error = 2 * math.sqrt(ALPHA * (1 - ALPHA) / seeds)  # two simulation standard errors
    assert decided.mean() <= ALPHA + error

    # the fixed one-sided z-test at 5%, repeated at every look, promotes an equal challenger far more often
    z = mean / np.sqrt(variance / rows)
    peeked = (z > stats.norm.ppf(1 - ALPHA)).any(axis=1)
    assert peeked.mean() > 3 * ALPHA
    # while at any single look it holds its level (it is the peeking, not the test)
    assert (z[:, -1] > stats.norm.ppf(1 - ALPHA)).mean() <= ALPHA + error


def test_equal_models_in_canary_are_rarely_decided_under_peeking():
    seeds, share = 200, 0.2
    rng = np.random.default_rng(7)
    champion, challenger = squared_errors(seeds * LOOKS * LOOK, rng)
    served = rng.random(champion.size) < share
    weighted = np.where(served, -challenger / share, champion / (1 - share))
    rows, mean, variance = looks_of(weighted.reshape(seeds, LOOKS, LOOK))
    width = st.half_width(rows, variance, ALPHA, st.mixing_rows(ALPHA))
    decided = ((mean - width > 0) | (mean + width < 0)).any(axis=1)
    assert decided.mean() <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / seeds)


def test_the_vectorised_simulation_reads_as_the_state_does():
    rng = np.random.default_rng(3)
    champion, challenger = squared_errors(5 * LOOK, rng)
    state = st.SequentialState("shadow", "rmse")
    for start in range(0, 5 * LOOK, LOOK):
        state.update_shadow(champion[start:start + LOOK], challenger[start:start + LOOK])
    rows, mean, variance = looks_of((champion - challenger).reshape(1, 5, LOOK))
    width = float(st.half_width(rows[-1], variance[0, -1], ALPHA, st.mixing_rows(ALPHA)))
    assert state.interval() == pytest.approx((mean[0, -1] - width, mean[0, -1] + width), rel=1e-9)


# ---- decisions -----------------------------------------------------------------------------------------
def feed_until_decided(state, cohorts):
    for cohort in cohorts:
        cohort(state)
        if state.decision() != "continue":
            break
    return state.result(effect=0.05)


def test_a_clearly_better_shadow_challenger_is_promoted_and_a_worse_one_retired():
    rng = np.random.default_rng(11)
    better = st.SequentialState("shadow", "rmse")
    result = feed_until_decided(better, [lambda s: s.update_shadow(*squared_errors(LOOK, rng, 0.9))
                                         for _ in range(LOOKS)])
    assert result.decision == "promote"
    assert result.interval[0] > 0 and result.rows < 50_000

    worse = st.SequentialState("shadow", "rmse")
    result = feed_until_decided(worse, [lambda s: s.update_shadow(*squared_errors(LOOK, rng, 1.1))
                                        for _ in range(LOOKS)])
    assert result.decision == "retire"
    assert result.interval[1] < 0


def test_a_clearly_better_canary_challenger_is_promoted_with_unbiased_weighted_differences():
    rng = np.random.default_rng(12)
    share = 0.2
    state = st.SequentialState("canary", "mae")

    def cohort(s):
        champion, challenger = squared_errors(5 * LOOK, rng, 0.8)
        served = rng.random(champion.size) < share
        s.update_canary(np.where(served, challenger, champion), served, share)

    result = feed_until_decided(state, [cohort] * 40)
    assert result.decision == "promote"
    # the weighted mean estimates the true improvement (E[champion] - E[challenger] = 1 - 0.8)
    assert result.mean_difference == pytest.approx(0.2, abs=4 * result.standard_deviation / math.sqrt(result.rows))


def test_no_decision_before_the_minimum_rows_however_large_the_difference():
    state = st.SequentialState("shadow", "log_loss", min_rows=1_000)
    state.update_shadow(np.full(500, 2.0) + np.linspace(0, 0.1, 500), np.full(500, 0.1))
    assert state.interval()[0] > 1
    assert state.decision() == "continue"
    assert "no decision before 1000 requests" in state.result().summary()


def test_a_margin_moves_the_threshold_both_ways():
    rng = np.random.default_rng(5)
    champion, challenger = squared_errors(40_000, rng, 0.97)  # a true improvement of 0.03
    superior = st.SequentialState("shadow", "rmse", framing="superiority", margin=0.2)
    superior.update_shadow(champion, challenger)
    assert superior.threshold == 0.2 and superior.decision() == "retire"  # cannot be better by 0.2
    not_worse = st.SequentialState("shadow", "rmse", framing="non_inferiority", margin=0.05)
    not_worse.update_shadow(champion, challenger)
    assert not_worse.threshold == -0.05 and not_worse.decision() == "promote"



def test_a_zero_margin_threshold_reads_plus_zero_in_both_framings():
    """Non-inferiority by no margin is the threshold 0, not -0: the summary (the model page, the reason a
    proposed release stores on the version) says "threshold +0"."""
    rng = np.random.default_rng(6)
    for framing in ("superiority", "non_inferiority"):
        state = st.SequentialState("shadow", "rmse", framing=framing, margin=0.0, min_rows=10)
        state.update_shadow(*squared_errors(100, rng))
        assert math.copysign(1.0, state.threshold) == 1.0, framing
        assert "threshold +0)" in state.result().summary(), state.result().summary()
        assert math.copysign(1.0, decision_threshold(framing, 0.0)) == 1.0  # the gate's paired tests' rule too

# ---- rows still needed ---------------------------------------------------------------------------------
def test_rows_needed_shrink_as_the_declared_effect_grows_and_are_none_when_unknowable():
    rng = np.random.default_rng(9)
    state = st.SequentialState("shadow", "rmse")
    state.update_shadow(*squared_errors(2_000, rng))
    needed = [state.result(effect=effect).rows_needed_total for effect in (0.01, 0.02, 0.05, 0.1)]
    assert all(isinstance(n, int) for n in needed)
    assert needed == sorted(needed, reverse=True) and needed[0] > 4 * needed[2]
    # a worse challenger's retirement needs the same rows as an equally better one's promotion
    assert state.rows_to_decide(-0.05) == state.rows_to_decide(0.05)
    # more power needs more rows
    assert state.rows_to_decide(0.05, power=0.9) > state.rows_to_decide(0.05, power=0.5)
    assert state.result(effect=0.02).rows_needed == needed[1] - 2_000
    assert state.result().rows_needed is None  # no effect declared
    assert state.result(effect=0.0).rows_needed is None  # the effect sits on the threshold
    assert st.SequentialState("shadow", "rmse").result(effect=0.05).rows_needed is None  # no variance yet


def test_rows_needed_at_even_odds_is_where_the_boundary_meets_the_effect():
    rng = np.random.default_rng(2)
    state = st.SequentialState("shadow", "brier")
    state.update_shadow(*squared_errors(3_000, rng))
    total = state.rows_to_decide(0.05, power=0.5)
    n0 = st.mixing_rows(ALPHA)
    assert float(st.half_width(total, state.variance, ALPHA, n0)) <= 0.05
    assert float(st.half_width(total - 2, state.variance, ALPHA, n0)) > 0.05


# ---- persistence and checks ----------------------------------------------------------------------------
def test_state_round_trips_through_json_and_cohorts_merge_exactly():
    rng = np.random.default_rng(4)
    champion, challenger = squared_errors(7_000, rng, 0.95)
    state = st.SequentialState("shadow", "r2", alpha=0.1, margin=0.01, min_rows=500, tuned_rows=5_000)
    state.update_shadow(champion[:1_234], challenger[:1_234])
    text = state.to_json()
    restored = st.SequentialState.from_json(json.loads(json.dumps(text)))
    assert restored == state
    assert restored.result(effect=0.05) == state.result(effect=0.05)
    restored.update_shadow(champion[1_234:4_000], challenger[1_234:4_000])
    restored = st.SequentialState.from_dict(json.loads(restored.to_json()))
    restored.update_shadow(champion[4_000:], challenger[4_000:])
    difference = champion - challenger
    assert restored.rows == 7_000 and restored.cohorts == 3
    assert restored.mean == pytest.approx(difference.mean(), rel=1e-12)
    assert restored.variance == pytest.approx(difference.var(ddof=1), rel=1e-10)
    assert json.loads(json.dumps(restored.result(effect=0.05).to_dict()))["decision"] in ("promote", "continue")


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="pairs of rows"):
        st.SequentialState("shadow", "roc_auc")
    with pytest.raises(ValueError, match="paired"):
        st.SequentialState("shadow", "rmse").update_shadow(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="fed by shadow"):
        st.SequentialState("shadow", "rmse").update_canary(np.ones(3), [0, 1, 0], 0.1)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        st.SequentialState("canary", "rmse").update_canary(np.ones(3), [0, 1, 0], 0.0)
    with pytest.raises(ValueError, match="missing or infinite"):
        st.SequentialState("shadow", "rmse").update_shadow(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="version"):
        st.SequentialState.from_dict({"version": 99, "feed": "shadow", "metric": "rmse"})


def test_row_losses_are_the_metrics_own():
    truth = np.array([0, 1, 1, 0])
    scores = np.array([0.2, 0.7, 0.4, 0.1])
    assert st.row_losses("brier", truth, scores) == pytest.approx((scores - truth) ** 2)
    assert st.row_losses("log_loss", truth, scores).mean() == pytest.approx(
        -np.mean(truth * np.log(scores) + (1 - truth) * np.log(1 - scores)))
    assert st.row_losses("mae", np.array([1.0, 2.0]), np.array([1.5, 1.0])) == pytest.approx([0.5, 1.0])
    with pytest.raises(ValueError, match="pairs of rows"):
        st.row_losses("roc_auc", truth, scores)


def test_unit_means_average_each_requests_rows_in_first_seen_order():
    differences = np.array([1.0, 2.0, 10.0, 3.0, 5.0])
    np.testing.assert_allclose(st.unit_means(differences, ["b", "b", "a", "b", "c"]), [2.0, 10.0, 5.0])
    np.testing.assert_allclose(st.unit_means(differences, [4, 3, 2, 1, 0]), differences)  # one row each
    # a canary request's rows share its assignment: the mean of their weighted differences is the weighted
    # difference of the request's mean loss
    losses, share = np.array([0.2, 0.4, 0.9]), 0.25
    weighted = st.canary_differences(losses, [True, True, False], share)
    np.testing.assert_allclose(st.unit_means(weighted, ["r1", "r1", "r2"]), [-0.3 / share, 0.9 / (1 - share)])
    with pytest.raises(ValueError, match="one label per row"):
        st.unit_means(differences, ["a"])
