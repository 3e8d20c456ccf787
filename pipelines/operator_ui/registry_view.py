"""What the registry says about each model, shaped for the operator's pages: every registered or configured
model with its aliases and versions and its last training run's verdict, and for one version the gate's
decision with every reason, the metrics it was judged on, and where it came from (data, code, Airflow run,
MLflow run).

The registry part is read from MLflow: the version's tags (written by ``register``: gate verdict and summary,
lineage, the reason it was trained), the aliases, and for one version the gate's ``gate/decision.json`` and
the metrics of the training run it came from. The configured models are the files of ``include/models``; each
one's last verdict is the one its training DAG recorded (``pipelines.training_outcomes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.config import ConfigFile, StatePaths
from pipelines.gate import Reason
from pipelines.registry import CHALLENGER, CHAMPION, PREVIOUS, search_quoted
from pipelines.training_outcomes import RunVerdict

ALIAS_ORDER = (CHAMPION, CHALLENGER, PREVIOUS)
APPROVED = "approved"  # the gate's verdict when every check passed (``PromotionDecision.verdict``)


@dataclass(frozen=True)
class VersionSummary:
    model: str
    version: str
    aliases: tuple[str, ...]
    created: datetime
    tags: dict[str, str]

    @property
    def gate_decision(self) -> str | None:
        return self.tags.get("gate_decision")

    @property
    def gate_passed(self) -> bool:
        return self.tags.get("gate_decision") == APPROVED

    @property
    def gate_summary(self) -> str | None:
        return self.tags.get("gate_summary")

    @property
    def approval_note(self) -> str | None:
        """A person's answer when the model's config required one: who, when and why."""
        if not self.tags.get("approval"):
            return None
        who = f" by {self.tags['approval_by']}" if self.tags.get("approval_by") else ""
        when = f" at {self.tags['approval_at'][:16].replace('T', ' ')} UTC" if self.tags.get("approval_at") else ""
        why = f": {self.tags['approval_reason']}" if self.tags.get("approval_reason") else ""
        return f"{self.tags['approval']}{who}{when}{why}"

    @property
    def airflow_run(self) -> tuple[str, str] | None:
        """(DAG id, run id) of the training run that made it."""
        dag_id, run_id = self.tags.get("airflow_dag_id"), self.tags.get("airflow_run_id")
        return (dag_id, run_id) if dag_id and run_id else None

    @property
    def mlflow_run_id(self) -> str | None:
        """The training run (the parent of the candidates' runs)."""
        return self.tags.get("mlflow_parent_run_id")

    @property
    def status_notes(self) -> list[str]:
        """What happened to it after registration: promoted, rolled back, retired, demoted (with reasons)."""
        labels = {"promotion_reason": "promoted", "rollback_reason": "rolled back to",
                  "demoted_reason": "demoted", "retired_reason": "retired"}
        return [f"{label}: {self.tags[key]}" for key, label in labels.items() if self.tags.get(key)]


@dataclass(frozen=True)
class ConfiguredModel:
    """A file of ``include/models``: the model it trains and its training DAG's last verdict, or why the file
    does not load."""

    config: str  # the config's name: its DAGs are train_<config>, monitor_<config>...
    model: str  # the registered model it trains (the file's name when it does not load)
    description: str = ""
    last_run: RunVerdict | None = None
    error: str | None = None  # why the file does not load


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str
    aliases: dict[str, str]  # alias -> version
    versions: list[VersionSummary]  # newest first
    configured: ConfiguredModel | None = None  # the config that trains it, if any
    registered: bool = True  # False: configured, but no training run has registered a version yet

    @property
    def last_run(self) -> RunVerdict | None:
        return self.configured.last_run if self.configured else None

    def version_of(self, alias: str) -> VersionSummary | None:
        wanted = self.aliases.get(alias)
        return next((v for v in self.versions if v.version == wanted), None)


@dataclass(frozen=True)
class VersionDetail:
    summary: VersionSummary
    reasons: list[Reason]  # the gate's checks, as it recorded them (with the paired test of each comparison)
    champion_note: str | None  # what the candidate was compared with
    metrics: dict[str, float]  # the training run's metrics (holdout, slices)
    experiment_id: str | None
    problems: list[str] = field(default_factory=list)  # what could not be read, said on the page

    @property
    def slice_metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.metrics.items() if k.startswith("slice")}

    @property
    def overall_metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.metrics.items() if not k.startswith("slice")}


