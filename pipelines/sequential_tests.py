"""Anytime-valid comparison of a shadow or canary challenger with the champion, fed cohort by cohort.

A challenger in shadow or canary is judged on rows whose labels arrive over days; an operator (or the
monitoring DAG) looks at the comparison after every window. A fixed-sample test repeated at every look
("peeking") promotes an equal challenger far more often than its level says (about a third of the time
over 50 looks at 5%). This module keeps instead a *confidence sequence*: an interval for the mean per-row
loss difference that holds at every number of rows simultaneously, so it may be read after every cohort and
the decision stopped on whenever it is reached.

The quantity: per labelled row, ``d = champion loss - challenger loss`` (positive where the challenger does
better), and its mean ``mu``, the improvement.

The unit: the sequence needs independent increments, and rows that share one draw are not independent. A
service assigns a canary per *request* and a request's rows share its context, so a request of several rows
is one unit: :func:`unit_means` averages its rows' differences into one value before they are fed, and
"rows" below counts such units. A request of one row (the usual case) is its own unit. With requests of
different sizes, ``mu`` is then the mean over requests of each request's mean improvement.

The boundary: the mixture sequential probability ratio test with a Gaussian mixture (Johari, Pekelis &
Walsh 2017, "Always valid inference"), whose confidence sequence is the normal-mixture boundary of Howard,
Ramdas, McAuliffe & Sekhon 2021 ("Time-uniform, nonparametric, nonasymptotic confidence sequences",
eq. 14). With ``n`` rows, running mean ``m_n`` and per-row variance ``sigma²``, the two-sided level-``alpha``
sequence is

    m_n +- sigma * sqrt((n + n0) * log((n + n0) / (n0 * alpha²))) / n

where ``n0`` (``mixing_rows``; ``rho = n0 * sigma²`` in Howard et al.'s notation, ``tau² = sigma² / n0`` in
Johari et al.'s) sets the mixture's spread. By Ville's inequality the true mean lies outside it at *any*
row count with probability at most ``alpha``. ``n0`` is chosen so that the boundary is narrowest at
``tuned_rows`` rows (default 10,000, the labelled rows a challenger collects in a few windows); the
sequence is valid for every choice, which only moves where it is tightest. ``sigma²`` is plugged in from the
rows seen so far (the exact guarantee is for a known variance; with the plug-in it is asymptotic, which is
why no decision is taken before ``min_rows``, default 1,000, rows: by then the variance of a per-row loss
difference is known within a few percent; the unit tests and ``benchmarks/promotion_stats.py`` check the
error under peeking by simulation).

Two feeds, both updated with cohorts (arrays of per-row losses, as labels mature):

- **shadow** (:meth:`SequentialState.update_shadow`): both models scored every row, so the rows are paired,
  ``d_i = champion_loss_i - challenger_loss_i``;
- **canary** (:meth:`SequentialState.update_canary`): each row was served by one model, the challenger with
  known probability ``p`` (the canary share), so only the served model's loss is seen. The
  inverse-propensity-weighted difference ``d_i = loss_i * (1 - c_i) / (1 - p) - loss_i * c_i / p``
  (``c_i`` = 1 when the challenger served row ``i``) has mean ``mu`` too, at the price of a larger variance
  (no pairing, and the weights); ``p`` may differ per row when the share changed between windows. Every row
  of a request has the request's ``c`` and ``p``, so the mean of a request's weighted differences is the
  weighted difference of its mean loss: :func:`unit_means` keeps the weighting unbiased.

The decision, at ``threshold`` ``t`` (``margin`` for ``superiority``: better by more than the margin;
``-margin`` for ``non_inferiority``: not worse by more than the margin), after ``min_rows`` rows:

- ``promote`` when the sequence's lower end is above ``t``: the challenger is better than ``t`` with
  confidence;
- ``retire`` when its upper end is below ``t``: the challenger's claim is excluded with confidence (for
  superiority at margin 0: it is worse; with a margin: it is not better by the margin, so it can never be
  promoted and keeping it only costs);
- ``continue`` otherwise.

The chance that either decision is ever wrong (promoting a challenger whose true ``mu <= t``, or retiring one
whose ``mu >= t``) is at most ``alpha`` however often the state is looked at. Every true ``mu != t`` leads to
a decision eventually; :meth:`SequentialState.result` says how many more labelled rows a declared ``effect``
would need: the ``n`` at which ``|effect - t|`` equals the boundary's half width plus ``z_power`` standard
errors (``power`` 0.5: the rows at which a running mean equal to the effect just decides, about the median
rows to a decision; 0.8, the default: the rows by which a fixed test at that ``n`` alone would decide 80% of
the time, so a conservative figure), with the variance observed so far.

Metrics (:data:`LOSS_OF_METRIC`): those that are a mean (or a monotone function of the mean) of a per-row
loss: ``rmse`` and ``r2`` (squared error; R² = 1 - MSE / var(y) with the same var(y) for both models, RMSE =
sqrt(MSE)), ``mae`` (absolute error), ``log_loss``, ``brier`` and ``accuracy`` (the error: 1 where the
predicted class is not the outcome). ``margin`` and ``effect`` are on the loss's own scale (MSE for rmse and
r2; a share of rows for accuracy). Not ``roc_auc`` (nor PR AUC, F1, macro F1): AUC is a
statistic of *pairs* of rows (a positive against a negative), not a mean of a per-row loss, so a row's
contribution depends on every other row and the sequence of per-row differences is not a sum of independent
increments the mixture martingale needs; a shadow comparison of a ranking model uses its log loss or Brier.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import optimize, stats

from pipelines.metric_tests import LOSS_OF_METRIC
from pipelines.paired_tests import decision_threshold, per_row_losses

Feed = Literal["shadow", "canary"]
Decision = Literal["promote", "retire", "continue"]
Framing = Literal["superiority", "non_inferiority"]

DEFAULT_MIN_ROWS = 1_000
DEFAULT_TUNED_ROWS = 10_000
STATE_VERSION = 1


def row_losses(metric: str, truth, predictions) -> np.ndarray:
    """Per-row loss of ``predictions`` against ``truth`` whose mean gives ``metric`` (squared error for rmse
    and r2, absolute error for mae, log loss and Brier as the task types compute them, and for accuracy the
    error: 1 where the predicted class index is not the outcome's)."""
    if metric not in LOSS_OF_METRIC:
        raise ValueError(f"{metric!r} is not a mean of per-row losses; supported: {sorted(LOSS_OF_METRIC)} "
                         "(roc_auc is a statistic of pairs of rows, see the module docstring)")
    return per_row_losses(metric, truth, predictions, "predictions")


@lru_cache(maxsize=64)
def mixing_rows(alpha: float, tuned_rows: int = DEFAULT_TUNED_ROWS) -> float:
    """The mixture's ``n0`` that makes the two-sided boundary narrowest at ``tuned_rows`` rows.

    With ``r = n0 / n`` the half width is proportional to ``sqrt((1 + r) * log((1 + r) / (r * alpha²)))``;
    its minimum solves ``log((1 + r) / (r * alpha²)) = 1 / r``.
    """
    _check_alpha(alpha)
    if tuned_rows < 1:
        raise ValueError(f"tuned_rows must be at least 1, got {tuned_rows}")
    ratio = optimize.brentq(lambda r: math.log((1 + r) / (r * alpha ** 2)) - 1 / r, 1e-9, 1e3)
    return ratio * tuned_rows


def half_width(rows, variance, alpha: float, n0: float):
    """The boundary's half width at ``rows`` rows for per-row ``variance`` (numpy-vectorised over both):
    ``sqrt(variance * (rows + n0) * log((rows + n0) / (n0 * alpha²))) / rows``."""
    rows = np.asarray(rows, dtype=float)
    total = rows + n0
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.sqrt(np.asarray(variance, dtype=float) * total * np.log(total / (n0 * alpha ** 2))) / rows
    return np.where(rows > 0, width, np.inf)


@dataclass(frozen=True)
class SequentialResult:
    """Where a challenger stands after the rows fed so far.

    ``mean_difference``: mean of champion loss minus challenger loss (positive: the challenger is better);
    ``interval``: the level ``1 - alpha`` confidence sequence's current interval of it; ``decision``:
    promote, retire or continue (see the module docstring); ``rows_needed``: the labelled rows still needed
    for a true difference ``effect`` to reach a decision (``rows_needed_total`` counted from the first
    row), None when it cannot be said (no effect declared, effect equal to the threshold, no variance yet).
    """

    feed: Feed
    metric: str
    rows: int
    mean_difference: float
    standard_deviation: float
    interval: tuple[float, float]
    decision: Decision
    threshold: float
    alpha: float
    min_rows: int
    effect: float | None
    power: float
    rows_needed: int | None
    rows_needed_total: int | None

    def summary(self) -> str:
        lower, upper = self.interval
        text = (f"{self.metric} ({self.feed}): {self.rows} labelled requests, challenger improvement "
                f"{self.mean_difference:+.4g} (anytime {1 - self.alpha:.0%} interval {lower:+.4g} to "
                f"{upper:+.4g}, threshold {self.threshold:+.4g}): {self.decision}")
        if self.decision == "continue" and self.rows < self.min_rows:
            text += f" (no decision before {self.min_rows} requests)"
        if self.decision == "continue" and self.rows_needed is not None:
            text += f"; a true improvement of {self.effect:+.4g} needs about {self.rows_needed} more rows"
        return text

    def to_dict(self) -> dict:
        data = asdict(self)
        data["interval"] = list(self.interval)
        return data


@dataclass
class SequentialState:
    """The running comparison of one challenger with the champion on one metric: row count, mean and sum
    of squared deviations of the per-row differences (merged cohort by cohort, Chan et al.'s parallel
    update, so a cohort of any size costs one pass), and the settings it was opened with. Serialise it
    with :meth:`to_dict` / :meth:`to_json` between monitoring windows and restore it with
    :meth:`from_dict` / :meth:`from_json`.
    """

    feed: Feed
    metric: str
    alpha: float = 0.05
    framing: Framing = "superiority"
    margin: float = 0.0
    min_rows: int = DEFAULT_MIN_ROWS
    tuned_rows: int = DEFAULT_TUNED_ROWS
    rows: int = 0
    mean: float = 0.0
    sum_squares: float = 0.0  # sum of squared deviations from the mean
    cohorts: int = 0

    def __post_init__(self) -> None:
        if self.feed not in ("shadow", "canary"):
            raise ValueError(f"feed must be 'shadow' or 'canary', not {self.feed!r}")
        if self.metric not in LOSS_OF_METRIC:
            raise ValueError(f"{self.metric!r} is not a mean of per-row losses; supported: "
                             f"{sorted(LOSS_OF_METRIC)} (roc_auc is a statistic of pairs of rows)")
        if self.framing not in ("superiority", "non_inferiority"):
            raise ValueError(f"framing must be 'superiority' or 'non_inferiority', not {self.framing!r}")
        _check_alpha(self.alpha)
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"margin must be a finite number >= 0, got {self.margin}")
        if self.min_rows < 2:
            raise ValueError(f"min_rows must be at least 2 (a variance needs two rows), got {self.min_rows}")
        if self.tuned_rows < 1:
            raise ValueError(f"tuned_rows must be at least 1, got {self.tuned_rows}")

    @property
    def threshold(self) -> float:
        return decision_threshold(self.framing, self.margin)

    @property
    def variance(self) -> float:
        return self.sum_squares / (self.rows - 1) if self.rows > 1 else math.nan

    # ---- feeding ---------------------------------------------------------------------------------------
    def update_shadow(self, champion_losses, challenger_losses) -> SequentialState:
        """Add a cohort of paired rows: both models' per-row losses on the same matured rows."""
        difference = shadow_differences(champion_losses, challenger_losses)
        self._require("shadow")
        return self._merge(difference)

    def update_canary(self, losses, served_by_challenger, challenger_share) -> SequentialState:
        """Add a cohort of canary rows: the served model's loss per row, whether the challenger served it,
        and the probability it had of doing so (the canary share; one number, or one per row)."""
        difference = canary_differences(losses, served_by_challenger, challenger_share)
        self._require("canary")
        return self._merge(difference)

    def _require(self, feed: str) -> None:
        if self.feed != feed:
            raise ValueError(f"this state is fed by {self.feed}, not {feed}")

    def _merge(self, difference: np.ndarray) -> SequentialState:
        return self.add_summary(*cohort_summary(difference))

    def add_summary(self, rows: int, mean: float, sum_squares: float) -> SequentialState:
        """Add a cohort given by its summary (:func:`cohort_summary` of its per-row differences): how a state
        is rebuilt from cohorts stored apart, so a cohort recomputed (late labels, a re-run window) replaces
        its old summary instead of being counted twice."""
        count = int(rows)
        if count < 0 or sum_squares < 0 or not math.isfinite(mean):
            raise ValueError(f"a cohort of {rows} rows, mean {mean} and sum of squares {sum_squares} is corrupt")
        if count == 0:
            return self
        mean, squares = float(mean), float(sum_squares)
        total = self.rows + count
        delta = mean - self.mean
        self.sum_squares += squares + delta ** 2 * self.rows * count / total
        self.mean += delta * count / total
        self.rows = total
        self.cohorts += 1
        return self

    # ---- reading ---------------------------------------------------------------------------------------
    def interval(self) -> tuple[float, float]:
        """The confidence sequence's current interval of the mean difference (infinite before two rows)."""
        if self.rows < 2:
            return (-math.inf, math.inf)
        width = float(half_width(self.rows, self.variance, self.alpha, mixing_rows(self.alpha, self.tuned_rows)))
        return (self.mean - width, self.mean + width)

    def decision(self) -> Decision:
        if self.rows < self.min_rows:
            return "continue"
        lower, upper = self.interval()
        if lower > self.threshold:
            return "promote"
        if upper < self.threshold:
            return "retire"
        return "continue"

    def rows_to_decide(self, effect: float | None, power: float = 0.8) -> int | None:
        """Total rows at which a true improvement ``effect`` reaches a decision (see the module docstring),
        from the variance observed so far; None when it cannot be said."""
        if not 0 < power < 1:
            raise ValueError(f"power must be in (0, 1), got {power}")
        variance = self.variance
        if effect is None or not math.isfinite(effect) or effect == self.threshold or not variance > 0:
            return None
        gap, n0, z = abs(effect - self.threshold), mixing_rows(self.alpha, self.tuned_rows), stats.norm.ppf(power)
        sd = math.sqrt(variance)

        def short(rows: float) -> float:  # > 0 while the gap is not yet cleared at this many rows
            return float(half_width(rows, variance, self.alpha, n0)) + z * sd / math.sqrt(rows) - gap

        high = 2.0
        while short(high) > 0:
            high *= 2
            if high > 1e15:
                return None
        low = high / 2
        if short(low) <= 0:  # cleared at the smallest size tried
            return max(self.min_rows, math.ceil(low))
        return max(self.min_rows, math.ceil(optimize.brentq(short, low, high, xtol=0.5)))

    def result(self, effect: float | None = None, power: float = 0.8) -> SequentialResult:
        total = self.rows_to_decide(effect, power)
        return SequentialResult(
            feed=self.feed, metric=self.metric, rows=self.rows, mean_difference=float(self.mean),
            standard_deviation=float(math.sqrt(self.variance)) if self.rows > 1 else math.nan,
            interval=self.interval(), decision=self.decision(), threshold=self.threshold, alpha=self.alpha,
            min_rows=self.min_rows, effect=effect, power=power,
            rows_needed=None if total is None else max(total - self.rows, 0), rows_needed_total=total)

    # ---- persistence -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"version": STATE_VERSION} | asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SequentialState:
        data = dict(data)
        version = data.pop("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise ValueError(f"sequential state version {version} is not {STATE_VERSION}")
        state = cls(**data)
        if state.rows < 0 or state.sum_squares < 0 or not math.isfinite(state.mean):
            raise ValueError(f"a sequential state with {state.rows} rows, mean {state.mean} and sum of squares "
                             f"{state.sum_squares} is corrupt")
        return state

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SequentialState:
        return cls.from_dict(json.loads(text))


def cohort_summary(difference) -> tuple[int, float, float]:
    """Rows, mean and sum of squared deviations of a cohort's per-row differences."""
    values = _losses(difference, "difference")
    if values.size == 0:
        return 0, 0.0, 0.0
    mean = float(values.mean())
    return int(values.size), mean, float(((values - mean) ** 2).sum())


def unit_means(differences, units) -> np.ndarray:
    """The mean of the per-row ``differences`` of each unit (``units[i]`` labels row ``i``'s unit, e.g. its
    request id), in the order the units first appear: one value per unit, so rows that share an assignment
    or a context count once. A unit of one row keeps its row's value."""
    values = _losses(differences, "differences")
    labels = np.asarray(units)
    if labels.shape != values.shape:
        raise ValueError(f"units must be one label per row ({values.size}), got shape {labels.shape}")
    if values.size == 0:
        return values
    _, first, index = np.unique(labels, return_index=True, return_inverse=True)
    means = np.bincount(index, weights=values) / np.bincount(index)
    return means[np.argsort(first, kind="stable")]


def shadow_differences(champion_losses, challenger_losses) -> np.ndarray:
    """Per-row ``champion loss - challenger loss`` of paired (shadow) rows."""
    champion, challenger = _losses(champion_losses, "champion_losses"), _losses(challenger_losses, "challenger_losses")
    if champion.shape != challenger.shape:
        raise ValueError(f"shadow rows are paired: {champion.size} champion losses against "
                         f"{challenger.size} challenger losses")
    return champion - challenger


def canary_differences(losses, served_by_challenger, challenger_share) -> np.ndarray:
    """Per-row inverse-propensity-weighted differences of canary rows (see the module docstring)."""
    loss = _losses(losses, "losses")
    served = np.asarray(served_by_challenger)
    if served.shape != loss.shape:
        raise ValueError(f"served_by_challenger must be one flag per row ({loss.size}), got {served.shape}")
    if served.dtype != bool:
        if not np.isin(served, [0, 1]).all():
            raise ValueError("served_by_challenger must be bool or 0/1")
        served = served.astype(bool)
    share = np.broadcast_to(np.asarray(challenger_share, dtype=float), loss.shape)
    if not ((share > 0) & (share < 1)).all():
        raise ValueError("challenger_share must be strictly between 0 and 1 (both models must be able to "
                         "serve a row for the weighted difference to be unbiased)")
    return np.where(served, -loss / share, loss / (1 - share))


def _losses(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one loss per row, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has {int((~np.isfinite(array)).sum())} missing or infinite values")
    return array


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
