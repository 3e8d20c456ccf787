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


def lineage(client, log_url: str | None, request_id: str) -> Lineage:
    from pipelines.prediction_store import find_request

    rows = find_request(log_url, request_id)
    versions, problems = [], []
    for (model, version), _ in rows.groupby(["model_name", "model_version"], sort=False, observed=True):
        try:
            versions.append(version_summary(client, str(model), str(version)))
        except Exception as exc:
            problems.append(f"{model} v{version} is not in the registry: {exc}")
    return Lineage(request_id, rows, versions, problems)


def served_rows(log_url: str | None, model: str, version: str) -> int:
    """How many rows this model version answered or shadowed, from the prediction log."""
    import sqlalchemy as sa

    from pipelines.prediction_store import SEGMENTS, create_tables, default_url

    engine = sa.create_engine(log_url or default_url(), future=True)
    try:
        create_tables(engine)
        with engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.coalesce(sa.func.sum(SEGMENTS.c.rows), 0)).where(
                (SEGMENTS.c.model_name == model) & (SEGMENTS.c.model_version == version))).scalar_one())
    finally:
        engine.dispose()
