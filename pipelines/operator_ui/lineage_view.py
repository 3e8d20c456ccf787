"""Lineage of one prediction: the logged rows of a request id (every route that scored it), and for each
model version that scored it, where that version came from (its registry tags: training data's DVC hash and
path, the Airflow run, the MLflow run, the git commit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.operator_ui.registry_view import VersionSummary, version_summary

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Lineage:
    request_id: str
    rows: pd.DataFrame  # the logged rows: model_name, model_version, route, served_at, prediction, features
    versions: list[VersionSummary]  # each model version that scored the request
    problems: list[str]

    @property
    def found(self) -> bool:
        return not self.rows.empty


def lineage(client, request_id: str) -> Lineage:
    """Searches the prediction log the service writes to (``MLOPS_PREDICTION_LOG_URL`` or the embedded default)."""
    from pipelines.prediction_store import find_request

    rows = find_request(None, request_id)
    versions, problems = [], []
    for (model, version), _ in rows.groupby(["model_name", "model_version"], sort=False, observed=True):
        try:
            versions.append(version_summary(client, str(model), str(version)))
        except Exception as exc:
            problems.append(f"{model} v{version} is not in the registry: {exc}")
    return Lineage(request_id, rows, versions, problems)
