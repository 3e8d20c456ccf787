"""The gate: may a candidate replace the champion? A pure decision with every reason spelled out."""

from __future__ import annotations

import math
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
        return "rejected: " + "; ".join(r.message for r in self.failed)

    def to_dict(self) -> dict:
        return {"promote": self.promote, "verdict": self.verdict, "summary": self.summary(),
                "reasons": [asdict(r) for r in self.reasons]}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _at_least(check: str, observed: float | None, floor: float, what: str) -> Reason:
    passed = observed is not None and not math.isnan(observed) and observed >= floor
    verb = "meets" if passed else "is below"
    return Reason(check, passed, observed, f">= {floor:.4f}", f"{what} {_fmt(observed)} {verb} floor {floor:.4f}")


def decide_promotion(
    candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy,
    champion_error: str | None = None,
) -> PromotionDecision:
    """Floors, ceilings, a margin over the champion on the same holdout, and per-slice floors.

    Every check is evaluated (no short-circuit) so the operator sees all reasons at once. A champion that
    exists but could not be scored (``champion_error``) fails the comparison: "cannot compare" is never
    read as "no champion".
    """
    reasons: list[Reason] = []
    for metric, floor in sorted(policy.floors.items()):
        reasons.append(_at_least(f"floor:{metric}", candidate.metrics.get(metric), floor, metric))
    for metric, ceiling in sorted(policy.ceilings.items()):
        observed = candidate.metrics.get(metric)
        passed = observed is not None and not math.isnan(observed) and observed <= ceiling
        verb = "within" if passed else "above"
        reasons.append(Reason(f"ceiling:{metric}", passed, observed, f"<= {ceiling:.4f}",
                              f"{metric} {_fmt(observed)} {verb} ceiling {ceiling:.4f}"))

    metric = policy.margin_metric
    if champion_error:
        reasons.append(Reason(f"margin:{metric}", False, None, "a comparable champion",
                              f"the current champion could not be compared: {champion_error}"))
    elif champion is None:
        reasons.append(Reason(f"margin:{metric}", True, None, "no champion",
                              "no current champion: the first model that passes the floors becomes champion"))
    else:
        ours, theirs = candidate.metrics.get(metric), champion.metrics.get(metric)
        delta = ours - theirs if ours is not None and theirs is not None else float("nan")
        passed = not math.isnan(delta) and delta >= policy.min_margin
        reasons.append(Reason(
            f"margin:{metric}", passed, None if math.isnan(delta) else delta, f">= {policy.min_margin:+.4f}",
            f"{metric} {_fmt(ours)} vs champion v{champion.model_version} {_fmt(theirs)} on the same holdout: "
            f"{delta:+.4f} {'meets' if passed else 'misses'} margin {policy.min_margin:+.4f}",
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
        rows = [r for r in candidate.slice_rows(rule.column) if rule.value is None or r["value"] == rule.value]
        if not rows:
            reasons.append(Reason(f"slice:{rule.column}", False, None, f">= {rule.floor:.4f}",
                                  f"slice {rule.column}={rule.value or '*'} has no rows in the holdout"))
        for row in rows:
            name = f"{rule.column}={row['value']}"
            if row["rows"] < rule.min_rows:
                reasons.append(Reason(f"slice:{name}:{rule.metric}", True, row.get(rule.metric), "not gated",
                                      f"slice {name} has {int(row['rows'])} rows < {rule.min_rows}: not gated"))
                continue
            reasons.append(_at_least(f"slice:{name}:{rule.metric}", row.get(rule.metric), rule.floor,
                                     f"slice {name} {rule.metric}"))
    return PromotionDecision(promote=all(r.passed for r in reasons), reasons=reasons)
