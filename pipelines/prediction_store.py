"""Where served rows are kept: typed, columnar segments in a SQL database (SQLite on the embedded stack,
PostgreSQL in production: any SQLAlchemy URL).

A segment is the rows of consecutive requests to one model version on one route, as one Arrow IPC stream
(lz4) with a column per feature, typed as scored (float64, or dictionary-encoded text), beside the
request id, row index, serving time, event time and prediction. Its row in ``prediction_segments`` carries
what a reader filters on: model, version, route, row count and the span of event time (serving time for rows
sent without one). The prediction service writes a segment per model and flush; monitoring reads a window as
Arrow, never parsing a row, and gets typed columns.

Writes are idempotent: each segment carries a random ``segment_id`` (unique), and ``insert_segments`` skips
one already stored. A write whose commit reached the database but whose answer was lost (the connection cut
at that moment) is spilled and written again; it is then stored once.
"""

from __future__ import annotations

import functools
import itertools
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from pipelines.config import StatePaths, database_url
from pipelines.settings import stack_settings

log = logging.getLogger(__name__)

METADATA = sa.MetaData()
SEGMENTS = sa.Table(
    "prediction_segments",
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("route", sa.String(16), nullable=False),  # champion (returned) or shadow (scored, not returned)
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("served_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("served_to", sa.DateTime(timezone=True), nullable=False),
    # The span of the rows' event time (when the predicted event happens, e.g. the flight's scheduled hour, if
    # the client sent it; else when it was served): monitoring windows are cut on it. Both ends inclusive.
    sa.Column("event_from", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_to", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),  # the rows: an Arrow IPC stream
    sa.Column("segment_id", sa.String(32)),  # random, set when encoded: a segment written twice is stored once
    sa.Index("ix_prediction_segments_window", "model_name", "event_to"),
)
SEGMENT_ID_INDEX = sa.Index("ux_prediction_segments_segment_id", SEGMENTS.c.segment_id, unique=True)
# The log's own columns in a segment; every other column is a feature as scored.
LOG_COLUMNS = ("request_id", "row_index", "served_at", "event_time", "prediction")
STAMP = pa.timestamp("us", tz="UTC")
TEXT = pa.dictionary(pa.int32(), pa.string())  # a text feature: few distinct values, each stored once
# lz4 on the writer's own thread: as cheap as no compression for the writer (about 0.2 ms of CPU per 1,000
# flights rows), a third of the size; zstd is a third smaller again for twice the CPU, and a compression
# thread pool costs the serving cores more than it saves.
_IPC = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)


class KnownCategories:
    """A model's known categories of one text column, as its encoder numbers them (code = position), for
    pandas lookups and as the dictionary of the column in the log."""

    def __init__(self, index: pd.Index):
        self.index = index
        self.dictionary = pa.array(index.tolist(), type=pa.string())
        self._positions = {value: code for code, value in enumerate(index)}

    @classmethod
    def of(cls, index: pd.Index) -> KnownCategories | None:
        """None unless every category is text (only text is logged through codes)."""
        return cls(index) if all(isinstance(v, str) for v in index) else None

    def codes(self, values: np.ndarray) -> TextCodes:
        """The values' codes (-1: unknown or missing). A dict lookup per value for a request's few rows (pandas'
        lookup costs 15-20 us even for one row), pandas' hash table past a thousand."""
        if len(values) > 1000:
            return TextCodes(self, self.index.get_indexer(values))
        return TextCodes(self, np.fromiter(map(self._positions.get, values, itertools.repeat(-1)), dtype=np.intp,
                                           count=len(values)))


@dataclass(frozen=True)
class TextCodes:
    """A text column's codes against a model's known categories (-1: unknown or missing). Computed once per
    request: the scorer encodes the column with them, and the log stores it from them without hashing its
    text again."""

    known: KnownCategories
    codes: np.ndarray


@dataclass(frozen=True)
class ServedBatch:
    """Rows one model version scored on one route: one request's, or a micro-batch of several requests' scored
    together (``request_ids[i]`` sent the next ``request_rows[i]`` rows)."""

    request_ids: tuple[str, ...]
    served_at: datetime
    model_name: str
    model_version: str
    route: str
    features: dict[str, np.ndarray]  # column by column: float64, or object (text or None)
    predictions: np.ndarray  # what the log keeps of each row's output (the task type's score)
    event_times: list[datetime | None] | None = None
    text_codes: dict[str, TextCodes] | None = None  # of text features, when the model's scorer made them
    request_rows: tuple[int, ...] | None = None  # None: one request, every row

    @property
    def rows(self) -> int:
        return len(self.predictions)

    @property
    def rows_per_request(self) -> tuple[int, ...]:
        return self.request_rows if self.request_rows is not None else (self.rows,)

    @property
    def segment_key(self) -> tuple:
        """Batches with the same key share a segment."""
        return self.model_name, self.model_version, self.route, tuple(self.features)

    def by_request(self) -> list[ServedBatch]:
        """One batch per request: to set aside only the request at fault."""
        if len(self.request_ids) == 1:
            return [self]
        ends = np.cumsum(self.rows_per_request).tolist()
        return [replace(self, request_ids=(request_id,), request_rows=None,
                        features={name: values[start:end] for name, values in self.features.items()},
                        predictions=self.predictions[start:end],
                        event_times=self.event_times[start:end] if self.event_times is not None else None,
                        text_codes={name: replace(c, codes=c.codes[start:end]) for name, c in self.text_codes.items()}
                        if self.text_codes is not None else None)
                for request_id, start, end in zip(self.request_ids, [0, *ends[:-1]], ends, strict=True)]


def default_url() -> str:
    return database_url(stack_settings().prediction_log_url, StatePaths.from_env().serving, "predictions.db")


def reader(url: str | None = None) -> sa.Engine:
    """The engine this process reads the log at ``url`` (default: ``default_url()``) with: one per log, its
    tables created and an earlier layout migrated at the first call."""
    return _reader(url or default_url())


@functools.cache
def _reader(url: str) -> sa.Engine:
    engine = sa.create_engine(url, future=True)
    create_tables(engine)
    return engine


def create_tables(engine: sa.Engine) -> None:
    """Create ``prediction_segments`` (or add the ``segment_id`` an earlier layout lacks); move the rows of a
    row-per-row log into it (see ``migrate_row_log``)."""
    METADATA.create_all(engine)
    inspector = sa.inspect(engine)
    if "segment_id" not in {column["name"] for column in inspector.get_columns(SEGMENTS.name)}:
        _add_segment_id(engine)
    if inspector.has_table(ROW_LOG):
        migrate_row_log(engine)


def _add_segment_id(engine: sa.Engine) -> None:
    """Add ``segment_id`` and its unique index to a ``prediction_segments`` made without them (its rows keep
    no id). Two processes starting together add it once: the second's ALTER fails and it goes on."""
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"ALTER TABLE {SEGMENTS.name} ADD COLUMN segment_id VARCHAR(32)")
            SEGMENT_ID_INDEX.create(connection)
    except sa.exc.DBAPIError:
        log.info("%s.segment_id was added by another process", SEGMENTS.name)


