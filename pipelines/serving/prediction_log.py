"""Every served row, written durably for monitoring, without slowing the request that served it.

Requests hand their rows to an in-memory queue (a non-blocking put) and return; one writer thread
drains the queue in batches into a SQL table (SQLite on the embedded stack, PostgreSQL in production:
any SQLAlchemy URL). The queue is unbounded on purpose: under a burst the backlog grows and is reported
(``backlog``), rows are never dropped; ``close()`` drains everything before the service exits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa

from pipelines.config import database_url

log = logging.getLogger(__name__)

METADATA = sa.MetaData()
PREDICTIONS = sa.Table(
    "prediction_log",
    METADATA,
    # A surrogate key: request ids come from clients, who may resend one (a retry is served and logged twice).
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("served_at", sa.DateTime(timezone=True), nullable=False, index=True),
    # When the predicted event happens (e.g. the flight's scheduled hour), if the client sent it: monitoring
    # windows use it, else served_at. Replays of past data rely on it.
    sa.Column("event_time", sa.DateTime(timezone=True), nullable=True, index=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("route", sa.String(16), nullable=False),  # champion (returned) or shadow (scored, not returned)
    sa.Column("features", sa.Text, nullable=False),     # JSON object of the row as scored
    sa.Column("prediction", sa.Float, nullable=False),  # probability of the positive class
)


@dataclass(frozen=True)
class ServedBatch:
    request_id: str
    served_at: datetime
    model_name: str
    model_version: str
    route: str
    features: list[dict] | dict[str, list]  # rows, or columns (turned into rows by the writer thread)
    predictions: list[float]
    event_times: list[datetime | None] | None = None


def default_url() -> str:
    return database_url("MLOPS_PREDICTION_LOG_URL", "serving", "predictions.db")


class PredictionLog:
    def __init__(self, url: str | None = None, max_batch_rows: int = 5000, flush_seconds: float = 0.2):
        self.url = url or default_url()
        self.engine = sa.create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _wal(dbapi_connection, _record):  # readers (the monitoring DAG) never block the writer
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        create_table(self.engine)
        self._queue: queue.SimpleQueue[ServedBatch | None] = queue.SimpleQueue()
        self._max_batch_rows, self._flush_seconds = max_batch_rows, flush_seconds
        self._pending_rows = 0
        self._lock = threading.Lock()
        self.rows_written = 0
        self.rows_failed = 0
        self.write_errors = 0
        self._writer = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._writer.start()

    @property
    def backlog(self) -> int:
        """Rows accepted but not yet written."""
        return self._pending_rows

    def submit(self, batch: ServedBatch) -> None:
        with self._lock:
            self._pending_rows += len(batch.predictions)
        self._queue.put(batch)

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._writer.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            batches: list[ServedBatch] = []
            rows = 0
            deadline = time.monotonic() + self._flush_seconds
            while rows < self._max_batch_rows:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()) if batches else None)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batches.append(item)
                rows += len(item.predictions)
            if batches:
                self._write(batches, rows)

    def _write(self, batches: list[ServedBatch], rows: int) -> None:
        records = [
            {"request_id": b.request_id, "row_index": i, "served_at": b.served_at, "model_name": b.model_name,
             "model_version": b.model_version, "route": b.route, "features": orjson.dumps(row).decode(),
             "prediction": float(p), "event_time": b.event_times[i] if b.event_times else None}
            for b in batches for i, (row, p) in enumerate(zip(_rows(b.features), b.predictions, strict=True))
        ]
        attempt, written = 0, False
        while True:  # never drop rows: a failing database grows the backlog, which /metrics shows
            attempt += 1
            try:
                with self.engine.begin() as connection:
                    connection.execute(PREDICTIONS.insert(), records)
                written = True
                break
            except (sa.exc.OperationalError, sa.exc.InterfaceError):  # a locked SQLite file, a database restart
                self.write_errors += 1
                log.exception("prediction log write of %d rows failed (attempt %d), retrying", rows, attempt)
                time.sleep(min(5.0, 0.2 * attempt))
            except sa.exc.DBAPIError:  # not transient: retrying would wedge the writer; count it and say so
                self.write_errors += 1
                log.exception("prediction log could not write %d rows", rows)
                break
        with self._lock:
            self._pending_rows -= rows
        if written:
            self.rows_written += rows
        else:
            self.rows_failed += rows


def create_table(engine: sa.Engine) -> None:
    """Create ``prediction_log``, or add the columns a log written by an earlier release lacks."""
    METADATA.create_all(engine)
    present = {c["name"] for c in sa.inspect(engine).get_columns(PREDICTIONS.name)}
    with engine.begin() as connection:
        for column in PREDICTIONS.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                connection.exec_driver_sql(f"ALTER TABLE {PREDICTIONS.name} ADD COLUMN {column.name} {kind}")


def _rows(features: list[dict] | dict[str, list]) -> list[dict]:
    if isinstance(features, dict):
        names = list(features)
        return [dict(zip(names, values, strict=True)) for values in zip(*features.values(), strict=True)]
    return features


def now() -> datetime:
    return datetime.now(UTC)
