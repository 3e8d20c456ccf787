"""Every served row, written durably for monitoring, without slowing the request that served it.

Requests hand their rows to an in-memory queue (a non-blocking put) and return; one writer thread drains
the queue and writes, per flush, one typed columnar segment per model version and route
(``pipelines.prediction_store``). The queue is unbounded on purpose: under a burst the backlog grows and is
reported (``backlog``), rows are never dropped; ``close()`` drains everything before the service exits.

The writer shares the worker's interpreter lock and its cores with the event loop and the scoring thread, so
it never touches a row in Python: the columns the model scored become Arrow arrays as they are, and a
segment is one INSERT of one compressed blob.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa

from pipelines.prediction_store import SEGMENTS, ServedBatch, create_tables, default_url, encode_segment

log = logging.getLogger(__name__)


def default_set_aside() -> Path:
    from pipelines.config import StatePaths

    return StatePaths.from_env().root / "serving" / "prediction_log_set_aside.jsonl"


class PredictionLog:
    """Rows served -> ``prediction_segments``. A request whose rows cannot be encoded or stored (text UTF-8
    cannot hold, a value the database rejects) is set aside with its reason in an
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
        create_tables(self.engine)
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
            self._pending_rows += batch.rows
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
                rows += item.rows
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

    def _segments(self, batches: list[ServedBatch]) -> list[dict]:
        """One segment per model version and route (and feature columns), each in the order served."""
        groups: dict[tuple, list[ServedBatch]] = {}
        for batch in batches:
            groups.setdefault(batch.segment_key, []).append(batch)
        return [encode_segment(group) for group in groups.values()]

    def _write(self, batches: list[ServedBatch]) -> None:
        """Write the batches together; when they cannot be (not for a transient reason), each request alone,
        so that only the request at fault is set aside."""
        try:
            segments = self._segments(batches)
        except Exception as exc:  # e.g. a lone surrogate in a text value: UTF-8 cannot hold it
            if len(batches) == 1:
                return self._set_aside(batches, f"cannot encode: {type(exc).__name__}: {exc}")
            for batch in batches:
                self._write([batch])
            return
        rows = sum(b.rows for b in batches)
        attempt = 0
        while True:  # never drop rows: a failing database grows the backlog, which /metrics shows
            attempt += 1
            try:
                with self.engine.begin() as connection:
                    connection.execute(SEGMENTS.insert(), segments)
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
        rows = sum(b.rows for b in batches)
        try:
            self.set_aside_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.set_aside_path, "ab") as out:
                for b in batches:
                    out.write(orjson.dumps({
                        "reason": reason[:2000], "request_id": b.request_id, "served_at": b.served_at,
                        "model_name": b.model_name, "model_version": b.model_version, "route": b.route,
                        "rows": b.rows, "features": {k: [repr(v) for v in values]
                                                                 for k, values in b.features.items()},
                        "predictions": b.predictions.tolist()}, option=orjson.OPT_APPEND_NEWLINE))
        except OSError:
            log.exception("prediction log: could not keep %d set-aside rows in %s", rows, self.set_aside_path)
        log.error("prediction log: %d rows set aside in %s: %s", rows, self.set_aside_path, reason[:500])
        with self._lock:
            self._pending_rows -= rows
        self.rows_set_aside += rows


def now() -> datetime:
    return datetime.now(UTC)
