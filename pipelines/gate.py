"""The gate: may a candidate replace the champion? A pure decision with every reason spelled out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from pipelines.config import GatePolicy

if TYPE_CHECKING:
    from pipelines.holdout_pairs import HoldoutPairs
    from pipelines.paired_tests import PairedComparison


@dataclass(frozen=True)
class EvaluationReport:
    """Holdout metrics of one model, overall and per slice (rows of column, value, metric...)."""

    metrics: dict[str, float]
    slices: list[dict] = field(default_factory=list)
    model_version: str | None = None
    data_hash: str | None = None          # DVC hash of the snapshot the model was trained on
    holdout_start: str | None = None      # ISO time: the model saw (trained or selected on) nothing later

    def slice_rows(self, column: str) -> list[dict]:
        return [row for row in self.slices if row["column"] == column]

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationReport:
        return cls(metrics=data["metrics"], slices=data.get("slices", []), model_version=data.get("model_version"),
                   data_hash=data.get("data_hash"), holdout_start=data.get("holdout_start"))


@dataclass(frozen=True)
class Reason:
    check: str
    passed: bool
    observed: float | None
    required: str
    message: str
    # A comparison with the champion: the paired test behind it (difference, interval, p-value, rows needed)
    # and what it decided, in words ("better with 95% confidence", "holdout too small to decide").
    comparison: PairedComparison | None = None
    decision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["comparison"] = self.comparison.to_dict() if self.comparison else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reason:
        """A reason as ``to_dict`` wrote it (``gate/decision.json``); a record without a comparison reads too."""
        comparison = data.get("comparison")
        if comparison:
            from pipelines.paired_tests import PairedComparison

            known = {f.name for f in fields(PairedComparison)}
            comparison = PairedComparison(**{
                **{k: v for k, v in comparison.items() if k in known},
                "interval": tuple(comparison["interval"]), "notes": tuple(comparison.get("notes", ()))})
        return cls(str(data["check"]), bool(data["passed"]), data.get("observed"), str(data.get("required", "")),
                   str(data.get("message", "")), comparison or None, data.get("decision"))


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: list[Reason]
    attempt: int | None = None  # this gate decision's number on the same holdout (None: not counted)

    @property
    def verdict(self) -> str:
        return "approved" if self.promote else "rejected"

    @property
    def failed(self) -> list[Reason]:
        return [r for r in self.reasons if not r.passed]

    def summary(self) -> str:
        if self.promote:
            tested = [r.message for r in self.reasons if r.comparison is not None]
            return f"approved: all {len(self.reasons)} checks passed" + (f" ({'; '.join(tested)})" if tested else "")
        return "rejected: " + self.failed_checks()

    def failed_checks(self) -> str:
        """What each failed check found, on one line."""
        return "; ".join(r.message for r in self.failed)

    def to_dict(self) -> dict:
        return {"promote": self.promote, "verdict": self.verdict, "summary": self.summary(),
                "reasons": [r.to_dict() for r in self.reasons], "attempt": self.attempt}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _at_least(check: str, observed: float | None, floor: float, what: str) -> Reason:
    passed = observed is not None and not math.isnan(observed) and observed >= floor
    verb = "meets" if passed else "is below"
    return Reason(check, passed, observed, f">= {floor:.4f}", f"{what} {_fmt(observed)} {verb} floor {floor:.4f}")


def _at_most(check: str, observed: float | None, ceiling: float, what: str) -> Reason:
    passed = observed is not None and not math.isnan(observed) and observed <= ceiling
    verb = "within" if passed else "above"
    return Reason(check, passed, observed, f"<= {ceiling:.4f}", f"{what} {_fmt(observed)} {verb} ceiling {ceiling:.4f}")


# The true difference the primary superiority test is sized for, on top of the margin, when ``min_effect`` is
# not set: 0.01 on a metric bounded by 0 and 1, 2% of the champion's value on a loss (its scale is the data's).
BOUNDED_EFFECT = 0.01
RELATIVE_EFFECT = 0.02
BOUNDED_METRICS = frozenset({"roc_auc", "pr_auc", "f1", "macro_f1", "accuracy", "r2"})


def primary_effect(policy: GatePolicy, champion_value: float | None) -> float | None:
    """The true difference (the metric's better direction) the primary test's rows-needed figure is sized for:
    ``min_effect``, else 0 for non-inferiority (an equal candidate), else the margin plus 0.01 on a bounded
    metric or plus 2% of the champion's value on a loss (None when that value is unknown or 0)."""
    if policy.min_effect is not None:
        return policy.min_effect
    if policy.framing == "non_inferiority":
        return 0.0
    if policy.margin_metric in BOUNDED_METRICS:
        return policy.min_margin + BOUNDED_EFFECT
    if champion_value is None or not math.isfinite(champion_value) or champion_value == 0:
        return None
    return policy.min_margin + RELATIVE_EFFECT * abs(champion_value)


def _confidence(alpha: float) -> str:
    return f"{(1 - alpha) * 100:.4g}%"


def _claim(framing: str, margin: float, versus: str = "") -> str:
    """What a test shows when it passes: "better [than <versus>] [by more than <margin>]", or "not worse ..."."""
    than = f" than {versus}" if versus else ""
    if framing == "non_inferiority":
        return f"not worse{than} by more than {margin:.4g}"
    return f"better{than}" + (f" by more than {margin:.4g}" if margin else "")


def _tested(check: str, result: PairedComparison, required: str, what: str | None = None,
            rows_of: str = "holdout") -> Reason:
    """A paired test's outcome as a reason: difference, interval, p-value, decision and the rows the declared
    effect needs, on one line (``what``: what was compared, default the metric; ``rows_of``: whose rows were
    too few, the holdout's or a slice's)."""
    claim, confidence = _claim(result.framing, result.margin), _confidence(result.alpha)
    lower, upper = result.interval
    needed, size = result.rows_needed, ""
    if result.passed:
        verdict = f"{claim} with {confidence} confidence"
    elif result.framing == "superiority":
        verdict = f"not {claim} with {confidence} confidence"
    else:
        verdict = f"may be worse by more than {result.margin:.4g} ({confidence} confidence not reached)"
    decision = verdict
    if not result.passed and needed is not None:
        if result.rows < needed:
            decision = f"{rows_of} too small to decide"
            size = f"; {decision}: {result.rows:,} rows, ~{needed:,} would show {result.effect:+.4g}"
        else:
            size = f"; {result.rows:,} rows were enough to show {result.effect:+.4g} (~{needed:,} needed)"
    message = (f"{what or result.metric}: {result.difference:+.4f} [{lower:+.4f}, {upper:+.4f}], "
               f"p={result.p_value:.2g}: {verdict}{size}")
    return Reason(check, result.passed, result.difference, required, message, result, decision)


@dataclass(frozen=True)
class _SliceTest:
    """One gated slice compared with the champion: ``key`` (``column=value:metric``) names it in the alpha split."""

    column: str
    value: str
    metric: str
    margin: float

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"

    @property
    def key(self) -> str:
        return f"{self.name}:{self.metric}"


SLICE_CHECK = "slice_guardrail"


def _slice_tests(candidate: EvaluationReport, policy: GatePolicy) -> list[_SliceTest | Reason]:
    """The slices to compare with the champion (``slice_floors`` with a margin, on the slices of the candidate's
    report with at least ``min_rows`` rows), in order; a slice too small to test is a passing reason that says
    so, as its floor is not gated either. A slice missing from the holdout fails its floor already."""
    entries: list[_SliceTest | Reason] = []
    seen: set[str] = set()
    for rule in policy.slice_floors:
        if rule.margin is None:
            continue
        metric = rule.metric or policy.margin_metric
        for row in candidate.slice_rows(rule.column):
            if rule.value is not None and row["value"] != rule.value:
                continue
            test = _SliceTest(rule.column, str(row["value"]), metric, rule.margin)
            if test.key in seen:
                continue
            seen.add(test.key)
            if row["rows"] < rule.min_rows:
                entries.append(Reason(
                    f"{SLICE_CHECK}:{test.key}", True, None, f"at least {rule.min_rows} rows to compare",
                    f"slice {test.name} has {int(row['rows'])} rows < {rule.min_rows}: too small to compare its "
                    f"{metric} with the champion, not tested", decision="slice too small: not tested"))
            else:
                entries.append(test)
    return entries


def _paired_reasons(candidate: EvaluationReport, champion: EvaluationReport, policy: GatePolicy,
                    higher_is_better: Mapping[str, bool], pairs: HoldoutPairs | None) -> list[Reason]:
    """The primary metric's test (``framing`` by ``min_margin``), each guardrail's non-inferiority test, and each
    gated slice's (``SliceFloor.margin``) on the slice's rows, at the levels ``split_alpha`` gives them: the
    guardrails and the slices share the guardrails' alpha."""
    from pipelines.paired_tests import split_alpha

    metric = policy.margin_metric
    guardrails = sorted(policy.guardrails)
    slices = _slice_tests(candidate, policy)
    tested = [entry for entry in slices if isinstance(entry, _SliceTest)]
    shared = guardrails + [test.key for test in tested]
    split = split_alpha(metric, shared, policy.alpha)
    kinds = f" ({len(guardrails)} on metrics, {len(tested)} on slices)" if guardrails and tested else ""
    levels = f"{metric} at alpha {split.primary_alpha:.3g}" + (
        f"; {len(shared)} guardrails{kinds} at {split.guardrails[shared[0]]:.3g} each (Bonferroni)"
        if len(shared) > 1 else f"; guardrail {shared[0]} at {split.guardrails[shared[0]]:.3g}" if shared else "")
    versus = f"champion v{champion.model_version}"
    # check, alpha key, metric, what is compared, framing, margin, effect, the slice (None: the whole holdout)
    checks: list = [(f"margin:{metric}", metric, metric, metric, policy.framing, policy.min_margin,
                     primary_effect(policy, champion.metrics.get(metric)), None)]
    checks += [(f"guardrail:{name}", name, name, name, "non_inferiority", policy.guardrails[name], 0.0, None)
               for name in guardrails]
    checks += [entry if isinstance(entry, Reason) else
               (f"{SLICE_CHECK}:{entry.key}", entry.key, entry.metric, f"slice {entry.name} {entry.metric}",
                "non_inferiority", entry.margin, 0.0, entry) for entry in slices]
    reasons = []
    for check in checks:
        if isinstance(check, Reason):  # a slice too small to test
            reasons.append(check)
            continue
        check, key, name, what, framing, margin, effect, where = check
        alpha = split.alpha_of(key)
        against = f"{versus} on slice {where.name}" if where else versus
        required = f"{_claim(framing, margin, against)} with {_confidence(alpha)} confidence ({levels})"
        if pairs is None:
            ours, theirs = ((candidate.metrics.get(name), champion.metrics.get(name)) if where is None else
                            (_slice_value(candidate, where), _slice_value(champion, where)))
            direction = "higher" if higher_is_better.get(name, True) else "lower"
            reasons.append(Reason(check, False, None, required,
                                  f"{what} {_fmt(ours)} vs {versus} {_fmt(theirs)} "
                                  f"({direction} is better): no per-row predictions of both models on the holdout, "
                                  "so the difference cannot be tested", decision="not tested"))
            continue
        try:
            rows = pairs if where is None else pairs.where(where.column, where.value)
            result = rows.compare(name, framing=framing, margin=margin, alpha=alpha, effect=effect,
                                  power=policy.power)
        except ValueError as exc:
            reasons.append(Reason(check, False, None, required, f"{what}: cannot be tested on the paired rows: {exc}",
                                  decision="not tested"))
            continue
        reasons.append(_tested(check, result, required, what if where else None,
                               "holdout" if where is None else "slice"))
    return reasons


def _slice_value(report: EvaluationReport, test: _SliceTest) -> float | None:
    return next((row.get(test.metric) for row in report.slice_rows(test.column) if row["value"] == test.value), None)


def decide_promotion(
    candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy,
    higher_is_better: Mapping[str, bool], champion_error: str | None = None, pairs: HoldoutPairs | None = None,
    attempt: int | None = None,
) -> PromotionDecision:
    """Floors, ceilings and per-slice bounds on the candidate; with a champion, paired tests on the same holdout.

    ``policy`` has its defaults filled in (``ModelConfig.gate_policy``); ``higher_is_better`` is the task
    type's metric directions. With a champion, ``pairs`` (both models' per-row predictions on the holdout)
    decide: the primary metric (``margin_metric``) must pass its paired test by ``framing`` and ``min_margin``,
    each guardrail a non-inferiority test by its margin, and so must each gated slice with a margin
    (``SliceFloor.margin``) on the slice's rows; the primary is tested at ``alpha``, the guardrails and slices
    at ``alpha`` split between them (``paired_tests.split_alpha``). Without ``pairs`` the comparison fails: a
    difference of point estimates is not evidence. ``attempt`` is this decision's number on the same holdout;
    past ``max_attempts_per_holdout`` the gate refuses. Every check is evaluated (no short-circuit) so the
    operator sees all reasons at once. A champion that exists but could not be scored (``champion_error``)
    fails the comparison: "cannot compare" is never read as "no champion".
    """
    reasons: list[Reason] = []
    for metric, floor in sorted((policy.floors or {}).items()):
        reasons.append(_at_least(f"floor:{metric}", candidate.metrics.get(metric), floor, metric))
    for metric, ceiling in sorted(policy.ceilings.items()):
        reasons.append(_at_most(f"ceiling:{metric}", candidate.metrics.get(metric), ceiling, metric))

    metric = policy.margin_metric
    if champion_error:
        reasons.append(Reason(f"margin:{metric}", False, None, "a comparable champion",
                              f"the current champion could not be compared: {champion_error}"))
    elif champion is None:
        reasons.append(Reason(f"margin:{metric}", True, None, "no champion",
                              "no current champion: the first model that passes the floors becomes champion"))
    else:
        reasons += _paired_reasons(candidate, champion, policy, higher_is_better, pairs)
        if attempt is not None:
            cap = policy.max_attempts_per_holdout
            within = attempt <= cap
            reasons.append(Reason(
                "holdout_reuse", within, float(attempt), f"<= {cap} gate attempts on one holdout",
                f"attempt {attempt} of at most {cap} on this holdout" if within else
                f"attempt {attempt} on this holdout, past the cap of {cap}: every look at the same rows adds a "
                "chance to promote on noise; train on a later interval for a fresh holdout"))

    if champion is not None and candidate.data_hash and candidate.data_hash == champion.data_hash:
        reasons.append(Reason("new_data", False, None, "a snapshot the champion was not trained on",
                              f"candidate was trained on the champion's own snapshot {champion.data_hash}: "
                              "nothing new to learn, the champion stays"))
    if champion is not None and candidate.holdout_start and champion.holdout_start \
            and candidate.holdout_start < champion.holdout_start:
        reasons.append(Reason("fair_holdout", False, None, f"holdout from {champion.holdout_start} on",
                              f"the holdout starts {candidate.holdout_start}, before the champion "
                              f"v{champion.model_version} stopped seeing data ({champion.holdout_start}): "
                              "the comparison would favour the champion; train on a later interval"))

    for rule in policy.slice_floors:
        bound = rule.floor if rule.floor is not None else rule.ceiling
        rows = [r for r in candidate.slice_rows(rule.column) if rule.value is None or r["value"] == rule.value]
        if not rows:
            reasons.append(Reason(f"slice:{rule.column}", False, None, f"{bound:.4f}",
                                  f"slice {rule.column}={rule.value or '*'} has no rows in the holdout"))
        for row in rows:
            name = f"{rule.column}={row['value']}"
            if row["rows"] < rule.min_rows:
                reasons.append(Reason(f"slice:{name}:{rule.metric}", True, row.get(rule.metric), "not gated",
                                      f"slice {name} has {int(row['rows'])} rows < {rule.min_rows}: not gated"))
                continue
            check, what = f"slice:{name}:{rule.metric}", f"slice {name} {rule.metric}"
            reasons.append(_at_least(check, row.get(rule.metric), rule.floor, what) if rule.floor is not None
                           else _at_most(check, row.get(rule.metric), rule.ceiling, what))
    return PromotionDecision(promote=all(r.passed for r in reasons), reasons=reasons, attempt=attempt)
