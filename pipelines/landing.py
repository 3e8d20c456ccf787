"""Land a user's table in the landing zone, as a data provider would deliver it: one file per day.

A table with an event time lands one file per day of event time (UTC); a table without one lands whole,
as the batch of the day it arrives. Later batches land the same way and a training run takes the days of
its data interval. Files are written beside their target and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from pipelines.progress import progress_bar
from pipelines.storage import write_parquet_atomic


def package_data(package: str, name: str) -> Path:
    """A data file a Python package ships in its ``data/`` folder (found without importing the package:
    some load every table when imported)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the {package} package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / name


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet table, or a ValueError naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix in (".gz", ".zip", ".bz2", ".xz") else path.suffix
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix.startswith(".csv"):
            return pd.read_csv(path, low_memory=False)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read it as {suffix[1:]} ({exc})") from exc
    raise ValueError(f"{path}: expected a .csv (optionally compressed) or .parquet file")


def land_table(frame: pd.DataFrame, folder: Path, event_time: str | None = None, day: date | None = None) -> list[Path]:
    """Write ``frame`` under ``folder`` as ``YYYY-MM-DD.parquet`` files: one per event-time day (UTC), or
    one file for ``day`` (default today) when there is no event time. Returns the files written."""
    if event_time is None:
        day = day or date.today()
        return [write_parquet_atomic(frame.reset_index(drop=True), folder / f"{day.isoformat()}.parquet")]
    times = frame[event_time]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):  # text as landed; already parsed by init
        times = pd.to_datetime(times, utc=True, errors="coerce", format="ISO8601")
    if times.isna().any():
        raise ValueError(f"event time column {event_time!r}: {int(times.isna().sum())} rows have no readable time")
    typed = frame.assign(**{event_time: times})
    days = times.dt.floor("D")
    written = []
    with progress_bar(days.nunique(), f"landing {folder.name}", "day") as bar:
        for stamp, rows in typed.groupby(days, sort=True):
            path = folder / f"{stamp.date().isoformat()}.parquet"
            written.append(write_parquet_atomic(rows.reset_index(drop=True), path))
            bar.update()
    return written