def insert_segments(connection: sa.Connection, segments: list[dict]) -> None:
    """Insert the encoded segments, skipping any whose ``segment_id`` is already stored."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(SEGMENTS).on_conflict_do_nothing(index_elements=["segment_id"])
    elif dialect == "sqlite":
        statement = sqlite.insert(SEGMENTS).on_conflict_do_nothing(index_elements=["segment_id"])
    elif dialect in ("mysql", "mariadb"):
        statement = mysql.insert(SEGMENTS)
        statement = statement.on_duplicate_key_update(segment_id=statement.inserted.segment_id)
    else:  # another database: a write repeated after a lost answer may store its rows twice
        statement = SEGMENTS.insert()
    connection.execute(statement, segments)


# The log of an earlier layout: a row per served row, its features as a JSON object.
ROW_LOG = "prediction_log"


def migrate_row_log(engine: sa.Engine, chunk_rows: int = 100_000) -> int:
    """Move a row-per-row ``prediction_log`` into segments, in one transaction, and keep the old table as
    ``prediction_log_migrated``. A column holding only numbers (or nulls) becomes float64, any other text.
    Two processes starting together migrate once: the rename that claims the table fails for the second."""
    import orjson

    with engine.begin() as connection:
        try:
            connection.exec_driver_sql(f"ALTER TABLE {ROW_LOG} RENAME TO {ROW_LOG}_migrated")
        except sa.exc.DBAPIError:
            log.info("%s was migrated by another process", ROW_LOG)
            return 0
        legacy = sa.Table(f"{ROW_LOG}_migrated", sa.MetaData(), autoload_with=connection)
        event_time = legacy.c.event_time if "event_time" in legacy.c else sa.null()
        query = sa.select(legacy.c.request_id, legacy.c.served_at, event_time, legacy.c.model_name,
                          legacy.c.model_version, legacy.c.route, legacy.c.features, legacy.c.prediction) \
            .order_by(legacy.c.id)
        moved = 0
        for rows in connection.execute(query).partitions(chunk_rows):
            batches = [_legacy_batch(list(request), orjson) for _, request in
                       itertools.groupby(rows, key=lambda r: (r[0], r[1], r[3], r[4], r[5]))]
            groups: dict[tuple, list[ServedBatch]] = {}
            for batch in batches:
                groups.setdefault(batch.segment_key, []).append(batch)
            insert_segments(connection, [encode_segment(group) for group in groups.values()])
            moved += len(rows)
    log.warning("moved %d rows of %s into %s; the old table is kept as %s_migrated", moved, ROW_LOG,
                SEGMENTS.name, ROW_LOG)
    return moved


def _legacy_batch(rows: list, orjson) -> ServedBatch:
    request_id, served_at, _, model_name, version, route = rows[0][:6]
    features = [orjson.loads(r[6]) for r in rows]
    names = list(dict.fromkeys(name for f in features for name in f))
    columns = {}
    for name in names:
        values = [f.get(name) for f in features]
        numeric = all(v is None or type(v) in (int, float) for v in values)
        columns[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64) if numeric \
            else np.array([None if v is None else str(v) for v in values], dtype=object)
    times = [r[2] for r in rows]
    return ServedBatch((request_id,), served_at, model_name, version, route, columns,
                       np.array([r[7] for r in rows], dtype=np.float64), times if any(times) else None)


def _micros(stamp: datetime) -> int:
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1_000_000)


def _feature_array(values: np.ndarray) -> pa.Array:
    if values.dtype == np.float64:
        return pa.array(values, type=pa.float64())
    return pa.array(values, type=TEXT)  # raises on text UTF-8 cannot hold


def _shared_codes(batches: list[ServedBatch]) -> dict[str, KnownCategories]:
    """The text features every batch has codes of, against the same known categories (one pass per segment)."""
    shared = {name: codes.known for name, codes in (batches[0].text_codes or {}).items()}
    for batch in batches[1:]:
        if not shared:
            break
        mine = batch.text_codes or {}
        shared = {name: known for name, known in shared.items()
                  if (codes := mine.get(name)) is not None and codes.known is known}
    return shared


def _from_codes(batches: list[ServedBatch], name: str, known_categories: KnownCategories) -> pa.DictionaryArray:
    """A text feature built from its codes (see ``_shared_codes``): the known values cost no lookup, an unknown
    one is added to the dictionary, a missing one is null."""
    first = batches[0].text_codes[name]
    codes = first.codes if len(batches) == 1 else np.concatenate([b.text_codes[name].codes for b in batches])
    indices, missing, unknown = codes.astype(np.int32), None, {}
    misses = np.flatnonzero(codes < 0)
    if misses.size:
        values = batches[0].features[name] if len(batches) == 1 else np.concatenate([b.features[name] for b in batches])
        missing = np.zeros(len(codes), dtype=bool)
        known = len(known_categories.dictionary)
        for row in misses:
            value = values[row]
            if value is None:
                missing[row] = True
            else:
                indices[row] = known + unknown.setdefault(value, len(unknown))
    dictionary = known_categories.dictionary if not unknown else pa.concat_arrays(
        [known_categories.dictionary, pa.array(list(unknown), type=pa.string())])  # raises on text UTF-8 cannot hold
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=missing), dictionary)


def encode_segment(batches: list[ServedBatch]) -> dict:
    """The batches (one ``segment_key``) as a row of ``prediction_segments``. Raises when a value cannot be
    stored as typed (e.g. a lone surrogate in a text value)."""
    first = batches[0]
    counts = np.array([n for b in batches for n in b.rows_per_request], dtype=np.int64)  # per request
    total = int(counts.sum())
    served = np.repeat(np.array([_micros(b.served_at) for b in batches], dtype=np.int64), [b.rows for b in batches])
    if any(b.event_times for b in batches):
        event = pa.array([t for b in batches for t in (b.event_times or [None] * b.rows)], type=STAMP)
    else:
        event = pa.nulls(total, STAMP)
    columns = {
        "request_id": pa.DictionaryArray.from_arrays(
            pa.array(np.repeat(np.arange(len(counts), dtype=np.int32), counts)),
            pa.array([request_id for b in batches for request_id in b.request_ids], type=pa.string())),
        "row_index": pa.array((np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int32)),
        "served_at": pa.array(served, type=pa.int64()).cast(STAMP),
        "event_time": event,
        "prediction": pa.array(np.concatenate([np.asarray(b.predictions, dtype=np.float64) for b in batches])),
    }
    coded = _shared_codes(batches)
    for name in first.features:
        if name in coded:
            columns[name] = _from_codes(batches, name, coded[name])
            continue
        values = [b.features[name] for b in batches]
        columns[name] = _feature_array(values[0] if len(values) == 1 else np.concatenate(values))
    table = pa.table(columns)
    when = pc.coalesce(table["event_time"], table["served_at"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    span = pc.min_max(when)
    return {"model_name": first.model_name, "model_version": first.model_version, "route": first.route,
            "rows": total, "served_from": batches[0].served_at, "served_to": batches[-1].served_at,
            "event_from": span["min"].as_py(), "event_to": span["max"].as_py(),
            "data": sink.getvalue().to_pybytes(), "segment_id": uuid.uuid4().hex}


def decode_segment(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def _utc(stamp: datetime) -> datetime:
    return stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def read_segments(engine: sa.Engine, model_name: str | None = None, start: datetime | None = None,
                  end: datetime | None = None, route: str | None = None) -> Iterator[pa.Table]:
    """The logged rows, segment by segment in the order written, with ``model_name``, ``model_version`` and
    ``route`` columns; only rows whose event time is in [start, end) when they are given. Streamed: memory
    holds one segment at a time. ``engine``: see ``reader``."""
    query = sa.select(SEGMENTS.c.model_name, SEGMENTS.c.model_version, SEGMENTS.c.route, SEGMENTS.c.event_from,
                      SEGMENTS.c.event_to, SEGMENTS.c.data).order_by(SEGMENTS.c.id)
    if model_name is not None:
        query = query.where(SEGMENTS.c.model_name == model_name)
    if route is not None:
        query = query.where(SEGMENTS.c.route == route)
    if start is not None:
        query = query.where(SEGMENTS.c.event_to >= _utc(start))
    if end is not None:
        query = query.where(SEGMENTS.c.event_from < _utc(end))
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=64).execute(query)
        for name, version, segment_route, event_from, event_to, data in result:
            table = decode_segment(data)
            # Only a segment that straddles an end of the window is filtered row by row.
            if start is not None and _utc(event_from) < _utc(start) or end is not None and _utc(event_to) >= _utc(end):
                when = pc.coalesce(table["event_time"], table["served_at"])
                if start is not None:
                    table, when = _keep(table, when, pc.greater_equal(when, pa.scalar(_utc(start), STAMP)))
                if end is not None:
                    table, when = _keep(table, when, pc.less(when, pa.scalar(_utc(end), STAMP)))
            if table.num_rows:
                yield _with_origin(table, name, version, segment_route)


def _keep(table: pa.Table, when: pa.Array, mask: pa.Array) -> tuple[pa.Table, pa.Array]:
    return table.filter(mask), when.filter(mask)


def _with_origin(table: pa.Table, model_name: str, version: str, route: str) -> pa.Table:
    def constant(value: str) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(table.num_rows, dtype=np.int32)),
                                              pa.array([value], type=pa.string()))

    return (table.append_column("model_name", constant(model_name))
            .append_column("model_version", constant(version)).append_column("route", constant(route)))


def read_log(url: str | None = None, model_name: str | None = None, **filters) -> pd.DataFrame:
    """Every logged row (of one model, in a window, on a route: see ``read_segments``) as one frame, text as
    text; for inspection, tests and small logs. Segments written with other features are aligned by name."""
    return _as_frame(list(read_segments(reader(url), model_name, **filters)))


def _as_frame(tables: list[pa.Table]) -> pd.DataFrame:
    """Segments as one frame, aligned by column name, text as text."""
    if not tables:
        return pd.DataFrame(columns=["model_name", "model_version", "route", *LOG_COLUMNS])
    table = pa.concat_tables(tables, promote_options="permissive")
    return pa.table({name: column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column
                     for name, column in zip(table.column_names, table.columns, strict=True)}).to_pandas()


# How far back in serving time a request's rows are gathered from its newest one: the service remembers a
# request id for at least this plus two flushes (its MLOPS_SERVING_REQUEST_ID_WINDOW_S), so two requests are
# never gathered as one.
LINEAGE_SPAN = timedelta(minutes=1)


def find_request(url: str | None, request_id: str, *, scan_segments: int = 2000,
                 after_match: timedelta = LINEAGE_SPAN) -> pd.DataFrame:
    """The logged rows of one request (every route that scored it: champion, canary, shadow), text as text.

    Segments are read newest first, and the search stops ``after_match`` of serving time past the first
    segment that holds the request (a shadow scores it within moments), or after ``scan_segments`` segments
    (the search is over the recent log; ``scan_segments=0`` reads it all)."""
    found: list[pa.Table] = []
    stop_before: datetime | None = None
    query = sa.select(SEGMENTS.c.model_name, SEGMENTS.c.model_version, SEGMENTS.c.route, SEGMENTS.c.served_to,
                      SEGMENTS.c.data).order_by(SEGMENTS.c.id.desc())
    if scan_segments:
        query = query.limit(scan_segments)
    with reader(url).connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=64).execute(query)
        for name, version, route, served_to, data in result:
            if stop_before is not None and _utc(served_to) < stop_before:
                break
            table = decode_segment(data)
            ids = table["request_id"].combine_chunks()
            position = pc.index(ids.dictionary, pa.scalar(request_id, pa.string())).as_py()
            if position < 0:
                continue
            matched = table.filter(pc.equal(ids.indices, pa.scalar(position, ids.indices.type)))
            found.append(_with_origin(matched, name, version, route))
            if stop_before is None:
                stop_before = _utc(served_to) - after_match
    return _as_frame(found[::-1])


@dataclass(frozen=True)
class ServedRequest:
    request_id: str
    served_at: datetime  # its latest row
    rows: int  # rows of it in the segments read
    route: str


def latest_requests(url: str | None, model_name: str, model_version: str, limit: int = 20,
                    scan_segments: int = 20) -> list[ServedRequest]:
    """The latest requests a model version answered (or scored in shadow), newest first: read from its
    newest ``scan_segments`` segments only."""
    query = (sa.select(SEGMENTS.c.route, SEGMENTS.c.data)
             .where((SEGMENTS.c.model_name == model_name) & (SEGMENTS.c.model_version == str(model_version)))
             .order_by(SEGMENTS.c.id.desc()).limit(scan_segments))
    found: dict[str, list] = {}
    with reader(url).connect() as connection:
        for route, data in connection.execute(query):
            table = decode_segment(data)
            for request_id, served_at in zip(reversed(table["request_id"].to_pylist()),
                                             reversed(table["served_at"].to_pylist()), strict=True):
                if request_id in found:
                    found[request_id][2] += 1
                elif len(found) < limit:
                    found[request_id] = [request_id, served_at, 1, route]
            if len(found) >= limit:
                break
    return [ServedRequest(*entry) for entry in found.values()]


def logged_rows(url: str | None = None, model_name: str | None = None, model_version: str | None = None) -> int:
    """Rows in the log (the sum of its segments' row counts), of one model or model version if given."""
    query = sa.select(sa.func.coalesce(sa.func.sum(SEGMENTS.c.rows), 0))
    if model_name is not None:
        query = query.where(SEGMENTS.c.model_name == model_name)
    if model_version is not None:
        query = query.where(SEGMENTS.c.model_version == model_version)
    with reader(url).connect() as connection:
        return int(connection.execute(query).scalar_one())
