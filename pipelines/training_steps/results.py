"""What the training steps hand each other: small typed records of references (paths, run ids, model URIs,
digests) and small metric dicts.

An in-process run passes them as they are; the DAG passes them through XCom as ``to_dict()``, which is
JSON-able, and rebuilds them with ``from_dict``. ``cache`` carries the step cache's notes (step -> the
``CacheNote`` as a dict) until the parent MLflow run records them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from pipelines.gate import EvaluationReport

SPLIT_PARTS = ("train", "validation", "holdout")

CacheNotes = dict[str, dict[str, str]]


class StepResult:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Ingested(StepResult):
    """The interval's examples, ingested into ``incoming`` (not yet validated)."""

    interval: str
    incoming: str
    examples: int
    feeds: dict[str, dict[str, int]]
    cache: CacheNotes = field(default_factory=dict)


@dataclass(frozen=True)
class Validated(StepResult):
    """The batch, validated and added to the store, and its report."""

    examples: str
    report: str
    evaluated: int
    cache: CacheNotes = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot(StepResult):
    """The training snapshot as DVC versions it (``versioning.DataVersion``) and its local copy."""

    path: str
    md5: str
    rev: str
    remote_url: str
    rows: int
    local_path: str
    cache: CacheNotes = field(default_factory=dict)


@dataclass(frozen=True)
class Splits(StepResult):
    """The snapshot's train, validation and holdout files with their digests, and the parent MLflow run the
    candidates log under, with its lineage tags."""

    train: str
    validation: str
    holdout: str
    digests: dict[str, str]
    holdout_start: str | None
    split_method: str
    parent_run_id: str
    experiment_id: str
    lineage: dict[str, str]
    cache: CacheNotes = field(default_factory=dict)

    def path(self, part: str) -> Path:
        return Path(getattr(self, part))


@dataclass(frozen=True)
class Candidate(StepResult):
    """One trained candidate: its child run and model, its params and validation metrics; ``cache`` is its
    own ``CacheNote`` as a dict."""

    run_id: str
    model_uri: str
    params: dict[str, Any]
    validation_metrics: dict[str, float | None]
    threshold: float | None
    cache: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation(StepResult):
    """The best candidate and the champion on the same holdout (written as ``evaluation.json``)."""

    best_run_id: str
    model_uri: str
    params: dict[str, Any]
    threshold: float | None
    classes: list | None
    candidate: EvaluationReport
    champion: EvaluationReport | None
    champion_note: str
    champion_error: str | None
    candidates: list[dict[str, Any]]  # each candidate's run id, params and validation selection metric
    holdout_output: str  # what the candidate answered for every holdout row (.npy)
    monitoring_tags: dict[str, str]
    cache: CacheNotes = field(default_factory=dict)
    # both models' per-row predictions on the holdout (.parquet, ``holdout_pairs``); None without a champion
    paired_predictions: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        from pipelines.gate import EvaluationReport

        champion = data.get("champion")
        return super().from_dict({**data, "candidate": EvaluationReport.from_dict(data["candidate"]),
                                  "champion": EvaluationReport.from_dict(champion) if champion else None})


@dataclass(frozen=True)
class GateDecision(StepResult):
    """The gate's decision (``gate.PromotionDecision.to_dict()``) on the candidate of ``candidate_run_id``."""

    promote: bool
    verdict: str
    summary: str
    reasons: list[dict[str, Any]]
    champion_note: str
    candidate_run_id: str
    attempt: int | None = None  # the gate's attempt number on this holdout


@dataclass(frozen=True)
class InfraChecked(StepResult):
    """Infra validation's outcome (``infra_validation.InfraValidation``); ``cache`` is its ``CacheNote``."""

    passed: bool
    reason: str
    rows_checked: int = 0
    max_abs_diff: float | None = None
    cache: dict[str, str] = field(default_factory=dict)
