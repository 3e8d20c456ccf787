"""The paired tests behind promotion: each against a hand-computed or reference value, their error rates by
seeded simulation, and the rows they say a declared effect needs."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, f1_score, log_loss, roc_auc_score

from pipelines import paired_tests as pt
from pipelines.task_types import TASK_TYPES


def binormal(rows, rng, auc_candidate=0.8, auc_champion=0.8, prevalence=0.1, correlation=0.8):
    """Scores of two models with set ROC AUCs: unit-variance normal noise per class, correlated between the
    models, positives shifted by sqrt(2) * Phi^-1(AUC)."""
    positive = (rng.random(rows) < prevalence).astype(int)
    noise = rng.multivariate_normal([0, 0], [[1, correlation], [correlation, 1]], size=rows)
    shift = [math.sqrt(2) * stats.norm.ppf(auc) for auc in (auc_candidate, auc_champion)]
    return positive, shift[0] * positive + noise[:, 0], shift[1] * positive + noise[:, 1]


def probabilities(scores):
    return 1 / (1 + np.exp(-(scores - 2)))


def slow_delong(positive, scores):
    """DeLong's structural components straight from their definition, O(m n): per positive, the share of
    negatives it outranks; per negative, the share of positives that outrank it (ties count one half)."""
    positive = np.asarray(positive).astype(bool)
    aucs, v10s, v01s = [], [], []
    for row in np.atleast_2d(scores):
        x, y = row[positive], row[~positive]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    m, n = positive.sum(), (~positive).sum()
    return np.array(aucs), np.cov(np.array(v10s)) / m + np.cov(np.array(v01s)) / n


# ---- DeLong ----------------------------------------------------------------------------------------------
def test_delong_matches_a_hand_computed_case():
    # positives score (0.9, 0.6) and (0.8, 0.3); negatives (0.7, 0.5) and (0.2, 0.4), candidate first.
    # Candidate: V10 = (1, 1/2), V01 = (1/2, 1), AUC 3/4. Champion: V10 = (1, 0), V01 = (1/2, 1/2), AUC 1/2.
    # S10 = [[1/8, 1/4], [1/4, 1/2]], S01 = [[1/8, 0], [0, 0]]; S = S10/2 + S01/2 = [[1/8, 1/8], [1/8, 1/4]].
    # Var(difference) = 1/8 + 1/4 - 2/8 = 1/8; z = (1/4) / sqrt(1/8) = 0.7071; one-sided p = 0.2398.
    truth = [1, 1, 0, 0]
    candidate, champion = [0.9, 0.6, 0.7, 0.2], [0.8, 0.3, 0.5, 0.4]
    aucs, covariance = pt.delong_covariance(np.array(truth), np.array([candidate, champion]))
    np.testing.assert_allclose(aucs, [0.75, 0.5])
    np.testing.assert_allclose(covariance, [[1 / 8, 1 / 8], [1 / 8, 1 / 4]])
    result = pt.delong_test(truth, candidate, champion)
    assert result.difference == pytest.approx(0.25)
    assert result.standard_error == pytest.approx(math.sqrt(1 / 8))
    assert result.p_value == pytest.approx(0.23975, abs=1e-5)
    assert not result.passed and result.test == "delong" and result.rows == 4


# Hanley & McNeil (1982), "The meaning and use of the area under a receiver operating characteristic (ROC)
# curve", Radiology 143: 29-36, Table I: one reader's ratings (1 definitely normal .. 5 definitely abnormal)
# of 109 CT images, as counts per rating; Stata ships the same table as hanley.dta.
HANLEY_MCNEIL_NORMAL = [33, 6, 6, 11, 2]  # 58 normal cases
HANLEY_MCNEIL_ABNORMAL = [3, 2, 2, 11, 33]  # 51 abnormal cases


def test_delong_reproduces_the_published_standard_error_of_the_hanley_mcneil_ratings():
    # Stata's [R] roctab manual, "roctab disease rating" on hanley.dta, whose standard error is DeLong,
    # DeLong & Clarke-Pearson's (1988) unless bamber or hanley is asked for: Obs 109, ROC area 0.8932,
    # Std. err. 0.0307, asymptotic normal 95% interval 0.83295 to 0.95339. (Hanley & McNeil's own
    # exponential approximation gives 0.032 for the same area 0.893.)
    ratings = np.arange(1, 6)
    truth = np.r_[np.zeros(58, dtype=int), np.ones(51, dtype=int)]
    scores = np.r_[np.repeat(ratings, HANLEY_MCNEIL_NORMAL), np.repeat(ratings, HANLEY_MCNEIL_ABNORMAL)]
    aucs, covariance = pt.delong_covariance(truth, scores[None, :])
    auc, se = float(aucs[0]), math.sqrt(covariance[0, 0])
    assert auc == pytest.approx(0.8932, abs=5e-5)
    assert se == pytest.approx(0.0307, abs=5e-5)
    z = stats.norm.ppf(0.975)
    assert [auc - z * se, auc + z * se] == pytest.approx([0.83295, 0.95339], abs=5e-6)
    # Through the paired test: against a constant score (AUC 1/2, no variance, no covariance) the
    # difference's standard error is the rating's own.
    result = pt.delong_test(truth, scores, np.zeros(truth.size))
    assert result.difference == pytest.approx(0.8932 - 0.5, abs=5e-5)
    assert result.standard_error == pytest.approx(0.0307, abs=5e-5)


@pytest.mark.parametrize("rows, decimals", [(60, 1), (300, 2), (1000, 8)])
def test_fast_delong_equals_the_structural_components_on_random_data_with_ties(rows, decimals):
    rng = np.random.default_rng(rows)
    positive, a, b = binormal(rows, rng, 0.75, 0.7, prevalence=0.3)
    scores = np.round(np.array([a, b]), decimals)  # rounding makes ties, within and across the classes
    aucs, covariance = pt.delong_covariance(positive, scores)
    slow_aucs, slow_covariance = slow_delong(positive, scores)
    np.testing.assert_allclose(aucs, slow_aucs, atol=1e-12)
    np.testing.assert_allclose(covariance, slow_covariance, atol=1e-12)
    np.testing.assert_allclose(aucs, [roc_auc_score(positive, s) for s in scores], atol=1e-12)


def test_delong_standard_error_agrees_with_a_paired_bootstrap():
    rng = np.random.default_rng(7)
    positive, a, b = binormal(3000, rng, 0.8, 0.78)
    result = pt.delong_test(positive, a, b)
    draws = rng.integers(0, positive.size, size=(400, positive.size))
    differences = [np.subtract(*pt.delong_covariance(positive[i], np.array([a[i], b[i]]))[0]) for i in draws]
    assert np.std(differences, ddof=1) == pytest.approx(result.standard_error, rel=0.12)


def test_delong_holds_equal_models_at_the_level_where_the_point_rule_tosses_a_coin():
    rng = np.random.default_rng(2024)
    promoted = point_rule = 0
    for _ in range(300):
        positive, a, b = binormal(2000, rng)
        promoted += pt.delong_test(positive, a, b, alpha=0.05).passed
        point_rule += roc_auc_score(positive, a) > roc_auc_score(positive, b)
    assert promoted / 300 < 0.09
    assert point_rule / 300 > 0.35  # the simulation is one where noise does promote


def test_delong_promotes_a_clearly_better_candidate_and_reports_its_interval():
    positive, a, b = binormal(5000, np.random.default_rng(3), 0.86, 0.78)
    result = pt.delong_test(positive, a, b, margin=0.01, effect=0.05)
    assert result.passed and result.p_value < 0.001
    lower, upper = result.interval
    assert 0.01 < lower < result.difference < upper
    assert result.interval_level == pytest.approx(0.9)
    assert result.rows_needed is not None and result.rows_needed < 5000


# ---- framings --------------------------------------------------------------------------------------------
def test_non_inferiority_passes_an_equal_candidate_with_a_generous_margin_and_fails_a_worse_one():
    rng = np.random.default_rng(11)
    positive, a, b = binormal(20_000, rng, 0.8, 0.8)
    equal = pt.delong_test(positive, a, b, framing="non_inferiority", margin=0.02)
    assert equal.passed and equal.threshold == -0.02
    assert not pt.delong_test(positive, a, b, framing="superiority", margin=0.02).passed
    positive, worse, champion = binormal(20_000, rng, 0.74, 0.8)
    assert not pt.delong_test(positive, worse, champion, framing="non_inferiority", margin=0.02).passed


def test_a_margin_equal_to_the_observed_difference_is_a_coin_toss_on_every_scale():
    rng = np.random.default_rng(5)
    truth = rng.normal(10, 3, size=4000)
    candidate, champion = truth + rng.normal(0, 1.0, 4000), truth + rng.normal(0.2, 1.1, 4000)
    for metric in ("rmse", "r2", "mae"):
        observed = pt.loss_test(metric, truth, candidate, champion).difference
        assert observed > 0
        at_margin = pt.loss_test(metric, truth, candidate, champion, margin=observed)
        assert at_margin.p_value == pytest.approx(0.5, abs=1e-9), metric


def test_rmse_and_r2_report_on_their_own_scale():
    rng = np.random.default_rng(6)
    truth = rng.normal(0, 2, size=3000)
    candidate, champion = truth + rng.normal(0, 1.0, 3000), truth + rng.normal(0, 1.2, 3000)
    rmse = pt.loss_test("rmse", truth, candidate, champion)
    root = [math.sqrt(np.mean((p - truth) ** 2)) for p in (candidate, champion)]
    assert (rmse.candidate, rmse.champion) == pytest.approx(root)
    assert rmse.difference == pytest.approx(root[1] - root[0])
    r2 = pt.loss_test("r2", truth, candidate, champion)
    assert r2.difference == pytest.approx(np.mean((champion - truth) ** 2 - (candidate - truth) ** 2) / np.var(truth))
    # the decisions agree with the MSE-scale test they are mapped onto
    for result in (rmse, r2):
        assert result.p_value == pytest.approx(pt.loss_test("rmse", truth, candidate, champion).p_value)
    assert rmse.interval[0] < rmse.difference < rmse.interval[1]


# ---- paired z on losses ----------------------------------------------------------------------------------
def test_paired_z_agrees_with_scipy_paired_t_on_many_rows():
    rng = np.random.default_rng(8)
    positive, a, b = binormal(50_000, rng, 0.81, 0.8)
    p_a, p_b = probabilities(a), probabilities(b)
    result = pt.loss_test("log_loss", positive, p_a, p_b)
    loss = [-(positive * np.log(p) + (1 - positive) * np.log(1 - p)) for p in (p_a, p_b)]
    reference = stats.ttest_rel(loss[1], loss[0], alternative="greater")
    assert result.p_value == pytest.approx(reference.pvalue, rel=0.01, abs=1e-6)
    assert result.candidate == pytest.approx(log_loss(positive, p_a))
    with_margin = pt.loss_test("log_loss", positive, p_a, p_b, margin=0.001)
    shifted = stats.ttest_1samp(loss[1] - loss[0] - 0.001, 0.0, alternative="greater")
    assert with_margin.p_value == pytest.approx(shifted.pvalue, rel=0.01, abs=1e-6)


def test_multiclass_log_loss_matches_scikit_learn():
    rng = np.random.default_rng(9)
    truth = rng.integers(0, 3, size=500)
    candidate, champion = rng.dirichlet([1, 1, 1], size=500), rng.dirichlet([2, 2, 2], size=500)
    result = pt.loss_test("log_loss", truth, candidate, champion)
    assert result.candidate == pytest.approx(log_loss(truth, candidate, labels=[0, 1, 2]))
    assert result.champion == pytest.approx(log_loss(truth, champion, labels=[0, 1, 2]))


def test_equal_models_are_promoted_on_brier_at_the_tests_level():
    rng = np.random.default_rng(12)
    promoted = 0
    for _ in range(300):
        positive, a, b = binormal(2000, rng)
        promoted += pt.loss_test("brier", positive, probabilities(a), probabilities(b)).passed
    assert promoted / 300 < 0.09


def test_not_wilcoxon_a_candidate_that_wins_most_rows_but_has_the_worse_mean_loss_is_not_better():
    rng = np.random.default_rng(13)
    champion_loss = rng.exponential(1.0, size=2000)
    gain = np.where(rng.random(2000) < 0.9, 0.05, -1.0)  # slightly better on 90% of rows, much worse on 10%
    candidate_loss = champion_loss - gain
    assert candidate_loss.mean() > champion_loss.mean()
    assert stats.wilcoxon(champion_loss, candidate_loss, alternative="greater").pvalue < 0.05
    truth = np.zeros(2000)  # MAE of predictions equal to the losses is their mean
    assert not pt.loss_test("mae", truth, candidate_loss, champion_loss).passed


# ---- accuracy --------------------------------------------------------------------------------------------
def test_mcnemar_at_margin_zero_matches_statsmodels_exact_test():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(14)
    truth = rng.integers(0, 3, size=400)
    candidate = np.where(rng.random(400) < 0.8, truth, rng.integers(0, 3, size=400))
    champion = np.where(rng.random(400) < 0.72, truth, rng.integers(0, 3, size=400))
    result = pt.accuracy_test(truth, candidate, champion)
    right_a, right_b = candidate == truth, champion == truth
    table = [[np.sum(right_a & right_b), np.sum(right_a & ~right_b)], [np.sum(~right_a & right_b), 0]]
    assert table[0][1] > table[1][0]
    two_sided = mcnemar(table, exact=True).pvalue
    assert result.test == "mcnemar" and result.p_value == pytest.approx(two_sided / 2)
    assert result.difference == pytest.approx(right_a.mean() - right_b.mean())


def test_accuracy_with_a_margin_is_a_paired_z_on_correctness_of_thresholded_scores():
    positive, a, b = binormal(20_000, np.random.default_rng(15))
    result = pt.accuracy_test(positive, probabilities(a), probabilities(b), framing="non_inferiority",
                              margin=0.01, threshold=0.5)
    assert result.test == "paired_z" and result.passed
    assert result.candidate == pytest.approx(np.mean((probabilities(a) >= 0.5) == positive))


# ---- paired bootstrap ------------------------------------------------------------------------------------
def test_bootstrap_metrics_equal_scikit_learns_on_the_full_holdout():
    rng = np.random.default_rng(16)
    positive, a, b = binormal(3000, rng, 0.8, 0.75)
    a, b = np.round(probabilities(a), 2), probabilities(b)  # ties in the candidate's scores
    pr = pt.bootstrap_test("pr_auc", positive, a, b, resamples=200)
    assert (pr.candidate, pr.champion) == pytest.approx([average_precision_score(positive, s) for s in (a, b)])
    f1 = pt.bootstrap_test("f1", positive, a, b, threshold=0.3, resamples=200)
    assert (f1.candidate, f1.champion) == pytest.approx([f1_score(positive, s >= 0.3) for s in (a, b)])
    labels = rng.integers(0, 4, size=3000)
    guess_a = np.where(rng.random(3000) < 0.6, labels, rng.integers(0, 4, size=3000))
    guess_b = np.where(rng.random(3000) < 0.5, labels, rng.integers(0, 4, size=3000))
    macro = pt.bootstrap_test("macro_f1", labels, guess_a, guess_b, resamples=200)
    assert macro.candidate == pytest.approx(f1_score(labels, guess_a, average="macro"))
    assert macro.passed  # 60% against 50% right on 3,000 rows


def test_weighted_average_precision_equals_scikit_learns_with_sample_weights():
    rng = np.random.default_rng(17)
    positive, a, b = binormal(800, rng, 0.8, 0.7, prevalence=0.2)
    a, b = np.round(a, 1), np.round(b, 1)
    weighted = pt._weighted_metric("pr_auc", positive, a, b, None)
    weights = rng.integers(0, 3, size=(3, 800)).astype(np.float32)
    values = weighted(weights[:, weighted.order])
    for row, w in zip(values, weights, strict=True):
        expected = [average_precision_score(positive, s, sample_weight=w) for s in (a, b)]
        assert row == pytest.approx(expected, rel=1e-6)


def test_bootstrap_is_paired_seeded_and_tells_equal_from_better():
    rng = np.random.default_rng(18)
    positive, a, b = binormal(5000, rng, 0.8, 0.8)
    first = pt.bootstrap_test("pr_auc", positive, a, b, resamples=300, seed=4)
    assert first == pt.bootstrap_test("pr_auc", positive, a, b, resamples=300, seed=4)
    assert not first.passed
    # pairing: the same model against itself differs by exactly 0 in every resample
    same = pt.bootstrap_test("pr_auc", positive, a, a, framing="non_inferiority", margin=0.001, resamples=300)
    assert same.standard_error == 0 and same.interval == (0.0, 0.0) and same.passed
    positive, a, b = binormal(5000, rng, 0.88, 0.78)
    better = pt.bootstrap_test("pr_auc", positive, a, b, margin=0.01, resamples=300, effect=0.05)
    assert better.passed and better.interval[0] > 0.01 and better.rows_needed < 5000


# ---- rows needed and the alpha split ---------------------------------------------------------------------
def test_rows_needed_shrinks_as_the_effect_grows_and_follows_the_normal_approximation():
    positive, a, b = binormal(10_000, np.random.default_rng(19))
    needs = [pt.delong_test(positive, a, b, effect=effect).rows_needed for effect in (0.005, 0.01, 0.02, 0.04)]
    assert all(n is not None for n in needs) and needs == sorted(needs, reverse=True) and needs[0] > needs[-1]
    se = 0.004  # at 10,000 rows: the effect 0.01 needs 10,000 * ((1.6449 + 0.8416) * 0.004 / 0.01)² = 9,893 rows
    assert pt.rows_needed(se, 10_000, 0.01, 0.0) == 9893
    assert pt.rows_needed(se, 10_000, 0.01, -0.01) == math.ceil(9893 / 4)  # twice the distance: a quarter
    assert pt.rows_needed(se, 10_000, 0.01, 0.0, power=0.9) > pt.rows_needed(se, 10_000, 0.01, 0.0)
    assert pt.rows_needed(se, 10_000, 0.01, 0.01) is None  # an effect at the margin can never clear it
    assert pt.rows_needed(se, 10_000, None, 0.0) is None and pt.rows_needed(0.0, 10_000, 0.01, 0.0) is None


def test_non_inferiority_sizes_for_an_equal_candidate_when_no_effect_is_declared():
    positive, a, b = binormal(10_000, np.random.default_rng(20))
    result = pt.delong_test(positive, a, b, framing="non_inferiority", margin=0.01)
    assert result.effect == 0.0 and result.rows_needed is not None
    assert pt.delong_test(positive, a, b).rows_needed is None  # superiority: say what effect to size for


def test_split_alpha_gives_the_primary_alpha_and_each_guardrail_a_bonferroni_share():
    split = pt.split_alpha("roc_auc", ["brier", "slice:origin=EWR:roc_auc", "slice:origin=JFK:roc_auc"], 0.05)
    assert split.primary_alpha == 0.05 and split.alpha_of("roc_auc") == 0.05
    assert split.guardrails == {name: pytest.approx(0.05 / 3) for name in split.guardrails}
    assert pt.split_alpha("roc_auc", ["brier"], correction="none").guardrails == {"brier": 0.05}
    assert pt.split_alpha("roc_auc", []).guardrails == {}
    with pytest.raises(ValueError, match="primary"):
        pt.split_alpha("roc_auc", ["roc_auc"])


# ---- what the tests refuse -------------------------------------------------------------------------------
def test_every_metric_of_every_task_type_has_a_paired_test():
    covered = {metric for task in TASK_TYPES.values() for metric in task.metrics} - {"balanced_accuracy"}
    assert covered <= set(pt.TEST_OF_METRIC)


@pytest.mark.parametrize("call, message", [
    (lambda: pt.delong_test([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]), "both classes"),
    (lambda: pt.delong_test([1, 0, 1, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1, 0.0]), "one per truth row"),
    (lambda: pt.delong_test([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1, 0.0], margin=-0.01), "margin"),
    (lambda: pt.delong_test([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1, 0.0], framing="equal"), "framing"),
    (lambda: pt.delong_test([2, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1, 0.0]), "0/1"),
    (lambda: pt.loss_test("r2", [1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [1.0, 1.0, 2.0]), "does not vary"),
    (lambda: pt.compare_metric("balanced_accuracy", [1, 0], [1, 0], [1, 0]), "no paired test"),
    (lambda: pt.loss_test("brier", [1, 0], [0.5, np.nan], [0.5, 0.5]), "missing"),
])
def test_inputs_that_cannot_be_tested_raise_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_compare_metric_dispatches_to_the_test_that_fits_and_reports_as_a_dict():
    positive, a, b = binormal(2000, np.random.default_rng(21))
    p_a, p_b = probabilities(a), probabilities(b)
    tests = {metric: pt.compare_metric(metric, positive, p_a, p_b, threshold=0.3, resamples=200).test
             for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "f1", "accuracy")}
    assert tests == {"roc_auc": "delong", "pr_auc": "paired_bootstrap", "log_loss": "paired_z",
                     "brier": "paired_z", "f1": "paired_bootstrap", "accuracy": "mcnemar"}
    report = pt.compare_metric("roc_auc", positive, p_a, p_b, framing="non_inferiority", margin=0.01).to_dict()
    assert report["threshold"] == -0.01 and report["interval_level"] == pytest.approx(0.9)
    assert set(report) >= {"metric", "framing", "difference", "interval", "p_value", "passed", "rows",
                           "rows_needed"}
