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


def _tested(check: str, result: PairedComparison, required: str) -> Reason:
    """A paired test's outcome as a reason: difference, interval, p-value, decision and the rows the declared
    effect needs, on one line."""
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
            decision = "holdout too small to decide"
            size = f"; holdout too small to decide: {result.rows:,} rows, ~{needed:,} would show {result.effect:+.4g}"
        else:
            size = f"; {result.rows:,} rows were enough to show {result.effect:+.4g} (~{needed:,} needed)"
    message = (f"{result.metric}: {result.difference:+.4f} [{lower:+.4f}, {upper:+.4f}], "
               f"p={result.p_value:.2g}: {verdict}{size}")
    return Reason(check, result.passed, result.difference, required, message, result, decision)


def _paired_reasons(candidate: EvaluationReport, champion: EvaluationReport, policy: GatePolicy,
                    higher_is_better: Mapping[str, bool], pairs: HoldoutPairs | None) -> list[Reason]:
    """The primary metric's test (``framing`` by ``min_margin``) and each guardrail's non-inferiority test, at
    the levels ``split_alpha`` gives them."""
    from pipelines.paired_tests import split_alpha

    metric = policy.margin_metric
    guardrails = sorted(policy.guardrails)
    split = split_alpha(metric, guardrails, policy.alpha)
    levels = f"{metric} at alpha {split.primary_alpha:.3g}" + (
        f"; {len(guardrails)} guardrails at {split.guardrails[guardrails[0]]:.3g} each (Bonferroni)"
        if len(guardrails) > 1 else f"; guardrail {guardrails[0]} at {split.guardrails[guardrails[0]]:.3g}"
        if guardrails else "")
    checks = [(f"margin:{metric}", metric, policy.framing, policy.min_margin,
               primary_effect(policy, champion.metrics.get(metric)))]
    checks += [(f"guardrail:{name}", name, "non_inferiority", policy.guardrails[name], 0.0) for name in guardrails]
    reasons = []
    for check, name, framing, margin, effect in checks:
        alpha = split.alpha_of(name)
        required = (f"{_claim(framing, margin, f'champion v{champion.model_version}')} with "
                    f"{_confidence(alpha)} confidence ({levels})")
        if pairs is None:
            ours, theirs = candidate.metrics.get(name), champion.metrics.get(name)
            direction = "higher" if higher_is_better.get(name, True) else "lower"
            reasons.append(Reason(check, False, None, required,
                                  f"{name} {_fmt(ours)} vs champion v{champion.model_version} {_fmt(theirs)} "
                                  f"({direction} is better): no per-row predictions of both models on the holdout, "
                                  "so the difference cannot be tested", decision="not tested"))
            continue
        try:
            result = pairs.compare(name, framing=framing, margin=margin, alpha=alpha, effect=effect,
                                   power=policy.power)
        except ValueError as exc:
            reasons.append(Reason(check, False, None, required, f"{name}: cannot be tested on the paired rows: {exc}",
                                  decision="not tested"))
            continue
        reasons.append(_tested(check, result, required))
    return reasons


def decide_promotion(
    candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy,
    higher_is_better: Mapping[str, bool], champion_error: str | None = None, pairs: HoldoutPairs | None = None,
    attempt: int | None = None,
) -> PromotionDecision:
    """Floors, ceilings and per-slice bounds on the candidate; with a champion, paired tests on the same holdout.

    ``policy`` has its defaults filled in (``ModelConfig.gate_policy``); ``higher_is_better`` is the task
    type's metric directions. With a champion, ``pairs`` (both models' per-row predictions on the holdout)
    decide: the primary metric (``margin_metric``) must pass its paired test by ``framing`` and ``min_margin``,
    each guardrail a non-inferiority test by its margin; the primary is tested at ``alpha``, the guardrails at
    ``alpha`` split between them (``paired_tests.split_alpha``). Without ``pairs`` the comparison fails: a
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