def validation_report_path(summary: VersionSummary, model_reports: Path) -> Path | None:
    """The validation report (its suite's results) of the batch the version's training run validated (written by
    ``validate`` as ``validation/<interval>__<run>.html``), when it is there."""
    from pipelines.run_context import run_key

    interval, run_id = summary.tags.get("data_interval"), summary.tags.get("airflow_run_id")
    if not interval or not run_id:
        return None
    root = model_reports.resolve()
    path = (root / "validation" / f"{interval}__{run_key(run_id)}.html").resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _aliases_by_version(aliases: dict[str, str]) -> dict[str, tuple[str, ...]]:
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    rank = {alias: i for i, alias in enumerate(ALIAS_ORDER)}
    return {v: tuple(sorted(a, key=lambda x: (rank.get(x, len(rank)), x))) for v, a in by_version.items()}


def _version(model: str, version: Any, by_version: dict[str, tuple[str, ...]]) -> VersionSummary:
    return VersionSummary(model, str(version.version), by_version.get(str(version.version), ()),
                          datetime.fromtimestamp(version.creation_timestamp / 1000, UTC), dict(version.tags))


def configured_models(files: Sequence[ConfigFile], state: StatePaths) -> list[ConfiguredModel]:
    """Each model config file (``read_model_configs``) with the verdict of its training DAG's last run."""
    from pipelines.training_outcomes import last_verdict

    found = []
    for entry in files:
        cfg = entry.config
        config = cfg.name if cfg else entry.name
        found.append(ConfiguredModel(config, cfg.model_name if cfg else entry.name,
                                     cfg.description.strip() if cfg else "", last_verdict(state, config),
                                     entry.error))
    return found


def models(client, name: str | None = None, configured: Sequence[ConfiguredModel] = ()) -> list[ModelSummary]:
    """Every registered or configured model (or the one named), newest version first: one registry search per
    registered model. A configured model the registry does not hold is listed with no version; a name that is
    neither raises the registry's not-found error."""
    from pipelines.registry import is_missing

    by_model = {c.model: c for c in configured}
    if name:
        try:
            registered = [client.get_registered_model(name)]
        except Exception as exc:
            if name not in by_model or not is_missing(exc):
                raise
            registered = []
        names = {name}
    else:
        registered = client.search_registered_models()
        names = {m.name for m in registered} | set(by_model)
    held = {m.name: m for m in registered}
    summaries = []
    for model_name in sorted(names):
        model, config = held.get(model_name), by_model.get(model_name)
        if model is None:
            summaries.append(ModelSummary(model_name, config.description, {}, [], config, registered=False))
            continue
        aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
        by_version = _aliases_by_version(aliases)
        versions = client.search_model_versions(f"name='{search_quoted(model.name)}'", max_results=10_000)
        summaries.append(ModelSummary(model.name, model.description or "", aliases,
                                      sorted((_version(model.name, v, by_version) for v in versions),
                                             key=lambda v: int(v.version), reverse=True), config))
    return summaries


def version_summary(client, name: str, version: str) -> VersionSummary:
    model = client.get_registered_model(name)
    aliases = {alias: str(v) for alias, v in (model.aliases or {}).items()}
    return _version(name, client.get_model_version(name, version), _aliases_by_version(aliases))


def version_detail(client, name: str, version: str) -> VersionDetail:
    """One version with its gate decision and its training run's metrics."""
    import mlflow

    summary = version_summary(client, name, version)
    reasons, champion_note, metrics, experiment_id, problems = [], None, {}, None, []
    run_id = summary.mlflow_run_id
    if run_id:
        try:
            run = client.get_run(run_id)
            metrics, experiment_id = dict(run.data.metrics), run.info.experiment_id
        except Exception as exc:
            problems.append(f"the training run {run_id} cannot be read: {exc}")
        try:
            record = mlflow.artifacts.load_dict(f"runs:/{run_id}/gate/decision.json")
            reasons = [Reason.from_dict(r) for r in record.get("reasons", [])]
            champion_note = record.get("champion_note")
        except Exception as exc:
            problems.append(f"the gate's decision.json cannot be read: {exc}")
    else:
        problems.append("this version carries no training run (mlflow_parent_run_id): it was not registered "
                        "by the training DAG")
    return VersionDetail(summary, reasons, champion_note, metrics, experiment_id, problems)
