"""The gate: may a candidate replace the champion? A pure decision with every reason spelled out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from pipelines.config import GatePolicy


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


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: list[Reason]

    @property
    def verdict(self) -> str:
        return "approved" if self.promote else "rejected"

    @property
    def failed(self) -> list[Reason]:
        return [r for r in self.reasons if not r.passed]

    def summary(self) -> str:
        if self.promote:
            return f"approved: all {len(self.reasons)} checks passed"
        return "rejected: " + self.failed_checks()

    def failed_checks(self) -> str:
        """What each failed check found, on one line."""
        return "; ".join(r.message for r in self.failed)

    def to_dict(self) -> dict:
        return {"promote": self.promote, "verdict": self.verdict, "summary": self.summary(),
                "reasons": [asdict(r) for r in self.reasons]}


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


def decide_promotion(
    candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy,
    higher_is_better: Mapping[str, bool], champion_error: str | None = None,
) -> PromotionDecision:
    """Floors, ceilings, a margin over the champion on the same holdout, and per-slice bounds.

    ``policy`` has its defaults filled in (``ModelConfig.gate_policy``); ``higher_is_better`` is the task
    type's metric directions, so a margin on a lower-is-better metric (RMSE, log loss) asks the candidate to
    be *lower* by at least ``min_margin``. Every check is evaluated (no short-circuit) so the operator sees
    all reasons at once. A champion that exists but could not be scored (``champion_error``) fails the
    comparison: "cannot compare" is never read as "no champion".
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
        ours, theirs = candidate.metrics.get(metric), champion.metrics.get(metric)
        sign = 1 if higher_is_better[metric] else -1
        gain = sign * (ours - theirs) if ours is not None and theirs is not None else float("nan")
        passed = not math.isnan(gain) and gain >= policy.min_margin
        direction = "higher" if sign > 0 else "lower"
        reasons.append(Reason(
            f"margin:{metric}", passed, None if math.isnan(gain) else gain, f">= {policy.min_margin:+.4f}",
            f"{metric} {_fmt(ours)} vs champion v{champion.model_version} {_fmt(theirs)} on the same holdout: "
            f"{gain:+.4f} better ({direction} is better) {'meets' if passed else 'misses'} margin "
            f"{policy.min_margin:+.4f}",
        ))

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
    return PromotionDecision(promote=all(r.passed for r in reasons), reasons=reasons)
