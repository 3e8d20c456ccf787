"""A model's monitoring timeline for the operator's pages: one row per monitored window from the monitoring
store (drift, prediction drift, realized metrics, the decision and its reason, the retrain it triggered and
the window's Evidently report), newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

REALIZED_PREFIX = "realized_"


@dataclass(frozen=True)
class Window:
    id: int
    start: date
    end: date
    rows: int
    model_version: str | None
    drift_share: float | None
    dataset_drift: bool | None
    prediction_drift: float | None
    realized: dict[str, float]  # the realized metrics the window could measure (labels arrived)
    labelled_rows: int
    data_valid: bool | None
    decision: str
    reason: str
    triggered_run_id: str | None
    has_report: bool


def windows(engine, model_name: str, limit: int = 400) -> list[Window]:
    """The model's latest ``limit`` windows (a year of daily ones and more), newest first."""
    from pipelines.monitoring_store import load_windows

    with engine.connect() as connection:
        return [_window(row) for row in load_windows(connection, model_name, latest=limit)]


def _window(row: dict[str, Any]) -> Window:
    realized = {key.removeprefix(REALIZED_PREFIX): value for key, value in row.items()
                if key.startswith(REALIZED_PREFIX) and value is not None}
    return Window(row["id"], row["window_start"], row["window_end"], row["rows"], row["model_version"],
                  row["drift_share"], row["dataset_drift"], row["prediction_drift"], realized,
                  row["labelled_rows"] or 0, row["data_valid"], row["decision"], row["reason"] or "",
                  row["triggered_run_id"], bool(row["report_path"]))


def report_path(engine, model_name: str, window_id: int, reports_root: Path) -> Path | None:
    """The window's Evidently report, only when it lies under this model's reports folder (the store's path
    is never followed elsewhere)."""
    import sqlalchemy as sa

    from pipelines.monitoring_store import WINDOWS

    with engine.connect() as connection:
        stored = connection.execute(sa.select(WINDOWS.c.report_path).where(
            (WINDOWS.c.id == window_id) & (WINDOWS.c.model_name == model_name))).scalar()
    if not stored:
        return None
    path, root = Path(stored).resolve(), reports_root.resolve()
    return path if path.is_relative_to(root) and path.is_file() else None
