"""What the training runs a monitor started made of their candidates, read from MLflow by Airflow run id:
the version registered, or the gate's or a person's verdict. For the operator pages' monitoring timeline and
``make simulate``'s report."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.registry import search_quoted


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
