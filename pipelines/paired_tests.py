"""Paired tests: is a candidate better than the champion scored on the same holdout rows, or is it noise?

Each test compares the two models on the *same* rows, so the rows' shared difficulty cancels out and the
test sees only how the two models differ. Every test returns one :class:`PairedComparison`: the observed
difference (in the metric's better direction: positive means the candidate is better), its interval, a
one-sided p-value, the decision, and the holdout rows the declared effect would need.

The test per metric:

- ``roc_auc``: DeLong's test for two correlated AUCs, computed from midranks in O(n log n) (Sun & Xu 2014,
  "Fast implementation of DeLong's algorithm for comparing the areas under correlated ROC curves").
- ``log_loss``, ``brier``, ``mae``, ``rmse``, ``r2``: each is a function of the mean of a per-row loss, so a
  paired z-test on the per-row loss differences (champion's loss minus candidate's). RMSE and R² are tested
  on the squared error (MSE), with the margin mapped from the metric's scale to MSE's:

  * R² = 1 - MSE / var(y), and both models share the holdout's ``var(y)``, so an R² difference ``d`` is an
    MSE difference ``d * var(y)``: the mapping is exact.
  * RMSE = sqrt(MSE): "candidate RMSE below champion RMSE - t" is "candidate MSE below (champion RMSE - t)²",
    so the threshold ``t`` becomes ``MSE_champion - (RMSE_champion - t)²`` (= ``2 t RMSE_champion - t²``),
    with the champion's observed RMSE plugged in. At margin 0 the mapping is exact; with a margin it
    ignores the champion RMSE's own sampling error, a second-order term while the margin is small against
    the RMSE. Difference and interval are reported back on the RMSE scale (the map is monotone, so the
    decision reads the same on either scale).
- ``pr_auc``, ``f1``, ``macro_f1``: no usable closed-form variance, so a paired bootstrap: one set of row
  indices per resample serves both models (drawing them separately would throw the pairing away). The
  resamples are row counts applied as weights to presorted scores and indicator columns, so 1,000
  resamples on 100k rows take seconds. Percentile interval; p-value is the share of resampled
  differences at or below the threshold.
- ``accuracy``: a paired z-test on per-row correctness; with margin 0, the exact McNemar test on the
  discordant rows (rows where exactly one model is right) instead.

Not Wilcoxon's signed-rank test: it tests whether the per-row differences are *symmetric about zero*, not
whether their mean is, so a candidate that wins slightly on most rows and loses badly on a few (a worse mean
loss, a worse metric) can come out "significantly better".

Two framings, both one-sided at level ``alpha`` with a margin ``m >= 0``:

- **superiority**: the candidate is better by more than ``m`` (H0: difference <= m);
- **non-inferiority**: the candidate is not worse by more than ``m`` (H0: difference <= -m).

The test passes when the lower end of the reported interval is above the threshold (``m`` or ``-m``),
which is the same event as ``p_value < alpha``. The interval is the two-sided ``1 - 2 alpha`` one (90% at
alpha 0.05), whose lower end is the one-sided ``1 - alpha`` bound the decision uses.

Rows needed (:func:`rows_needed`): the normal approximation ``n = rows * ((z_{1-alpha} + z_power) * se /
(effect - threshold))²``, from the observed standard error of the paired difference at ``rows`` rows (every
test here has a variance that shrinks as 1/rows) and a declared true effect. ``None`` when it cannot be
said: no effect declared, an effect that does not clear the threshold, or no variance observed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
from scipy import stats

from pipelines.metric_tests import TEST_OF_METRIC

Framing = Literal["superiority", "non_inferiority"]
FRAMINGS: tuple[str, ...] = ("superiority", "non_inferiority")

LOSS_METRICS = tuple(metric for metric, test in TEST_OF_METRIC.items() if test == "paired_z")
BOOTSTRAP_METRICS = tuple(metric for metric, test in TEST_OF_METRIC.items() if test == "paired_bootstrap")
PROBABILITY_CLIP = 1e-7  # as the task types clip before log loss


@dataclass(frozen=True)
class PairedComparison:
    """One metric's paired comparison of a candidate against the champion on the same holdout rows.

    ``difference`` is in the metric's better direction (candidate minus champion for a higher-is-better
    metric, champion minus candidate for a loss): positive means the candidate is better. ``interval`` is
    the two-sided ``interval_level`` (= 1 - 2 alpha) interval of that difference; its lower end is the
    one-sided bound the decision uses. ``rows_needed`` is the holdout size at which a true difference of
    ``effect`` passes with probability ``power`` (None when that cannot be said).
    """

    metric: str
    test: str
    framing: Framing
    margin: float
    alpha: float
    candidate: float
    champion: float
    difference: float
    interval: tuple[float, float]
    p_value: float
    passed: bool
    rows: int
    standard_error: float
    rows_needed: int | None
    effect: float | None = None
    power: float = 0.8
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def threshold(self) -> float:
        """The difference the test must clear: ``margin`` (superiority) or ``-margin`` (non-inferiority)."""
        return decision_threshold(self.framing, self.margin)

    @property
    def interval_level(self) -> float:
        return 1 - 2 * self.alpha

    def summary(self) -> str:
        claim = (f"better by more than {self.margin:.4g}" if self.framing == "superiority"
                 else f"not worse by more than {self.margin:.4g}")
        lower, upper = self.interval
        verdict = "shown" if self.passed else "not shown"
        text = (f"{self.metric}: candidate {self.candidate:.4f} vs champion {self.champion:.4f} on {self.rows} "
                f"paired rows, difference {self.difference:+.4f} ({self.interval_level:.0%} interval "
                f"{lower:+.4f} to {upper:+.4f}, {self.test}, p={self.p_value:.3g}): {claim} {verdict} "
                f"at alpha {self.alpha:.3g}")
        if self.rows_needed is not None:
            text += (f"; a true difference of {self.effect:+.4g} needs {self.rows_needed} rows "
                     f"for {self.power:.0%} power")
        return text

    def to_dict(self) -> dict:
        data = asdict(self)
        data["interval"] = list(self.interval)
        data["notes"] = list(self.notes)
        data["threshold"] = self.threshold
        data["interval_level"] = self.interval_level
        return data


@dataclass(frozen=True)
class AlphaSplit:
    """The level each check of one promotion decision is tested at (see :func:`split_alpha`)."""

    primary: str
    primary_alpha: float
    guardrails: dict[str, float]
    correction: str

    def alpha_of(self, check: str) -> float:
        return self.primary_alpha if check == self.primary else self.guardrails[check]


def split_alpha(primary: str, guardrails: Sequence[str], alpha: float = 0.05,
                correction: Literal["bonferroni", "none"] = "bonferroni") -> AlphaSplit:
    """The level of the primary test and of each guardrail: the primary metric gets ``alpha``; each of the
    ``k`` guardrails (every other gated metric or slice, tested for non-inferiority) gets ``alpha / k``
    (Bonferroni), or ``alpha`` with ``correction="none"``.

    A candidate is promoted only when *every* test passes (an intersection-union test), so the chance of
    promoting a candidate for which any one claim is false is already at most the level of that claim's
    test. What Bonferroni adds is that the ``k`` guardrails' one-sided bounds hold *simultaneously* with
    confidence ``1 - alpha`` (the report can be read as one joint statement), at the price of power: each guardrail
    needs ``((z_{1-alpha/k} + z_power) / (z_{1-alpha} + z_power))²`` times the rows (1.27x for k=2,
    1.43x for k=3, 1.89x for k=10, at alpha 0.05 and power 0.8), and a truly equal candidate fails some
    guardrail more often.
    """
    _check_level(alpha, "alpha")
    if primary in guardrails:
        raise ValueError(f"{primary!r} is the primary metric and cannot also be a guardrail")
    if len(set(guardrails)) != len(guardrails):
        raise ValueError(f"guardrails repeat a check: {list(guardrails)}")
    if correction not in ("bonferroni", "none"):
        raise ValueError(f"correction must be 'bonferroni' or 'none', not {correction!r}")
    each = alpha / len(guardrails) if guardrails and correction == "bonferroni" else alpha
    return AlphaSplit(primary, alpha, {name: each for name in guardrails}, correction)


def rows_needed(standard_error: float, rows: int, effect: float | None, threshold: float,
                alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Holdout rows at which a true difference ``effect`` clears ``threshold`` with probability ``power``
    in a one-sided test at ``alpha``, by the normal approximation from the ``standard_error`` observed at
    ``rows`` rows (variance proportional to 1/rows). ``None`` when it cannot be said: no effect declared,
    an effect at or below the threshold (no holdout is large enough), or no variance observed."""
    _check_level(alpha, "alpha")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if effect is None or not math.isfinite(standard_error) or standard_error <= 0 or effect <= threshold:
        return None
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    return max(2, math.ceil(rows * (z * standard_error / (effect - threshold)) ** 2))


