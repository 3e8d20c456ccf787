"""Ingest: landed daily files -> one typed, de-duplicated Parquet partition per data interval."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from pipelines.config import ColumnType, FeedConfig, ModelConfig, StatePaths
from pipelines.errors import DataError
from pipelines.storage import write_parquet_atomic

_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|parquet)$")


class LandingFileError(DataError):
    """A landed file cannot be used. The message names the file; the file itself is left in place."""


@dataclass(frozen=True)
class FeedBatch:
    feed: str
    path: Path
    files: int
    rows_read: int
    rows: int
    frame: pd.DataFrame = field(repr=False, compare=False)  # what was written, to avoid reading it back

    @property
    def duplicates_dropped(self) -> int:
        return self.rows_read - self.rows


def interval_key(start: date, end: date) -> str:
    return f"{start.isoformat()}_{end.isoformat()}"


def landed_files(landing_dir: Path, start: date, end: date) -> list[Path]:
    """Files named ``YYYY-MM-DD.csv|parquet`` whose day lies in [start, end), oldest first."""
    if not landing_dir.is_dir():
        return []
    picked = []
    for path in landing_dir.iterdir():
        match = _DAY_FILE.match(path.name)
        if match and start <= date.fromisoformat(match.group(1)) < end:
            picked.append(path)
    return sorted(picked)


def read_landed_file(path: Path, feed: FeedConfig) -> pd.DataFrame:
    """Read one landed file and cast it to the feed's schema, or raise LandingFileError naming the file."""
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise LandingFileError(f"{path}: file is empty") from exc
    except Exception as exc:  # pyarrow and the CSV parser raise many types; the user needs the file name
        raise LandingFileError(f"{path}: unreadable {path.suffix[1:]} file ({exc})") from exc
    if frame.empty:
        raise LandingFileError(f"{path}: file has a header but no rows")
    missing = [c for c in feed.columns if c not in frame.columns]
    if missing:
        raise LandingFileError(f"{path}: missing columns {missing} required by feed {feed.name!r}")
    typed = cast_columns(frame[list(feed.columns)], feed.columns, source=str(path))
    null_keys = [c for c in feed.key if typed[c].isna().any()]
    if null_keys:
        raise LandingFileError(f"{path}: key columns {null_keys} have missing values")
    return typed


def cast_columns(frame: pd.DataFrame, schema: dict[str, ColumnType], source: str) -> pd.DataFrame:
    out = {}
    for column, kind in schema.items():
        values = frame[column]
        try:
            if kind == "int":
                out[column] = pd.to_numeric(values, errors="raise").astype("Int64")
            elif kind == "float":
                out[column] = pd.to_numeric(values, errors="raise").astype("float64")
            elif kind == "string":
                out[column] = values.astype("string")
            else:
                out[column] = pd.to_datetime(values, utc=True, errors="raise")
        except (ValueError, TypeError) as exc:
            raise LandingFileError(f"{source}: column {column!r} is not {kind} ({exc})") from exc
    return pd.DataFrame(out, index=frame.index)


def ingest_feed(feed: FeedConfig, landing_dir: Path, start: date, end: date, dest: Path) -> FeedBatch:
    """Land every file of [start, end) for one feed into ``dest`` as a single Parquet partition."""
    files = landed_files(landing_dir, start, end)
    if not files:
        raise LandingFileError(
            f"no landed files for feed {feed.name!r} in [{start}, {end}) under {landing_dir} "
            "(expected names like YYYY-MM-DD.csv or YYYY-MM-DD.parquet)"
        )
    frames = [read_landed_file(path, feed) for path in files]
    combined = pd.concat(frames, ignore_index=True)
    deduplicated = (combined.drop_duplicates(subset=feed.key, keep="last") if feed.key else combined) \
        .reset_index(drop=True)
    write_parquet_atomic(deduplicated, dest)
    return FeedBatch(feed=feed.name, path=dest, files=len(files), rows_read=len(combined), rows=len(deduplicated),
                     frame=deduplicated)


def ingest_examples(
    feeds: list[FeedConfig], landing_dir: Callable[[str], Path], start: date, end: date, folder: Path,
    build: Callable[[dict[str, pd.DataFrame]], pd.DataFrame],
) -> tuple[dict[str, FeedBatch], pd.DataFrame]:
    """Every feed of [start, end) as a Parquet partition in ``folder``, then the examples built from them."""
    batches = {f.name: ingest_feed(f, landing_dir(f.name), start, end, folder / f"{f.name}.parquet") for f in feeds}
    return batches, build({name: batch.frame for name, batch in batches.items()})


def ingest_model_examples(cfg: ModelConfig, state: StatePaths, start: date, end: date,
                          folder: Path) -> tuple[dict[str, FeedBatch], pd.DataFrame]:
    """The model's examples of [start, end): its feeds from its landing zone, through its builder."""
    from pipelines.features import examples_builder

    return ingest_examples(cfg.feeds, lambda feed: state.landing(cfg.landing_name, feed), start, end, folder,
                           examples_builder(cfg))
