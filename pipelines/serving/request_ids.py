"""The request ids the service answered lately, so that an id is answered once: lineage finds a request's rows
in the prediction log by its id (and the labels feed joins outcomes on it), so two requests answered under
one id would read as one.

One table serves every worker on a host and outlives a restart: a file mapped into memory (``path``, beside
the prediction log), each claim made under an exclusive lock of the file. A slot holds an id's 64-bit hash
and when it may be forgotten (``window_seconds`` after it was claimed); open addressing, up to ``PROBES``
slots per id. Costs a few microseconds per request, whatever the prediction log's store is. When every
slot an id may take holds a live id (the table too small for the request rate), the one nearest its end
is forgotten early and counted (``forgotten_early``).

Without a path (no prediction log) the table lives in this process's memory only.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import time
from pathlib import Path

log = logging.getLogger(__name__)

SLOT = struct.Struct("<Qd")  # the id's hash (0: never used), when it may be forgotten (Unix seconds)
PROBES = 16


def _key(request_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little") or 1


class RecentRequestIds:
    def __init__(self, path: Path | None, window_seconds: float, slots: int):
        self.path, self.window_seconds, self.slots = path, window_seconds, slots
        self.forgotten_early = 0
        size = slots * SLOT.size
        if path is None:
            self._fd = None
            self._map = mmap.mmap(-1, size)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:  # new: zeros (never used), allocated as they are written
                os.ftruncate(self._fd, size)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap.mmap(self._fd, size)

    def claim(self, request_id: str) -> bool:
        """Take ``request_id`` for a request: False when a request in the window already has it."""
        key, now = _key(request_id), time.time()
        self._lock()
        try:
            free = oldest = None
            oldest_until = float("inf")
            for slot in self._probe(key):
                stored, until = SLOT.unpack_from(self._map, slot * SLOT.size)
                if stored == key and until > now:
                    return False
                if free is None and until <= now:
                    free = slot
                if stored == 0:  # never used: no id was put past it
                    break
                if until < oldest_until:
                    oldest, oldest_until = slot, until
            if free is None:
                free = oldest
                self.forgotten_early += 1
                if self.forgotten_early == 1:
                    log.warning("the table of recent request ids is full (%d slots): ids are forgotten before "
                                "their %.0f s; give it more slots", self.slots, self.window_seconds)
            SLOT.pack_into(self._map, free * SLOT.size, key, now + self.window_seconds)
            return True
        finally:
            self._unlock()

    def release(self, request_id: str) -> None:
        """Give ``request_id`` back (its request was refused, nothing of it logged): it may be sent again."""
        key, now = _key(request_id), time.time()
        self._lock()
        try:
            for slot in self._probe(key):
                stored, until = SLOT.unpack_from(self._map, slot * SLOT.size)
                if stored == key and until > now:
                    SLOT.pack_into(self._map, slot * SLOT.size, key, 0.0)
                    return
                if stored == 0:
                    return
        finally:
            self._unlock()

    def close(self) -> None:
        self._map.close()
        if self._fd is not None:
            os.close(self._fd)

    def _probe(self, key: int) -> range | list[int]:
        start = key % self.slots
        if start + PROBES <= self.slots:
            return range(start, start + PROBES)
        return [(start + i) % self.slots for i in range(PROBES)]

    def _lock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


def file_for(log_url: str, slots: int) -> Path | None:
    """Where the recent request ids of the prediction log at ``log_url`` live: beside its SQLite file, else in
    the state folder under a name made from the URL (one table per log, whoever's workers write to it). The
    name carries the number of slots: a service started with another number starts a table of its own, and
    never resizes one a running worker has mapped."""
    import sqlalchemy as sa

    from pipelines.config import StatePaths

    url = sa.engine.make_url(log_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        database = Path(url.database)
        return database.with_name(f"{database.name}.request-ids-{slots}")
    name = hashlib.sha1(url.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return StatePaths.from_env().serving / f"request-ids-{name}-{slots}"
