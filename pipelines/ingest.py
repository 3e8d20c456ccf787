"""Ingest: landed daily files -> one typed, de-duplicated Parquet partition per data interval."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.config import ColumnType, FeedConfig, ModelConfig, StatePaths
from pipelines.errors import DataError
from pipelines.storage import write_parquet_atomic

_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|parquet)$")
_OTHER_SEPARATORS = (";", "\t", "|")


class LandingFileError(DataError):
    """A landed file, or one offered for landing, cannot be used: the ``file``, the ``columns`` at fault (none
    when the file as a whole is) and the ``cause``; the message says all three. The file is left in place."""

    def __init__(self, cause: str, file: Path | str | None = None, columns: Sequence[str] = ()):
        self.cause, self.file, self.columns = cause, file, tuple(columns)
        super().__init__(f"{file}: {cause}" if file is not None else cause)


class NothingLandedError(LandingFileError):
    """No file landed for a feed in the interval: nothing to read (not a bad file)."""


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
    """Files named ``YYYY-MM-DD.csv|parquet`` whose day lies in [start, end), oldest first.

    The landing contract: a file appears under its final name complete (written elsewhere, or under another
    name such as ``.2013-04-08.csv.tmp``, then renamed), so a run sees a day's file whole or not at all.
    Only regular files are read: a symbolic link is refused, never followed. Subfolders are not read (the
    ``replaced/`` folder keeps the files a landing replaced)."""
    if not landing_dir.is_dir():
        return []
    picked = []
    for path in landing_dir.iterdir():
        match = _DAY_FILE.match(path.name)
        if match and start <= date.fromisoformat(match.group(1)) < end:
            if path.is_symlink() or not path.is_file():
                raise LandingFileError("not a regular file (a symbolic link or a folder): land the file itself",
                                       path)
            picked.append(path)
    return sorted(picked)


def open_csv(path: Path):
    """A binary stream of a CSV file's text, uncompressed: .csv.gz, .csv.bz2, .csv.xz, or a .csv.zip holding
    one file (pandas reads the same four, so `mlops-loop init` and `land` take the same files)."""
    import lzma
    import zipfile

    import pyarrow as pa

    if path.name.endswith(".xz"):
        return lzma.open(path)
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise LandingFileError(f"a .zip must hold one file, this one holds {len(members)}", path)
            return archive.open(members[0])  # stays readable after the archive closes (it shares the file)
    return pa.input_stream(str(path), compression="detect")


def read_csv_strictly(path: Path, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A comma-separated file (optionally compressed: see :func:`open_csv`) whose every row has the header's
    fields, in UTF-8, with unique column names; else LandingFileError says what is wrong and where (a line cut
    short, e.g. a file read while being written, is refused rather than read with missing values).
    ``text_columns`` are read as text as written ("02134" stays "02134", never the number 2134)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    separator = other_separator(path)
    if separator:
        raise LandingFileError(f"the header is separated by {separator!r}, not by commas: save the file as "
                               "comma-separated", path)
    try:
        # An empty field of a text column is a missing value, as pandas (and so `mlops-loop init`) reads it.
        with open_csv(path) as stream:
            table = pacsv.read_csv(stream, convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True, column_types={column: pa.string() for column in text_columns}))
    except pa.ArrowInvalid as exc:
        if text_columns and "invalid UTF8" in str(exc):  # read untyped, to name every column that is not UTF-8
            return read_csv_strictly(path)
        message = str(exc).removeprefix("CSV parse error: ")
        if message.startswith("Empty CSV file"):
            raise LandingFileError("file is empty", path) from exc
        raise LandingFileError(f"not a well-formed CSV file ({message[:300]})", path) from exc
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LandingFileError(f"columns {repeated} appear more than once in the header", path, repeated)
    not_text = [field.name for field in table.schema if pa.types.is_binary(field.type)]
    if not_text:
        raise LandingFileError(f"columns {not_text} are not UTF-8 text (save the file as UTF-8)", path, not_text)
    return table.to_pandas()


def other_separator(path: Path) -> str | None:
    """The separator of a header line that holds no comma but splits into fields on ``;``, a tab or ``|``
    (a spreadsheet's export in another locale), else None."""
    with open_csv(path) as stream:
        line = stream.read(1 << 16).split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = line.decode("utf-8")
    except UnicodeDecodeError:  # not text: the CSV reader says so
        return None
    if "," in header:
        return None
    return next((sep for sep in _OTHER_SEPARATORS if sum(bool(f.strip()) for f in header.split(sep)) > 1), None)


def read_landed_file(path: Path, feed: FeedConfig, only_feed_columns: bool = False) -> pd.DataFrame:
    """Read one landed file (Parquet, else CSV) and cast it to the feed's schema, or raise LandingFileError
    naming the file. Columns the feed does not list are dropped (a provider's file may carry more), or, with
    ``only_feed_columns``, refused."""
    try:
        text = [column for column, kind in feed.columns.items() if kind == "string"]
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else read_csv_strictly(path, text)
    except LandingFileError:
        raise
    except Exception as exc:  # pyarrow raises many types; the user needs the file name
        raise LandingFileError(f"unreadable {path.suffix[1:]} file ({exc})", path) from exc
    if frame.empty:
        raise LandingFileError("file has a header but no rows", path)
    missing = [c for c in feed.columns if c not in frame.columns]
    if missing:
        raise LandingFileError(f"missing columns {missing} required by feed {feed.name!r}", path, missing)
    extra = [str(c) for c in frame.columns if c not in feed.columns]
    if extra and only_feed_columns:
        raise LandingFileError(f"columns {extra} are not in feed {feed.name!r} (its columns: "
                               f"{', '.join(feed.columns)})", path, extra)
    typed = cast_columns(frame[list(feed.columns)], feed.columns, source=path)
    null_keys = [c for c in feed.key if typed[c].isna().any()]
    if null_keys:
        raise LandingFileError(f"key columns {null_keys} have missing values", path, null_keys)
    return typed


# Commas grouping thousands, as spreadsheets write numbers: "1,234", "-12,345.6" (never a decimal comma: the
# groups after the first have exactly three digits).
GROUPED_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"


def numbers_from_text(values: pd.Series) -> pd.Series:
    """Numbers from a column of numbers or of their text ("12.5", " 7 ", "1,234"); anything else raises
    ValueError naming the value."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return pd.to_numeric(values, errors="raise")
    text = values.astype("string").str.strip()
    grouped = text.str.fullmatch(GROUPED_THOUSANDS).fillna(False).astype(bool)
    return pd.to_numeric(text.mask(grouped, text.str.replace(",", "", regex=False)), errors="raise")


def cast_columns(frame: pd.DataFrame, schema: dict[str, ColumnType], source: Path | str) -> pd.DataFrame:
    out = {}
    for column, kind in schema.items():
        values = frame[column]
        try:
            if kind == "int":
                out[column] = numbers_from_text(values).astype("Int64")
            elif kind == "float":
                out[column] = numbers_from_text(values).astype("float64")
            elif kind == "string":
                out[column] = values.astype("string")
            else:
                out[column] = pd.to_datetime(values, utc=True, errors="raise")
        except (ValueError, TypeError) as exc:
            raise LandingFileError(f"column {column!r} is not {kind} ({exc})", source, [column]) from exc
    return pd.DataFrame(out, index=frame.index)


def ingest_feed(feed: FeedConfig, landing_dir: Path, start: date, end: date, dest: Path) -> FeedBatch:
    """Land every file of [start, end) for one feed into ``dest`` as a single Parquet partition."""
    files = landed_files(landing_dir, start, end)
    if not files:
        raise NothingLandedError(
            f"no landed files for feed {feed.name!r} in [{start}, {end}) under {landing_dir} "
            "(expected names like YYYY-MM-DD.csv or YYYY-MM-DD.parquet)"
        )
    frames = [read_landed_file(path, feed) for path in files]
    combined = pd.concat(frames, ignore_index=True)
    if feed.key:
        repeated = combined.duplicated(subset=feed.key, keep="last").to_numpy()
        if repeated.mean() > feed.max_duplicate_share:
            per_file = pd.Series(repeated).groupby(np.repeat([p.name for p in files], [len(f) for f in frames]))
            worst = per_file.sum().sort_values(ascending=False).head(3)
            raise LandingFileError(
                f"feed {feed.name!r}: {int(repeated.sum()):,} of {len(combined):,} rows ({repeated.mean():.1%}) "
                f"repeat a key {feed.key} in [{start}, {end}), more than max_duplicate_share "
                f"{feed.max_duplicate_share:.0%}; most in " + ", ".join(f"{landing_dir / n} ({int(c):,})"
                                                                        for n, c in worst.items() if c))
    deduplicated = (combined[~repeated] if feed.key else combined).reset_index(drop=True)
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
