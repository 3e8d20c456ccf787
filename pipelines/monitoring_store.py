"""The monitoring time series: one row per (model, window), in a SQL table the UI and benchmarks read.

SQLite under ``$MLOPS_HOME/monitoring`` on the embedded stack; any SQLAlchemy URL via
``$MLOPS_MONITORING_DB_URL`` (PostgreSQL in production). A re-run of a window replaces its row.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import sqlalchemy as sa

from pipelines.config import StatePaths, database_url
from pipelines.settings import stack_settings

METADATA = sa.MetaData()
WINDOWS = sa.Table(
    "monitoring_metrics",
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("window_start", sa.Date, nullable=False),
    sa.Column("window_end", sa.Date, nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("airflow_run_id", sa.String(250)),
    sa.Column("model_version", sa.String(32)),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("drift_share", sa.Float),
    sa.Column("dataset_drift", sa.Boolean),
    sa.Column("prediction_drift", sa.Float),
    sa.Column("labelled_rows", sa.Integer, nullable=False, default=0),
    sa.Column("pending_labels", sa.Integer, nullable=False, default=0),
    sa.Column("metric", sa.String(64)),  # the model's primary metric; every metric is in ``details``
    sa.Column("realized", sa.Float),
    sa.Column("estimated", sa.Float),
    sa.Column("baseline", sa.Float),  # the champion's holdout value
    sa.Column("data_valid", sa.Boolean),
    sa.Column("breached", sa.Boolean, nullable=False, default=False),
    sa.Column("cleared", sa.Boolean, nullable=False, default=True),
    sa.Column("decision", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("triggered_run_id", sa.String(250)),
    sa.Column("report_path", sa.Text),
    sa.Column("details", sa.Text, nullable=False, default="{}"),  # JSON: per-column scores, slices, quality
    sa.UniqueConstraint("model_name", "window_start", "window_end", name="uq_monitoring_window"),
)


def default_url() -> str:
    return database_url(stack_settings().monitoring_db_url, StatePaths.from_env().monitoring_root, "monitoring.db")


def engine(url: str | None = None) -> sa.Engine:
    created = sa.create_engine(url or default_url(), future=True)
    METADATA.create_all(created)
    _add_missing_columns(created)
    return created


def _add_missing_columns(created: sa.Engine) -> None:
    """A table made by an older release gains the columns it lacks (all nullable); columns it has that the
    table no longer defines are left alone and unread."""
    present = {c["name"] for c in sa.inspect(created).get_columns(WINDOWS.name)}
    missing = [c for c in WINDOWS.columns if c.name not in present]
    if not missing:
        return
    with created.begin() as connection:
        for column in missing:
            kind = column.type.compile(dialect=created.dialect)
            connection.execute(sa.text(f'ALTER TABLE {WINDOWS.name} ADD COLUMN "{column.name}" {kind}'))


def save_window(connection, row: dict) -> None:
    """Insert or replace the row of (model, window_start, window_end)."""
    row = {**row, "computed_at": row.get("computed_at") or datetime.now(UTC),
           "details": json.dumps(row.get("details", {}), default=str)}
    connection.execute(WINDOWS.delete().where(
        (WINDOWS.c.model_name == row["model_name"]) & (WINDOWS.c.window_start == row["window_start"])
        & (WINDOWS.c.window_end == row["window_end"])))
    connection.execute(WINDOWS.insert(), [row])


def load_windows(connection, model_name: str, since: date | None = None, latest: int | None = None) -> list[dict]:
    """The model's windows by window end, oldest first; with ``latest``, only that many, newest first."""
    query = sa.select(WINDOWS).where(WINDOWS.c.model_name == model_name)
    if since is not None:
        query = query.where(WINDOWS.c.window_end >= since)
    if latest is not None:
        query = query.order_by(WINDOWS.c.window_end.desc()).limit(latest)
    else:
        query = query.order_by(WINDOWS.c.window_end)
    return [dict(r._mapping) for r in connection.execute(query)]