# ---- the tests -------------------------------------------------------------------------------------------
def delong_test(truth, candidate, champion, *, framing: Framing = "superiority", margin: float = 0.0,
                alpha: float = 0.05, effect: float | None = None, power: float = 0.8) -> PairedComparison:
    """DeLong's test on ROC AUC(candidate) - AUC(champion), one-sided with the margin.

    ``truth``: 0/1 (or bool) per row; ``candidate``/``champion``: their scores on the same rows (any
    monotone score: probabilities, logits). The variance is DeLong's, from the structural components
    computed with midranks (Sun & Xu 2014), so ties count one half as in the AUC itself.
    """
    framing, effect = _check_framing(framing, margin, alpha, effect)
    positive = _binary_truth(truth)
    scores = np.vstack([_scores(candidate, positive.size, "candidate"), _scores(champion, positive.size, "champion")])
    aucs, covariance = delong_covariance(positive, scores)
    difference = float(aucs[0] - aucs[1])
    se = math.sqrt(max(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1], 0.0))
    return _normal_result("roc_auc", "delong", framing, margin, alpha, effect, power, float(aucs[0]),
                          float(aucs[1]), difference, se, positive.size)


def delong_covariance(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The AUC of each row of ``scores`` (models x rows) against the 0/1 ``positive``, and DeLong's
    covariance matrix of those AUCs, by the midrank algorithm of Sun & Xu (2014) in O(n log n)."""
    positive = np.asarray(positive).astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError("ROC AUC needs both classes in the holdout: "
                         f"{m} positive and {n} negative rows")
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's variance needs at least 2 rows of each class: {m} positive, {n} negative")
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    x, y = scores[:, positive], scores[:, ~positive]
    rank_x = stats.rankdata(x, axis=1)  # midranks among the positives
    rank_y = stats.rankdata(y, axis=1)  # midranks among the negatives
    rank_z = stats.rankdata(np.hstack([x, y]), axis=1)  # midranks among all rows
    aucs = (rank_z[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v10 = (rank_z[:, :m] - rank_x) / n  # per positive: share of negatives it outranks (ties one half)
    v01 = 1 - (rank_z[:, m:] - rank_y) / m  # per negative: share of positives that outrank it
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def loss_test(metric: str, truth, candidate, champion, *, framing: Framing = "superiority", margin: float = 0.0,
              alpha: float = 0.05, effect: float | None = None, power: float = 0.8) -> PairedComparison:
    """Paired z-test on the per-row losses of a mean-of-loss metric (``log_loss``, ``brier``, ``mae``,
    ``rmse``, ``r2``); ``margin`` and ``effect`` are on the metric's own scale (see the module docstring for
    how RMSE's and R²'s map to MSE's).

    ``truth``: 0/1 (binary ``log_loss``, ``brier``), class indices (multiclass ``log_loss``, where the
    predictions are probability matrices, rows x classes), or numbers (regression);
    ``candidate``/``champion``: the models' predictions on the same rows.
    """
    if metric not in LOSS_METRICS:
        raise ValueError(f"{metric!r} is not a mean-of-loss metric (use one of {list(LOSS_METRICS)})")
    framing, effect = _check_framing(framing, margin, alpha, effect)
    loss_candidate, loss_champion = (per_row_losses(metric, truth, predictions, name)
                                     for predictions, name in ((candidate, "candidate"), (champion, "champion")))
    rows = loss_candidate.size
    if rows < 2:
        raise ValueError(f"a paired test needs at least 2 rows, got {rows}")
    # per row, champion's loss minus candidate's: positive where the candidate does better
    gain = loss_champion - loss_candidate
    mean_gain, se = float(gain.mean()), float(gain.std(ddof=1) / math.sqrt(rows))
    threshold = decision_threshold(framing, margin)
    notes: tuple[str, ...] = ()
    mse_candidate, mse_champion = float(loss_candidate.mean()), float(loss_champion.mean())

    if metric == "r2":
        spread = float(np.var(np.asarray(truth, dtype=float)))
        if spread <= 0:
            raise ValueError("R² is undefined on a holdout whose target does not vary")

        def to_metric(mse_gain: float) -> float:
            return mse_gain / spread

        def to_test(metric_gain: float) -> float:
            return metric_gain * spread

        values = (1 - mse_candidate / spread, 1 - mse_champion / spread)
        notes = (f"tested on MSE: an R² difference d is an MSE difference d * var(y) = d * {spread:.6g}",)
    elif metric == "rmse":
        root = math.sqrt(mse_champion)

        def to_metric(mse_gain: float) -> float:
            return root - math.sqrt(max(mse_champion - mse_gain, 0.0))

        def to_test(metric_gain: float) -> float:
            return mse_champion - max(root - metric_gain, 0.0) ** 2

        values = (math.sqrt(mse_candidate), root)
        notes = (f"tested on MSE: an RMSE threshold t is the MSE threshold champion MSE - (champion RMSE - t)² "
                 f"= {to_test(threshold):.6g} for t = {threshold:+.6g}",)
    else:
        def to_metric(mse_gain: float) -> float:
            return mse_gain

        to_test = to_metric
        values = (mse_candidate, mse_champion)
    return _normal_result(metric, "paired_z", framing, margin, alpha, effect, power, values[0], values[1],
                          mean_gain, se, rows, to_metric=to_metric, to_test=to_test, notes=notes)


def accuracy_test(truth, candidate, champion, *, framing: Framing = "superiority", margin: float = 0.0,
                  alpha: float = 0.05, effect: float | None = None, power: float = 0.8,
                  threshold: float | None = None) -> PairedComparison:
    """Accuracy: a paired z-test on per-row correctness (candidate right minus champion right); with margin 0,
    the exact one-sided McNemar test on the discordant rows decides instead (the interval stays the z one).

    ``candidate``/``champion``: predicted labels compared with ``truth``; or, with a ``threshold``, binary
    scores (a row is predicted positive when its score is at least the threshold, truth 0/1).
    """
    framing, effect = _check_framing(framing, margin, alpha, effect)
    truth_labels = np.asarray(truth)
    if threshold is not None:
        truth_labels = _binary_truth(truth)
        candidate = _scores(candidate, truth_labels.size, "candidate") >= threshold
        champion = _scores(champion, truth_labels.size, "champion") >= threshold
    right_candidate = _labels(candidate, truth_labels.size, "candidate") == truth_labels
    right_champion = _labels(champion, truth_labels.size, "champion") == truth_labels
    rows = truth_labels.size
    if rows < 2:
        raise ValueError(f"a paired test needs at least 2 rows, got {rows}")
    gain = right_candidate.astype(float) - right_champion.astype(float)
    se = float(gain.std(ddof=1) / math.sqrt(rows))
    result = _normal_result("accuracy", "paired_z", framing, margin, alpha, effect, power,
                            float(right_candidate.mean()), float(right_champion.mean()), float(gain.mean()), se, rows)
    if margin > 0:
        return result
    only_candidate = int((right_candidate & ~right_champion).sum())
    only_champion = int((~right_candidate & right_champion).sum())
    p_value = mcnemar_p_value(only_candidate, only_champion)
    return replace(result, test="mcnemar", p_value=p_value, passed=p_value < alpha,
                    notes=(f"McNemar: {only_candidate} rows only the candidate gets right, {only_champion} only "
                           "the champion; interval from the paired z",))


def mcnemar_p_value(only_candidate: int, only_champion: int) -> float:
    """Exact one-sided McNemar p-value that the candidate is right more often than the champion: among the
    discordant rows, the chance of at least ``only_candidate`` candidate wins when each is a fair coin."""
    discordant = only_candidate + only_champion
    if discordant == 0:
        return 1.0
    return float(stats.binom.sf(only_candidate - 1, discordant, 0.5))


def bootstrap_test(metric: str, truth, candidate, champion, *, framing: Framing = "superiority",
                   margin: float = 0.0, alpha: float = 0.05, effect: float | None = None, power: float = 0.8,
                   threshold: float | None = None, resamples: int = 1000, seed: int = 0,
                   chunk_cells: int = 4_000_000) -> PairedComparison:
    """Paired bootstrap for ``pr_auc``, ``f1`` (binary) and ``macro_f1`` (multiclass).

    Each resample draws one set of row indices (as counts per row) that both models are scored on, so the
    resampled difference keeps the pairing. ``pr_auc`` takes scores; ``f1`` takes scores cut at
    ``threshold`` (0.5 when None, as the binary task type does); ``macro_f1`` takes predicted labels and
    averages the F1 of the classes in ``truth``. ``chunk_cells`` bounds the memory: resamples are drawn in
    chunks of about that many (resample, row) cells.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"{metric!r} has no bootstrap here (use one of {list(BOOTSTRAP_METRICS)})")
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, got {resamples}")
    framing, effect = _check_framing(framing, margin, alpha, effect)
    weighted = _weighted_metric(metric, truth, candidate, champion, threshold)
    rows = weighted.rows
    if rows < 2:
        raise ValueError(f"a paired test needs at least 2 rows, got {rows}")
    values = weighted(np.ones((1, rows), dtype=np.float32))
    observed = float(values[0, 0] - values[0, 1])
    rng = np.random.default_rng(seed)
    per_chunk = max(1, min(resamples, chunk_cells // rows))
    gains = []
    for start in range(0, resamples, per_chunk):
        count = min(per_chunk, resamples - start)
        draws = rng.integers(0, rows, size=(count, rows)) + (np.arange(count) * rows)[:, None]
        # counts are small integers: float32 holds their sums exactly up to 2**24 rows, at half the traffic
        weights = np.bincount(draws.ravel(), minlength=count * rows).reshape(count, rows).astype(np.float32)
        scored = weighted(weights)
        gains.append(scored[:, 0] - scored[:, 1])
    gain = np.concatenate(gains)
    gain = gain[np.isfinite(gain)]
    if gain.size < resamples // 2:
        raise ValueError(f"{metric}: most resamples had no defined value (too few rows of some class)")
    cut = decision_threshold(framing, margin)
    lower, upper = np.quantile(gain, [alpha, 1 - alpha])
    p_value = float((1 + np.sum(gain <= cut)) / (1 + gain.size))
    se = float(gain.std(ddof=1))
    return PairedComparison(
        metric=metric, test="paired_bootstrap", framing=framing, margin=margin, alpha=alpha,
        candidate=float(values[0, 0]), champion=float(values[0, 1]), difference=observed,
        interval=(float(lower), float(upper)), p_value=p_value, passed=p_value < alpha, rows=rows,
        standard_error=se, rows_needed=rows_needed(se, rows, effect, cut, alpha, power), effect=effect,
        power=power, notes=(f"{gain.size} paired resamples, percentile interval",))


def compare_metric(metric: str, truth, candidate, champion, *, framing: Framing = "superiority",
                   margin: float = 0.0, alpha: float = 0.05, effect: float | None = None, power: float = 0.8,
                   threshold: float | None = None, resamples: int = 1000, seed: int = 0) -> PairedComparison:
    """The paired test that fits ``metric`` (``TEST_OF_METRIC``), on the two models' outputs for the same
    rows: binary scores (roc_auc, pr_auc, log_loss, brier; f1 and accuracy cut them at ``threshold``),
    probability matrices (multiclass log_loss), predicted labels (macro_f1, multiclass accuracy) or
    predicted numbers (rmse, mae, r2)."""
    common = {"framing": framing, "margin": margin, "alpha": alpha, "effect": effect, "power": power}
    test = TEST_OF_METRIC.get(metric)
    if test == "delong":
        return delong_test(truth, candidate, champion, **common)
    if test == "paired_z":
        return loss_test(metric, truth, candidate, champion, **common)
    if test == "mcnemar":
        return accuracy_test(truth, candidate, champion, threshold=threshold, **common)
    if test == "paired_bootstrap":
        return bootstrap_test(metric, truth, candidate, champion, threshold=threshold, resamples=resamples,
                              seed=seed, **common)
    raise ValueError(f"no paired test for {metric!r} (tests exist for {sorted(TEST_OF_METRIC)})")


# ---- the parts the tests share ---------------------------------------------------------------------------
def decision_threshold(framing: str, margin: float) -> float:
    """The difference a test must clear: ``margin`` for superiority, ``-margin`` for non-inferiority; a zero
    margin gives 0.0 either way (never -0.0, which prints as "-0" on the pages and in the reasons)."""
    return float(margin) if framing == "superiority" else 0.0 - margin


def _check_level(value: float, name: str) -> None:
    if not 0 < value < 0.5:
        raise ValueError(f"{name} must be in (0, 0.5), got {value}")


def _check_framing(framing: str, margin: float, alpha: float, effect: float | None) -> tuple[Framing, float | None]:
    """Validated arguments; a non-inferiority test with no declared effect is sized for an equal candidate."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {list(FRAMINGS)}, got {framing!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0 (the framing gives it its sign), got {margin}")
    _check_level(alpha, "alpha")
    if effect is None and framing == "non_inferiority":
        effect = 0.0
    return framing, effect  # type: ignore[return-value]


def _normal_result(metric: str, test: str, framing: Framing, margin: float, alpha: float, effect: float | None,
                   power: float, candidate: float, champion: float, gain: float, se: float, rows: int,
                   to_metric: Callable[[float], float] = float, to_test: Callable[[float], float] = float,
                   notes: tuple[str, ...] = ()) -> PairedComparison:
    """A one-sided z decision on ``gain`` (on the test's scale, standard error ``se``), reported on the
    metric's scale through the monotone ``to_metric`` (``to_test`` is its inverse, for threshold and effect)."""
    cut = to_test(decision_threshold(framing, margin))
    if se > 0:
        p_value = float(stats.norm.sf((gain - cut) / se))
    else:  # both models identical row by row, or constant differences: the observed gain is exact
        p_value = 0.0 if gain > cut else 1.0
    z = stats.norm.ppf(1 - alpha)
    lower, upper = to_metric(gain - z * se), to_metric(gain + z * se)
    needed = rows_needed(se, rows, None if effect is None else to_test(effect), cut, alpha, power)
    metric_se = (upper - lower) / (2 * z) if se > 0 else 0.0
    return PairedComparison(
        metric=metric, test=test, framing=framing, margin=margin, alpha=alpha, candidate=candidate,
        champion=champion, difference=float(to_metric(gain)), interval=(float(lower), float(upper)),
        p_value=p_value, passed=p_value < alpha, rows=rows, standard_error=float(metric_se), rows_needed=needed,
        effect=effect, power=power, notes=notes)


def _binary_truth(truth) -> np.ndarray:
    values = np.asarray(truth)
    if values.ndim != 1:
        raise ValueError(f"truth must be one value per row, got shape {values.shape}")
    if values.dtype == bool:
        return values.astype(int)
    unique = np.unique(values)
    if not np.isin(unique, [0, 1]).all():
        raise ValueError(f"binary truth must be 0/1 or bool, got values {unique[:5].tolist()}")
    return values.astype(int)


def _scores(values, rows: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != (rows,):
        raise ValueError(f"{name} scores must be one per truth row ({rows}), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} scores have {int((~np.isfinite(array)).sum())} missing or infinite values")
    return array


def _labels(values, rows: int, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (rows,):
        raise ValueError(f"{name} predictions must be one per truth row ({rows}), got shape {array.shape}")
    return array


def per_row_losses(metric: str, truth, predictions, name: str) -> np.ndarray:
    """The per-row loss whose mean is ``metric`` (squared error for rmse and r2; for accuracy the error: 1
    where the predicted class index is not the outcome's, so the mean is 1 - accuracy)."""
    output = np.asarray(predictions, dtype=float)
    if metric == "accuracy":
        return (np.asarray(truth) != np.rint(output)).astype(float)
    if metric == "log_loss" and output.ndim == 2:  # multiclass: probabilities, rows x classes
        index = np.asarray(truth)
        if index.shape != (output.shape[0],) or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"multiclass log loss needs truth as class indices, one per row of {name}")
        if index.min() < 0 or index.max() >= output.shape[1]:
            raise ValueError(f"truth has class indices outside the {output.shape[1]} columns of {name}")
        probabilities = np.clip(output, PROBABILITY_CLIP, 1)
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
        return -np.log(probabilities[np.arange(index.size), index])
    if metric in ("log_loss", "brier"):
        positive = _binary_truth(truth)
        scores = _scores(output, positive.size, name)
        if metric == "brier":
            return (scores - positive) ** 2
        scores = np.clip(scores, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
        return -(positive * np.log(scores) + (1 - positive) * np.log1p(-scores))
    target = np.asarray(truth, dtype=float)
    scores = _scores(output, target.size, name)
    return np.abs(scores - target) if metric == "mae" else (scores - target) ** 2


class _WeightedMetric:
    """A metric of both models at many row weightings at once: ``self(weights)`` with ``weights`` of shape
    (resamples, rows) gives (resamples, 2) values, column 0 the candidate's, 1 the champion's, each oriented
    so higher is better (all three bootstrap metrics are). Weight column ``j`` belongs to row ``order[j]``
    (the metric picks the order that saves it work); bootstrap counts are exchangeable, so the resampling
    draws them straight in that order."""

    def __init__(self, rows: int, score: Callable[[np.ndarray], np.ndarray], order: np.ndarray | None = None):
        self.rows = rows
        self.order = np.arange(rows) if order is None else order
        self._score = score

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        return self._score(weights)


def _weighted_metric(metric: str, truth, candidate, champion, threshold: float | None) -> _WeightedMetric:
    if metric == "macro_f1":
        labels = np.asarray(truth)
        rows = labels.size
        predicted = [_labels(candidate, rows, "candidate"), _labels(champion, rows, "champion")]
        classes = np.unique(labels)
        columns = []  # per model and class: true positive, false positive, false negative indicators
        for output in predicted:
            for label in classes:
                hit, said = labels == label, output == label
                columns += [hit & said, ~hit & said, hit & ~said]
        indicators = np.column_stack(columns).astype(np.float32)
        k = classes.size

        def score(weights: np.ndarray) -> np.ndarray:
            counts = (weights @ indicators).astype(float).reshape(len(weights), 2, k, 3)
            tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
            denominator = 2 * tp + fp + fn
            f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
            return f1.mean(axis=2)

        return _WeightedMetric(rows, score)

    positive = _binary_truth(truth)
    rows = positive.size
    scores = [_scores(candidate, rows, "candidate"), _scores(champion, rows, "champion")]
    if metric == "f1":
        cut = 0.5 if threshold is None else threshold
        hit = positive.astype(bool)
        indicators = np.column_stack([column for output in scores for said in [output >= cut]
                                      for column in (hit & said, ~hit & said, hit & ~said)]).astype(np.float32)

        def score(weights: np.ndarray) -> np.ndarray:
            counts = (weights @ indicators).astype(float).reshape(len(weights), 2, 3)
            tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
            denominator = 2 * tp + fp + fn
            return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)

        return _WeightedMetric(rows, score)

    # pr_auc: average precision as scikit-learn computes it (step-wise, one point per distinct score). The
    # weights' columns are the rows in the candidate's ranking, so only the champion's ranking needs a
    # reordering; the sums are taken only where recall can step (groups of tied scores holding a positive).
    rankings = [np.argsort(output, kind="mergesort")[::-1] for output in scores]
    position = np.empty(rows, dtype=np.intp)
    position[rankings[0]] = np.arange(rows)
    parts = []
    for output, ranking in zip(scores, rankings, strict=True):
        ordered, hits = output[ranking], positive[ranking]
        ends = np.r_[np.flatnonzero(np.diff(ordered)), rows - 1]  # last row of each group of tied scores
        positives_through = np.cumsum(hits)[ends]
        steps = np.diff(positives_through, prepend=0) > 0
        parts.append((position[ranking], np.flatnonzero(hits), ends[steps], positives_through[steps] - 1))

    def score(weights: np.ndarray) -> np.ndarray:
        result = np.empty((len(weights), 2))
        for model, (columns, hit_columns, ends, hit_ends) in enumerate(parts):
            ordered = weights if model == 0 else weights[:, columns]
            predicted = np.cumsum(ordered, axis=1)[:, ends].astype(float)
            true_positive = np.cumsum(ordered[:, hit_columns], axis=1)[:, hit_ends].astype(float)
            precision = np.divide(true_positive, predicted, out=np.zeros_like(predicted), where=predicted > 0)
            recall_step = np.diff(true_positive, axis=1, prepend=0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                result[:, model] = (recall_step * precision).sum(axis=1) / true_positive[:, -1]
        return result

    return _WeightedMetric(rows, score, order=rankings[0])
