"""The validated store: one folder per data interval (``<start>_<end>/examples.parquet``) that passed
validation, each stamped with when it was validated.

The latest validated ingestion of a day wins, whatever the intervals of the runs: a batch validated later
supersedes every earlier batch whose interval lies within its own (they are removed), and the snapshot
reads the remaining batches in validation order, so an example found in several keeps its latest copy. A
corrected file landed again therefore replaces the old one at the next run that ingests its day.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from pipelines.storage import replace_dir, write_text_atomic

log = logging.getLogger(__name__)

STAMP = "validated.json"


@dataclass(frozen=True)
class ValidatedBatch:
    folder: Path
    start: date
    end: date
    validated_at: str

    @property
    def examples(self) -> Path:
        return self.folder / "examples.parquet"

    @property
    def rows_per_day(self) -> float:
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.examples).metadata.num_rows / max(1, (self.end - self.start).days)


def _batch(folder: Path) -> ValidatedBatch | None:
    start, sep, end = folder.name.partition("_")
    try:
        span = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        return None
    if not sep or not (folder / "examples.parquet").is_file():
        return None
    try:
        stamp = json.loads((folder / STAMP).read_text())["validated_at"]
    except (OSError, ValueError, KeyError):
        stamp = datetime.fromtimestamp((folder / "examples.parquet").stat().st_mtime, UTC).isoformat()
    return ValidatedBatch(folder, *span, stamp)


def batches(store: Path) -> list[ValidatedBatch]:
    """Every batch in the store, oldest validation first."""
    found = [b for b in map(_batch, sorted(store.glob("*_*"))) if b is not None] if store.is_dir() else []
    return sorted(found, key=lambda b: (b.validated_at, b.folder.name))


def add_batch(store: Path, incoming: Path, start: date, end: date, run_id: str) -> ValidatedBatch:
    """Move a batch that passed validation into the store, stamped, and drop the batches it supersedes."""
    write_text_atomic(json.dumps({"validated_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                                  "run_id": run_id}), incoming / STAMP)
    folder = replace_dir(incoming, store / f"{start.isoformat()}_{end.isoformat()}")
    for older in batches(store):
        if older.folder != folder and start <= older.start and older.end <= end:
            log.info("batch %s supersedes %s (its days were ingested again)", folder.name, older.folder.name)
            shutil.rmtree(older.folder)
    return _batch(folder)


def window(store: Path, after: date, up_to: date) -> list[ValidatedBatch]:
    """The batches whose interval ends in (after, up_to], oldest validation first. Batches are chosen by
    their data interval, the calendar the landing zone uses, never by comparing event timestamps across
    time zones."""
    return [b for b in batches(store) if after < b.end <= up_to]


def usual_rows_per_day(store: Path, before: date, lookback_days: int) -> float | None:
    """The median rows per day of the batches that end in the ``lookback_days`` before ``before``."""
    import statistics
    from datetime import timedelta

    recent = window(store, before - timedelta(days=lookback_days), before)
    return statistics.median(b.rows_per_day for b in recent) if recent else None
