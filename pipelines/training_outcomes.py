"""What a training run made of its candidate.

``RunVerdict`` is a run's own last word, one line, recorded by the step that decided it (the gate, infra
validation, a person's answer, ``register``) or, for a task that failed for good, by the training DAG's failure
callback, as ``verdicts/<model>/<run>.json`` under the state folder. ``mlops-loop train`` (and ``make up``)
print it for the run they followed; the operator pages and ``mlops-loop models`` show each model's latest.

``TrainingOutcome`` is what MLflow recorded of the runs a monitor started: the version registered, or the
gate's or a person's verdict. For the operator pages' monitoring timeline and the report of ``mlops-loop replay``."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.config import StatePaths
from pipelines.registry import search_quoted

log = logging.getLogger(__name__)

# What a verdict says of its run.
FAILED = "failed"  # a task failed for good: the run stops there
NOT_PROMOTED = "not_promoted"  # the gate, infra validation or a person refused the candidate
PASSED = "passed"  # a check passed; later steps still decide
REGISTERED = "registered"  # a new version is in the registry
OUTCOMES = (FAILED, NOT_PROMOTED, PASSED, REGISTERED)
LINE_LIMIT = 1000  # characters of a reason: the task log has the rest


@dataclass(frozen=True)
class RunVerdict:
    """One training run's verdict as one line: which step had the last word, and why."""

    dag_id: str
    run_id: str
    step: str  # the task that decided (``train[2]`` for a mapped one)
    outcome: str  # one of OUTCOMES
    reason: str  # one line, e.g. "gate refused: roc_auc 0.5012 is below floor 0.6000"
    version: str | None = None  # the version registered
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"a run verdict's outcome is one of {OUTCOMES}, not {self.outcome!r}")
        object.__setattr__(self, "reason", one_line(self.reason))

    @property
    def line(self) -> str:
        if self.outcome == FAILED:
            return f"FAILED at {self.step}: {self.reason or 'no message (the task log says why)'}"
        if self.outcome == NOT_PROMOTED:
            return f"not promoted: {self.reason}"
        return self.reason

    @property
    def stopped(self) -> bool:
        """Whether the run stopped here without a new version (refused or failed)."""
        return self.outcome in (FAILED, NOT_PROMOTED)

    @property
    def pending(self) -> bool:
        """Whether a check passed and later steps have the last word."""
        return self.outcome == PASSED


def one_line(text: str) -> str:
    """A message (a traceback's last word, a list of failed expectations) on one line, at most LINE_LIMIT long."""
    flat = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return flat if len(flat) <= LINE_LIMIT else flat[:LINE_LIMIT - 30].rstrip() + " … (the task log has the rest)"


def verdict_path(state: StatePaths, model: str, run_id: str) -> Path:
    from pipelines.run_context import run_key

    return state.verdicts(model) / f"{run_key(run_id)}.json"


def record_verdict(state: StatePaths, model: str, verdict: RunVerdict) -> Path:
    """Record (or replace: a cleared task decides again) the verdict of the run, whole or not at all."""
    from pipelines.storage import write_text_atomic

    return write_text_atomic(json.dumps(asdict(verdict), indent=1) + "\n",
                             verdict_path(state, model, verdict.run_id))


def read_verdict(path: Path) -> RunVerdict:
    """A recorded verdict; ValueError naming the file when it is not one."""
    try:
        return RunVerdict(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a run verdict: {exc}") from exc


def run_verdict(state: StatePaths, model: str, run_id: str) -> RunVerdict | None:
    """The verdict of one run, or None when none was recorded (the run has decided nothing yet)."""
    path = verdict_path(state, model, run_id)
    return read_verdict(path) if path.is_file() else None


def run_verdicts(state: StatePaths, model: str, run_ids) -> dict[str, RunVerdict]:
    """The recorded verdicts of these runs, by run id: a run without one is left out, and so is one whose
    file cannot be read (logged)."""
    verdicts = {}
    for run_id in run_ids:
        try:
            verdict = run_verdict(state, model, run_id)
        except ValueError as exc:
            log.warning("%s", exc)
            continue
        if verdict:
            verdicts[run_id] = verdict
    return verdicts


def last_verdict(state: StatePaths, model: str) -> RunVerdict | None:
    """The verdict recorded last among the model's runs (None when none is). One that cannot be read is
    logged and skipped for the one before it."""
    folder = state.verdicts(model)
    paths = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True) \
        if folder.is_dir() else []
    for path in paths:
        try:
            return read_verdict(path)
        except ValueError as exc:
            log.warning("%s", exc)
    return None


@dataclass(frozen=True)
class TrainingOutcome:
    """What one training run (by its Airflow run id) made of its candidate, as MLflow recorded it."""

    version: str | None = None  # the version it registered
    gate_decision: str = ""  # from its parent MLflow run: the gate's verdict and summary, a person's answer
    gate_summary: str = ""
    approval: str = ""
    approval_reason: str = ""

    def summary(self) -> str:
        if self.version:
            return f"registered v{self.version}"
        if self.approval and self.approval != "approved":
            return f"not registered: {self.approval}" + (f" ({self.approval_reason})" if self.approval_reason else "")
        return f"gate {self.gate_summary}" if self.gate_summary else "no gate decision yet"


def training_outcomes(client, model_name: str, experiment_name: str, airflow_run_ids) -> dict[str, TrainingOutcome]:
    """Each training run's outcome: one registry search, and one search for each run's parent MLflow run."""
    run_ids = list(dict.fromkeys(airflow_run_ids))
    if not run_ids:
        return {}
    versions = {v.tags.get("airflow_run_id"): str(v.version)
                for v in client.search_model_versions(f"name='{search_quoted(model_name)}'", max_results=10_000)}
    experiment = client.get_experiment_by_name(experiment_name)
    outcomes = {}
    for run_id in run_ids:
        runs = client.search_runs([experiment.experiment_id], f"tags.airflow_run_id = '{search_quoted(run_id)}'") \
            if experiment else []
        tags = next((r.data.tags for r in runs if "mlflow.parentRunId" not in r.data.tags), {})
        outcomes[run_id] = TrainingOutcome(versions.get(run_id), tags.get("gate_decision", ""),
                                           tags.get("gate_summary", ""), tags.get("approval", ""),
                                           tags.get("approval_reason", ""))
    return outcomes
