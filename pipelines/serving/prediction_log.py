"""Every served row, written durably for monitoring, without slowing the request that served it.

Requests hand their rows to an in-memory queue (a non-blocking put) and return; one writer thread
drains the queue in batches into a SQL table (SQLite on the embedded stack, PostgreSQL in production:
any SQLAlchemy URL). The queue is unbounded on purpose: under a burst the backlog grows and is reported
(``backlog``), rows are never dropped; ``close()`` drains everything before the service exits.

The writer shares the worker's interpreter lock and its cores with the event loop and the scoring thread,
so it works in bulk: features are encoded column by column, and the rows go to the driver's
``executemany`` as plain tuples (many rows per INSERT on SQLite), with no per-row SQLAlchemy processing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, groupby, islice, repeat
from pathlib import Path

import numpy as np
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
# The columns the writer fills, in the table's order.
LOGGED = tuple(c.name for c in PREDICTIONS.columns if not c.primary_key)
# Rows per INSERT where the driver takes positional parameters (SQLite): a third less work per row than one
# row per INSERT.
ROWS_PER_INSERT = 100


@dataclass(frozen=True)
class ServedBatch:
    request_id: str
    served_at: datetime
    model_name: str
    model_version: str
    route: str
    features: dict[str, np.ndarray]  # the rows as scored, column by column (encoded by the writer thread)
    predictions: np.ndarray  # what the log keeps of each row's output (the task type's score)
    event_times: list[datetime | None] | None = None


def default_url() -> str:
    return database_url("MLOPS_PREDICTION_LOG_URL", "serving", "predictions.db")


def default_set_aside() -> Path:
    from pipelines.config import StatePaths

    return StatePaths.from_env().root / "serving" / "prediction_log_set_aside.jsonl"


class PredictionLog:
    """Rows served -> the ``prediction_log`` table. A request whose rows cannot be encoded or stored (a
    string the JSON encoder refuses, a value the database rejects) is set aside with its reason in an
    append-only JSON-lines file (``set_aside``), never the requests written with it, and the writer keeps
    going: rows served = rows written + rows set aside + backlog."""

    def __init__(self, url: str | None = None, max_batch_rows: int = 5000, flush_seconds: float = 0.2,
                 set_aside: Path | None = None):
        self.url = url or default_url()
        self.set_aside_path = set_aside or default_set_aside()
        self.engine = sa.create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _wal(dbapi_connection, _record):  # readers (the monitoring DAG) never block the writer
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        create_table(self.engine)
        dialect = self.engine.dialect
        # inline: the database numbers the rows, and no id is read back
        insert = PREDICTIONS.insert().inline().compile(dialect=dialect, column_keys=list(LOGGED))
        self._insert_sql, self._positional = str(insert), insert.positional
        self._insert_many_sql = str(PREDICTIONS.insert().values([dict.fromkeys(LOGGED)] * ROWS_PER_INSERT)
                                    .compile(dialect=dialect)) if insert.positional else None
        stamp_type = PREDICTIONS.c.served_at.type
        self._stamp = stamp_type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
        self._queue: queue.SimpleQueue[ServedBatch | None] = queue.SimpleQueue()
        self._max_batch_rows, self._flush_seconds = max_batch_rows, flush_seconds
        self._pending_rows = 0
        self._lock = threading.Lock()
        self.rows_written = 0
        self.rows_set_aside = 0
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
                try:
                    self._write(batches)
                except Exception as exc:  # the writer never dies on its rows
                    log.exception("prediction log: %d rows could not be written", rows)
                    self._set_aside(batches, f"{type(exc).__name__}: {exc}")

    @property
    def state(self) -> dict:
        """What /health says of the log."""
        return {"writer": "running" if self._writer.is_alive() else "stopped", "backlog_rows": self.backlog,
                "rows_written": self.rows_written, "rows_set_aside": self.rows_set_aside,
                "set_aside_file": str(self.set_aside_path)}

    def _records(self, batches: list[ServedBatch]) -> list[tuple] | list[dict]:
        """One parameter set per row for the driver, its values bound as SQLAlchemy binds them (a SQLite
        timestamp as text). The features of consecutive batches with the same columns are encoded together."""
        groups = [list(group) for _, group in groupby(batches, key=lambda b: tuple(b.features))]
        features = chain.from_iterable(
            rows_as_json({name: np.concatenate([b.features[name] for b in group]) for name in group[0].features})
            for group in groups)
        stamp = self._stamp
        records: list[tuple] = []
        for b in batches:
            n = len(b.predictions)
            event_times = [None if t is None else stamp(t) for t in b.event_times] if b.event_times \
                else repeat(None, n)
            records.extend(zip(repeat(b.request_id, n), range(n), repeat(stamp(b.served_at), n), event_times,
                               repeat(b.model_name, n), repeat(b.model_version, n), repeat(b.route, n),
                               islice(features, n), b.predictions.tolist(), strict=True))
        return records if self._positional else [dict(zip(LOGGED, record, strict=True)) for record in records]

    def _insert(self, connection: sa.Connection, records: list[tuple] | list[dict]) -> None:
        """The rows in ``ROWS_PER_INSERT``-row statements where the driver takes positional parameters, the rest
        one row per statement, each through the driver's ``executemany``."""
        whole = len(records) - len(records) % ROWS_PER_INSERT if self._positional else 0
        if whole:
            connection.exec_driver_sql(self._insert_many_sql, [
                tuple(chain.from_iterable(records[i:i + ROWS_PER_INSERT])) for i in range(0, whole, ROWS_PER_INSERT)])
        if whole < len(records):
            connection.exec_driver_sql(self._insert_sql, records[whole:])

    def _write(self, batches: list[ServedBatch]) -> None:
        """Write the batches together; when they cannot be (not for a transient reason), each request alone,
        so that only the request at fault is set aside."""
        try:
            records = self._records(batches)
        except Exception as exc:  # e.g. a lone surrogate in a text value: orjson refuses to encode it
            if len(batches) == 1:
                return self._set_aside(batches, f"cannot encode: {type(exc).__name__}: {exc}")
            for batch in batches:
                self._write([batch])
            return
        rows = len(records)
        attempt = 0
        while True:  # never drop rows: a failing database grows the backlog, which /metrics shows
            attempt += 1
            try:
                with self.engine.begin() as connection:
                    self._insert(connection, records)
                break
            except (sa.exc.OperationalError, sa.exc.InterfaceError):  # a locked SQLite file, a database restart
                self.write_errors += 1
                log.exception("prediction log write of %d rows failed (attempt %d), retrying", rows, attempt)
                time.sleep(min(5.0, 0.2 * attempt))
            except sa.exc.DBAPIError as exc:  # not transient: a value the database refuses
                self.write_errors += 1
                if len(batches) == 1:
                    return self._set_aside(batches, f"refused by the database: {exc.orig}")
                for batch in batches:
                    self._write([batch])
                return
        with self._lock:
            self._pending_rows -= rows
        self.rows_written += rows

    def _set_aside(self, batches: list[ServedBatch], reason: str) -> None:
        """Keep what was served for inspection, one JSON line per request, with the reason it was not logged."""
        rows = sum(len(b.predictions) for b in batches)
        try:
            self.set_aside_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.set_aside_path, "ab") as out:
                for b in batches:
                    out.write(orjson.dumps({
                        "reason": reason[:2000], "request_id": b.request_id, "served_at": b.served_at,
                        "model_name": b.model_name, "model_version": b.model_version, "route": b.route,
                        "rows": len(b.predictions), "features": {k: [repr(v) for v in values]
                                                                 for k, values in b.features.items()},
                        "predictions": b.predictions.tolist()}, option=orjson.OPT_APPEND_NEWLINE))
        except OSError:
            log.exception("prediction log: could not keep %d set-aside rows in %s", rows, self.set_aside_path)
        log.error("prediction log: %d rows set aside in %s: %s", rows, self.set_aside_path, reason[:500])
        with self._lock:
            self._pending_rows -= rows
        self.rows_set_aside += rows


def create_table(engine: sa.Engine) -> None:
    """Create ``prediction_log``, or add the columns a log written by an earlier release lacks."""
    METADATA.create_all(engine)
    present = {c["name"] for c in sa.inspect(engine).get_columns(PREDICTIONS.name)}
    with engine.begin() as connection:
        for column in PREDICTIONS.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                connection.exec_driver_sql(f"ALTER TABLE {PREDICTIONS.name} ADD COLUMN {column.name} {kind}")


def rows_as_json(columns: dict[str, np.ndarray]) -> list[str]:
    """Each row as a JSON object of its columns (NaN as null), encoded column by column: a float64 column in
    one ``orjson`` call, any other once per distinct value."""
    template = "{" + ",".join(f"{orjson.dumps(name).decode().replace('%', '%%')}:%s" for name in columns) + "}"
    return [template % row for row in zip(*map(_json_values, columns.values()), strict=True)]


def _json_values(values: np.ndarray) -> list[str]:
    if values.dtype == np.float64:
        return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode().split(",")
    encoded = {value: orjson.dumps(value).decode() for value in set(values)}
    return [encoded[value] for value in values]


def now() -> datetime:
    return datetime.now(UTC)
