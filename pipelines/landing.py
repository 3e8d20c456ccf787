"""Land a user's table in the landing zone, as a data provider would deliver it: one file per day.

A table with an event time lands one file per day of event time (UTC); a table without one lands whole,
as the batch of the day it arrives. Later batches land the same way and a training run takes the days of
its data interval. Files are written beside their target and renamed, so a reader never sees half a file.

A later batch is read and checked as ingest reads a landed file, and every day of it is checked, before any
file is written. A day that already holds other rows is replaced only when asked; the replaced file is kept,
in a folder ingest never reads (it reads only the ``YYYY-MM-DD.csv|parquet`` files of the feed's folder).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from pipelines.config import FeedConfig
from pipelines.ingest import LandingFileError, landed_files, read_landed_file
from pipelines.progress import progress_bar
from pipelines.storage import write_parquet_atomic

# What the strict CSV reader (pyarrow) decompresses, besides Parquet.
_BATCH_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")


class DayLandedError(LandingFileError):
    """A day of the batch already holds other rows, and replacing it was not asked for."""


@dataclass(frozen=True)
class Landed:
    """What a landing did: the day files written, the days that already held exactly these rows, and for each
    replaced file the path it is kept at."""

    written: list[Path]
    unchanged: list[Path] = field(default_factory=list)
    kept: dict[Path, Path] = field(default_factory=dict)


def package_data(package: str, name: str) -> Path:
    """A data file a Python package ships in its ``data/`` folder (found without importing the package:
    some load every table when imported)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {package} package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / name


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet table as pandas reads it (the types a draft is inferred from), or a ValueError naming
    the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise LandingFileError("no such file", path)
    suffix = "".join(path.suffixes[-2:]) if path.suffix in (".gz", ".zip", ".bz2", ".xz") else path.suffix
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix.startswith(".csv"):
            return _read_csv_keeping_codes(path)
    except Exception as exc:
        raise LandingFileError(f"cannot read it as {suffix[1:]} ({exc})", path) from exc
    raise LandingFileError("expected a .csv (optionally compressed) or .parquet file", path)


def _read_csv_keeping_codes(path: Path) -> pd.DataFrame:
    """A CSV file as pandas reads it, except that a column pandas would read as numbers is kept as text when
    one of its values is written with a leading zero ("02134": a zip code), which a number would lose."""
    from pipelines.drafting import has_leading_zero

    frame = pd.read_csv(path, low_memory=False)
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    if not numeric:
        return frame
    raw = pd.read_csv(path, usecols=numeric, dtype=str, keep_default_na=True, low_memory=False)
    codes = [c for c in numeric if has_leading_zero(raw[c])]
    for column in codes:
        frame[column] = raw[column].astype(object)
    return frame


def read_batch(path: Path, feed: FeedConfig) -> pd.DataFrame:
    """A later batch of ``feed``, read and cast as ingest reads a landed file, and held to the feed's columns
    exactly (a column the feed does not list is refused, not dropped); else LandingFileError."""
    path = Path(path)
    if not path.is_file():
        raise LandingFileError("no such file", path)
    if not path.name.endswith(_BATCH_SUFFIXES):
        raise LandingFileError(f"expected a {', '.join(_BATCH_SUFFIXES[1:])} or .parquet file", path)
    return read_landed_file(path, feed, only_feed_columns=True)


def land_table(frame: pd.DataFrame, folder: Path, event_time: str | None = None, day: date | None = None, *,
               source: Path | str = "the table", keep_replaced_in: Path | None = None) -> Landed:
    """Write ``frame`` under ``folder`` as ``YYYY-MM-DD.parquet`` files: one per event-time day (UTC), or
    one file for ``day`` (default today) when there is no event time.

    Every day is checked before any file is written. A day whose file holds exactly these rows is left as it
    is. A day that holds other rows (as Parquet or CSV) raises DayLandedError, unless ``keep_replaced_in`` is
    given: then its file is replaced and the old one kept there, named after its day and the time it was
    replaced. ``source`` names the table in refusals."""
    days = rows_by_day(frame, folder, event_time, day, source)
    present: dict[str, list[Path]] = {}
    stamps = sorted(path.stem for path in days)
    for path in landed_files(folder, date.fromisoformat(stamps[0]), date.fromisoformat(stamps[-1]) + timedelta(days=1)):
        present.setdefault(path.stem, []).append(path)
    unchanged = [path for path, rows in days.items() if present.get(path.stem) == [path] and same_rows(path, rows)]
    occupied = [path for path in days if path.stem in present and path not in unchanged]
    if occupied and keep_replaced_in is None:
        more = f" (and {len(occupied) - 1} more of the batch's days)" if len(occupied) > 1 else ""
        raise DayLandedError(f"day {occupied[0].stem} already landed with other rows{more}",
                             present[occupied[0].stem][0])
    written, kept = [], {}
    with progress_bar(len(days) - len(unchanged), f"landing {folder.name}", "day") as bar:
        for path, rows in days.items():
            if path in unchanged:
                continue
            old = present.get(path.stem, [])
            kept.update({previous: keep_copy(previous, keep_replaced_in) for previous in old})
            written.append(write_parquet_atomic(rows, path))
            for previous in old:
                if previous != path:
                    previous.unlink()
            bar.update()
    return Landed(written=written, unchanged=unchanged, kept=kept)


def rows_by_day(frame: pd.DataFrame, folder: Path, event_time: str | None, day: date | None,
                source: Path | str) -> dict[Path, pd.DataFrame]:
    """The day files a landing writes, each with its rows; a batch with rows of no readable event time is
    refused whole."""
    if event_time is None:
        return {folder / f"{(day or date.today()).isoformat()}.parquet": frame.reset_index(drop=True)}
    if frame.empty:
        raise LandingFileError("the table has no rows", source)
    times = frame[event_time]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):  # text as landed; already parsed by init
        times = pd.to_datetime(times, utc=True, errors="coerce", format="ISO8601")
    if times.isna().any():
        raise LandingFileError(f"{int(times.isna().sum()):,} rows have no event time in column {event_time!r} "
                               "(empty or not a readable time)", source, [event_time])
    typed = frame.assign(**{event_time: times})
    return {folder / f"{stamp.date().isoformat()}.parquet": rows.reset_index(drop=True)
            for stamp, rows in typed.groupby(times.dt.floor("D"), sort=True)}


def same_rows(path: Path, rows: pd.DataFrame) -> bool:
    """Whether the Parquet file holds exactly ``rows`` (values and column names; a time stored at another
    resolution, e.g. seconds read back as milliseconds, is the same time)."""
    try:
        pd.testing.assert_frame_equal(pd.read_parquet(path), rows, check_dtype=False, check_exact=True)
    except (AssertionError, ValueError, TypeError):
        return False
    return True


def keep_copy(path: Path, folder: Path) -> Path:
    """A copy of ``path`` in ``folder`` named ``<day>.replaced-<UTC time><suffix>``: a hard link where the
    file system allows (the day's file is then replaced by a rename, so the day is never without a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{path.stem}.replaced-{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}"
    kept, n = folder / f"{name}{path.suffix}", 1
    while kept.exists():
        n += 1
        kept = folder / f"{name}-{n}{path.suffix}"
    try:
        os.link(path, kept)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        shutil.copy2(path, kept)
    return kept
