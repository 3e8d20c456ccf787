"""Every served row, written durably for monitoring, without slowing the request that served it.

Rows come in as ``ServedBatch``es, one per micro-batch the service scored (not one per request), through an
in-memory queue (a non-blocking put); one writer thread wakes every ``flush_seconds`` (never per request),
drains the queue and writes it in one transaction: one typed columnar segment per model version and route and
per ``max_segment_rows`` (``pipelines.prediction_store``).
The writer shares the worker's interpreter lock and its cores with the event loop and the scoring thread, so
it never touches a row in Python: the columns the model scored become Arrow arrays as they are, and a segment
is one compressed blob.

Nothing served goes unaccounted: rows served = rows written + rows set aside + backlog, where
- a request whose rows cannot be encoded or stored (text UTF-8 cannot hold, a value the database refuses)
  is set aside with its reason in an append-only JSON-lines file, never the requests written with it;
- while the store is down or locked, encoded segments spill to an append-only file of this process
  (``spill_dir``), memory stays flat, and the spill is written to the store when it answers again, by this
  process or, if it dies, by the next one to start;
- the queue in memory is bounded (``max_queued_rows``): past it the service answers 503 (``admit``)
  rather than grow, which happens only when the spill cannot be written either;
- ``close()`` drains the queue to the store, or to the spill when the store is down, and logs the counts.
A process killed outright (SIGKILL) loses what was queued in memory and not yet flushed: at most one flush
interval of rows in normal operation (``flush_seconds``), at most ``max_queued_rows`` when the disk fails too.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa

from pipelines.prediction_store import ServedBatch, create_tables, default_url, encode_segment, insert_segments

log = logging.getLogger(__name__)

TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError)  # a locked SQLite file, a database down or restarting
_FRAME = struct.Struct("<IQ")  # a spilled segment: the length of its fields (JSON), then of its data


def _chunks(batches: list[ServedBatch], max_rows: int) -> Iterator[list[ServedBatch]]:
    """The batches in order, in runs of at most ``max_rows`` rows (a larger batch alone)."""
    chunk: list[ServedBatch] = []
    rows = 0
    for batch in batches:
        if chunk and rows + batch.rows > max_rows:
            yield chunk
            chunk, rows = [], 0
        chunk.append(batch)
        rows += batch.rows
    if chunk:
        yield chunk


def _by_request(batches: list[ServedBatch]) -> list[ServedBatch]:
    """The batches split into one per request: what is set aside alone when a row cannot be stored."""
    return [request for batch in batches for request in batch.by_request()]


def default_set_aside() -> Path:
    from pipelines.config import StatePaths

    return StatePaths.from_env().serving / "prediction_log_set_aside.jsonl"


def default_spill_dir() -> Path:
    from pipelines.config import StatePaths

    return StatePaths.from_env().serving / "prediction_log_spill"


class PredictionLog:
    """Rows served -> ``prediction_segments``; see the module's docstring for what happens when they cannot
    be written."""

    def __init__(self, url: str | None = None, max_segment_rows: int = 20_000, flush_seconds: float = 1.0,
                 set_aside: Path | None = None, spill_dir: Path | None = None, max_queued_rows: int = 500_000,
                 retry_seconds: float = 2.0):
        self.url = url or default_url()
        self.set_aside_path = set_aside or default_set_aside()
        self.spill_dir = spill_dir or default_spill_dir()
        self.engine = sa.create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _wal(dbapi_connection, _record):  # readers (the monitoring DAG) never block the writer
                dbapi_connection.execute("PRAGMA journal_mode=WAL")
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")
        self._queue: queue.SimpleQueue[ServedBatch] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._max_segment_rows, self._flush_seconds = max_segment_rows, flush_seconds
        self.max_queued_rows, self.retry_seconds = max_queued_rows, retry_seconds
        self._queued_rows = 0  # in memory: queued, or taken by the writer and not yet written or spilled
        self.spilled_rows = 0  # on disk in spill files, not yet in the store
        self._lock = threading.Lock()
        self.rows_written = 0
        self.writer_cpu_seconds = 0.0  # the writer thread's CPU time: what logging costs the service
        self.rows_set_aside = 0
        self.requests_refused = 0  # answered 503 because the queue was full
        self.write_errors = 0
        self.store_error: str | None = None  # the store's last error while it is down, else None
        self._retry_at = 0.0
        self._tables_ready = False
        self._spill_file = None  # the file spills append to, until the spills are written
        # Spill files this writer owns, oldest first, each with the open handle that holds its lock: a file
        # whose lock is free belongs to a process that is gone, and the next writer to start adopts it.
        self._spills: dict[Path, object] = {}
        try:
            self._create_tables()
        except TRANSIENT as exc:  # the service starts with its store down: rows spill until it is back
            self._store_down(exc)
        self._writer = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._writer.start()

    # the request side ----------------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        """Rows accepted but not yet in the store: in memory or spilled to disk."""
        return self._queued_rows + self.spilled_rows

    def admit(self) -> bool:
        """Whether a request may be served: not while the queue in memory is at its bound (the service then
        answers 503 instead of scoring; counted in ``requests_refused``)."""
        if self._queued_rows < self.max_queued_rows:
            return True
        self.requests_refused += 1
        return False

    def submit(self, batch: ServedBatch) -> None:
        with self._lock:
            self._queued_rows += batch.rows
        self._queue.put(batch)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (to the spill if the store is down), then log what became of every row."""
        self._closing.set()
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.error("prediction log: the writer did not finish within %.0f s; %d rows still in memory",
                      timeout, self._queued_rows)
        log.info("prediction log closed: %d rows written, %d set aside, %d spilled to %s (written by the next "
                 "start), %d in memory; %d requests refused with a 503", self.rows_written, self.rows_set_aside,
                 self.spilled_rows, self.spill_dir, self._queued_rows, self.requests_refused)

    @property
    def state(self) -> dict:
        """What /health says of the log."""
        return {"writer": "running" if self._writer.is_alive() else "stopped",
                "store": "down" if self.store_error else "up", "store_error": self.store_error,
                "backlog_rows": self.backlog, "queued_rows": self._queued_rows, "spilled_rows": self.spilled_rows,
                "rows_written": self.rows_written, "rows_set_aside": self.rows_set_aside,
                "writer_cpu_seconds": round(self.writer_cpu_seconds, 3),
                "requests_refused": self.requests_refused, "set_aside_file": str(self.set_aside_path)}

    # the writer thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        self._adopt_orphaned_spills()
        closing = False
        while not closing:
            # Woken by the clock (or close()), never by a request: a thread woken at every put would take the
            # interpreter lock from the event loop thousands of times a second.
            closing = self._closing.wait(self._flush_seconds)
            batches: list[ServedBatch] = []
            rows = 0
            while True:
                try:
                    batch = self._queue.get_nowait()
                except queue.Empty:
                    break
                batches.append(batch)
                rows += batch.rows
            if self._spills and time.monotonic() >= self._retry_at:
                self._try_spills()
            if batches:
                try:
                    self._write(batches)
                except Exception as exc:  # the writer never dies on its rows
                    log.exception("prediction log: %d rows could not be written", rows)
                    self._set_aside(batches, f"{type(exc).__name__}: {exc}")
            self.writer_cpu_seconds = time.thread_time()
        if self._spills:
            self._try_spills()  # a last try before leaving the spill to the next start
        for handle in self._spills.values():
            handle.close()  # unlocked: the next writer to start adopts them

    def _segments(self, batches: list[ServedBatch]) -> list[tuple[list[ServedBatch], dict]]:
        """One segment per model version and route (and feature columns), each in the order served, with the
        batches it holds. A request whose rows cannot be encoded is set aside, never its segment-mates."""
        groups: dict[tuple, list[ServedBatch]] = {}
        for batch in batches:
            groups.setdefault(batch.segment_key, []).append(batch)
        segments = []
        for group in (chunk for same_key in groups.values() for chunk in _chunks(same_key, self._max_segment_rows)):
            try:
                segments.append((group, encode_segment(group)))
            except Exception as exc:  # e.g. a lone surrogate in a text value: UTF-8 cannot hold it
                requests = _by_request(group)
                if len(requests) == 1:
                    self._set_aside(requests, f"cannot encode: {type(exc).__name__}: {exc}")
                else:
                    segments.extend(segment for request in requests for segment in self._segments([request]))
        return segments

    def _write(self, batches: list[ServedBatch]) -> None:
        segments = self._segments(batches)
        if not segments:
            return
        if self.store_error and time.monotonic() < self._retry_at:
            return self._spill(segments)  # the store is down: do not wait on it at every flush
        try:
            self._insert([segment for _, segment in segments])
        except TRANSIENT as exc:
            self._store_down(exc)
            return self._spill(segments)
        except sa.exc.DBAPIError as exc:  # not transient: a value the database refuses
            self.write_errors += 1
            requests = _by_request([batch for group, _ in segments for batch in group])
            if len(requests) == 1:
                return self._set_aside(requests, f"refused by the database: {exc.orig}")
            for request in requests:  # each request alone, so that only the one at fault is set aside
                self._write([request])
            return
        self._store_up()
        self._done(sum(segment["rows"] for _, segment in segments), written=True)

    def _create_tables(self) -> None:
        create_tables(self.engine)
        self._tables_ready = True

    def _insert(self, segments: list[dict]) -> None:
        if not self._tables_ready:
            self._create_tables()
        with self.engine.begin() as connection:
            insert_segments(connection, segments)

    def _done(self, rows: int, written: bool) -> None:
        with self._lock:
            self._queued_rows -= rows
        if written:
            self.rows_written += rows

    def _store_down(self, exc: Exception) -> None:
        self.write_errors += 1
        if self.store_error is None:
            log.error("prediction log: the store is unreachable; rows spill to %s until it answers: %s",
                      self.spill_dir, exc)
        self.store_error = f"{type(exc).__name__}: {str(exc)[:300]}"
        self._retry_at = time.monotonic() + self.retry_seconds

    def _store_up(self) -> None:
        if self.store_error is not None:
            log.warning("prediction log: the store answers again")
        self.store_error = None

    # spilling ------------------------------------------------------------------------------------------
    def _spill(self, segments: list[tuple[list[ServedBatch], dict]]) -> None:
        """Append the segments to this process's spill file (locked while it lives). If the disk fails too,
        the rows go back to the queue in memory, whose bound then answers 503."""
        try:
            if self._spill_file is None:
                self.spill_dir.mkdir(parents=True, exist_ok=True)
                path = self.spill_dir / f"spill-{os.getpid()}-{time.time_ns()}.bin"
                self._spill_file = open(path, "ab")
                fcntl.flock(self._spill_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._spills[path] = self._spill_file
            for _, segment in segments:
                fields = orjson.dumps({k: v for k, v in segment.items() if k != "data"})
                self._spill_file.write(_FRAME.pack(len(fields), len(segment["data"])) + fields + segment["data"])
            self._spill_file.flush()
        except OSError:
            log.exception("prediction log: cannot spill to %s; keeping the rows in memory", self.spill_dir)
            time.sleep(min(self.retry_seconds, 1.0))
            for group, _ in segments:
                for batch in group:
                    self._queue.put(batch)  # still counted in memory
            return
        rows = sum(segment["rows"] for _, segment in segments)
        self.spilled_rows += rows
        self._done(rows, written=False)

    def _try_spills(self) -> None:
        try:
            self._write_spills()
        except Exception:  # e.g. a spill file that cannot be read: kept, retried later, the writer goes on
            log.exception("prediction log: could not write the spill files %s", [p.name for p in self._spills])
            self._retry_at = time.monotonic() + self.retry_seconds

    def _write_spills(self) -> None:
        """Write the spill files to the store, oldest first, each in one transaction, then delete them. A
        file the store refuses (not for a transient reason) is kept aside as ``*.refused``."""
        self._spill_file = None  # new spills start a new file (this one stays locked until it is written)
        for path, handle in list(self._spills.items()):
            segments = read_spill(path)
            rows = sum(s["rows"] for s in segments)
            try:
                self._insert(segments)
            except TRANSIENT as exc:
                self._store_down(exc)
                return
            except sa.exc.DBAPIError as exc:
                self.write_errors += 1
                path.rename(path.with_suffix(".refused"))
                log.error("prediction log: the store refuses the %d spilled rows of %s, kept as %s: %s", rows,
                          path.name, path.with_suffix(".refused").name, exc.orig)
                self.rows_set_aside += rows
            else:
                path.unlink(missing_ok=True)
                self.rows_written += rows
                self._store_up()
                log.info("prediction log: %d spilled rows written from %s", rows, path.name)
            handle.close()
            del self._spills[path]
            self.spilled_rows -= rows

    def _adopt_orphaned_spills(self) -> None:
        """Take over the spill files of processes that are gone (their lock is free), to write them here."""
        if not self.spill_dir.is_dir():
            return
        for path in sorted(self.spill_dir.glob("spill-*.bin"), key=lambda p: p.stat().st_mtime):
            handle = open(path, "rb")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a live process's spill
                handle.close()
                continue
            claimed = path.with_name(f"spill-{os.getpid()}-{time.time_ns()}.bin")
            try:
                path.rename(claimed)
            except OSError:
                handle.close()
                continue
            rows = sum(s["rows"] for s in read_spill(claimed))
            self._spills[claimed] = handle
            self.spilled_rows += rows
            log.warning("prediction log: %d rows spilled by an earlier process (%s) will be written", rows,
                        path.name)

    # setting aside -------------------------------------------------------------------------------------
    def _set_aside(self, batches: list[ServedBatch], reason: str) -> None:
        """Keep what was served for inspection, one JSON line per request, with the reason it was not logged."""
        rows = sum(b.rows for b in batches)
        self._keep([{"reason": reason[:2000], "request_id": b.request_ids[0], "served_at": b.served_at,
                     "model_name": b.model_name, "model_version": b.model_version, "route": b.route, "rows": b.rows,
                     "features": {k: [repr(v) for v in values] for k, values in b.features.items()},
                     "predictions": b.predictions.tolist()} for b in _by_request(batches)], rows, reason)
        self._done(rows, written=False)

    def set_aside_unbuilt(self, request_ids: list[str], request_rows: list[int], reason: str) -> None:
        """Rows served whose log entry could not be built (never submitted): counted as set aside and kept as
        their request ids and the reason, so that served = written + set aside + backlog still holds."""
        self._keep([{"reason": reason[:2000], "request_id": request_id, "served_at": now(), "rows": rows}
                    for request_id, rows in zip(request_ids, request_rows, strict=True)], sum(request_rows), reason)

    def _keep(self, records: list[dict], rows: int, reason: str) -> None:
        try:
            self.set_aside_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.set_aside_path, "ab") as out:
                out.write(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
        except OSError:
            log.exception("prediction log: could not keep %d set-aside rows in %s", rows, self.set_aside_path)
        log.error("prediction log: %d rows set aside in %s: %s", rows, self.set_aside_path, reason[:500])
        with self._lock:  # the writer and the scoring thread both set rows aside
            self.rows_set_aside += rows


def read_spill(path: Path) -> list[dict]:
    """The complete segments of a spill file; a last segment cut short (the process killed mid-write) is
    dropped with a warning."""
    data, segments, offset = path.read_bytes(), [], 0
    while offset + _FRAME.size <= len(data):
        fields_length, data_length = _FRAME.unpack_from(data, offset)
        end = offset + _FRAME.size + fields_length + data_length
        if end > len(data):
            break
        fields = orjson.loads(data[offset + _FRAME.size:offset + _FRAME.size + fields_length])
        for stamp in ("served_from", "served_to", "event_from", "event_to"):
            fields[stamp] = datetime.fromisoformat(fields[stamp])
        fields.setdefault("segment_id", uuid.uuid4().hex)  # a file written without ids
        segments.append({**fields, "data": data[end - data_length:end]})
        offset = end
    if offset < len(data):
        log.warning("prediction log: %s ends with %d bytes of a segment cut short; they are dropped", path.name,
                    len(data) - offset)
    return segments


def now() -> datetime:
    return datetime.now(UTC)
