"""MLflow's scoring protocol: the request bodies ``mlflow models serve`` accepts, parsed into plain column
lists (no DataFrame per request), checked against a model's signature and converted column by column into
arrays, and turned into one DataFrame per micro-batch in the scoring thread.

The usual body, ``dataframe_records`` holding exactly the model's columns with numbers in the numeric ones
and text in the others, takes a fast path (``RecordsDecoder``): msgspec decodes it straight into typed rows,
without a dict per row. Every other body takes the general path, which also names what is wrong.

A body over ``LARGE_BODY_BYTES`` is read in pieces, each a short call into a JSON library (``pieces``): the
service reads such a body in a worker thread, and a thread hands the interpreter to the event loop only
between calls, so one call over the whole body would hold every other request for as long as it runs."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import numpy as np
import orjson
import pandas as pd

if TYPE_CHECKING:
    from pipelines.prediction_store import TextCodes


class ModelColumns(Protocol):
    """What a request is checked against: a served model version's input columns, numeric and categorical."""

    @property
    def numeric(self) -> tuple[str, ...]: ...
    @property
    def categorical(self) -> tuple[str, ...]: ...
    @property
    def columns(self) -> tuple[str, ...]: ...


class BadRequest(ValueError):
    """The request cannot be scored; the message names the field (answered as a 400)."""


class UnsupportedMediaType(BadRequest):
    """The body is neither JSON nor CSV (answered as a 415, as ``mlflow models serve`` answers it)."""


@dataclass(frozen=True)
class Columns:
    """One request's rows, column by column, no DataFrame per request: as parsed, lists of the values sent;
    conformed to a model, a float64 array per numeric column and an object array (text or None) per other."""

    names: list[str]
    values: dict[str, Sequence]
    rows: int
    codes: dict[str, TextCodes] = field(default_factory=dict)  # text columns as the scoring model codes them


FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
LARGE_BODY_BYTES = 256 * 1024  # read in a worker thread, in pieces; a smaller body is read at once (a few ms)
PIECE_ROWS = 2000  # elements of an array decoded per call: a few milliseconds each


def pieces(elements: list[msgspec.Raw]) -> Iterator[tuple[int, bytes]]:
    """The elements (JSON values) as JSON arrays of ``PIECE_ROWS``, each with the position of its first."""
    for start in range(0, len(elements), PIECE_ROWS):
        yield start, b"[" + b",".join(elements[start:start + PIECE_ROWS]) + b"]"


_CONTAINER = msgspec.json.Decoder(dict[str, msgspec.Raw] | list[msgspec.Raw])


def _loads_in_pieces(raw: bytes | memoryview, levels: int) -> Any:
    """``orjson.loads(raw)``, for a large value in pieces: an object member by member and an array
    ``PIECE_ROWS`` elements at a time, down to ``levels`` levels of objects (a format, its columns and data).
    msgspec splits a container into its raw members without building them."""
    if levels == 0 or len(raw) <= LARGE_BODY_BYTES:
        return orjson.loads(raw)
    try:
        container = _CONTAINER.decode(raw)
    except msgspec.ValidationError:  # not an object or array
        return orjson.loads(raw)
    if isinstance(container, dict):
        return {key: _loads_in_pieces(memoryview(value), levels - 1) for key, value in container.items()}
    return [element for _, piece in pieces(container) for element in orjson.loads(piece)]


def _json(body: bytes) -> Any:
    """The JSON body as Python values (a large one in pieces); NaN and Infinity tokens allowed."""
    try:
        return _loads_in_pieces(body, 3)
    except (orjson.JSONDecodeError, msgspec.DecodeError, RecursionError) as exc:
        try:  # MLflow clients (and its saved input examples) may send NaN / Infinity tokens
            return json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter's stack
            raise BadRequest(f"malformed JSON: {exc}") from exc


def _from_records(records: Any, key: str) -> Columns:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadRequest(f"{key} must be a list of objects (one per row, keyed by column)")
    names = list(records[0]) if records else []
    if set(map(len, records)) == {len(names)}:
        try:  # every record has the first one's columns (the usual case): one pass in C per column
            return Columns(names, {n: list(map(itemgetter(n), records)) for n in names}, len(records))
        except KeyError:
            pass
    names = list(dict.fromkeys(chain.from_iterable(records)))
    return Columns(names, {n: [r.get(n) for r in records] for n in names}, len(records))


def parse_columns(body: bytes, content_type: str) -> Columns:
    """Every input format of ``mlflow models serve``: dataframe_split, dataframe_records, instances,
    inputs (JSON) and CSV."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if content_type == "text/csv":
        try:
            frame = pd.read_csv(io.BytesIO(body))
        except Exception as exc:
            raise BadRequest(f"malformed CSV body: {exc}") from exc
        frame = frame.astype(object).where(frame.notna(), None)
        return Columns([str(c) for c in frame.columns], {str(c): frame[c].tolist() for c in frame.columns}, len(frame))
    if content_type != "application/json":
        raise UnsupportedMediaType(f"unsupported content type {content_type or '(none)'!r}: send application/json "
                                   "or text/csv")
    payload = _json(body)
    if not isinstance(payload, dict):
        raise BadRequest("the JSON body must be an object with one of " + ", ".join(FORMATS))
    keys = [k for k in FORMATS if k in payload]
    if len(keys) != 1:
        raise BadRequest(f"give exactly one of {', '.join(FORMATS)} (got {keys})")
    key, data = keys[0], payload[keys[0]]
    if key == "dataframe_split":
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list) \
                or not isinstance(data.get("data"), list):
            raise BadRequest("dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)")
        names, rows = [str(c) for c in data["columns"]], data["data"]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise BadRequest(f"duplicate columns {duplicated}")
        if not all(isinstance(r, list) and len(r) == len(names) for r in rows):
            raise BadRequest(f"every row of dataframe_split.data must be a list of {len(names)} values")
        # Column by column (a call each), not zip(*rows): one call over every row would hold the interpreter.
        return Columns(names, {n: list(map(itemgetter(i), rows)) for i, n in enumerate(names)}, len(rows))
    if key == "inputs" and isinstance(data, dict):
        values = {str(k): v if isinstance(v, list) else [v] for k, v in data.items()}
        lengths = {len(v) for v in values.values()}
        if len(lengths) > 1:
            raise BadRequest(f"every column of inputs must have the same length, got lengths {sorted(lengths)}")
        return Columns(list(values), values, lengths.pop() if lengths else 0)
    return _from_records(data, key)


NUMBER_TYPES = frozenset({float, int, bool, type(None)})
TEXT_TYPES = frozenset({str, type(None)})


def _numeric_column(values: Sequence, column: str) -> np.ndarray:
    """The column as floats, missing values as NaN; value by value only when it holds other than numbers."""
    try:
        if set(map(type, values)) <= NUMBER_TYPES:
            return np.array(values, dtype=np.float64)  # None becomes NaN
        return np.array([_as_float(v, column) for v in values], dtype=np.float64)
    except OverflowError:
        raise BadRequest(f"column {column!r} holds a number too large for a float") from None


def _categorical_column(values: Sequence, column: str) -> np.ndarray:
    """The column as text or None; value by value only when it holds other than text."""
    if not set(map(type, values)) <= TEXT_TYPES:
        values = [_as_category(v, column) for v in values]
    return np.fromiter(values, dtype=object, count=len(values))


def _as_float(value: Any, column: str) -> float:
    if value is None:
        return float("nan")
    if type(value) in (float, int, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise BadRequest(f"column {column!r} must be numeric, got {value!r}")


def _as_category(value: Any, column: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if type(value) in (int, float, bool):
        return None if value != value else str(value)  # NaN is missing
    raise BadRequest(f"column {column!r} must hold scalar values, got {value!r}")


def split_event_time(columns: Columns, column: str | None) -> tuple[Columns, list[datetime | None] | None]:
    """Take the optional event-time column out of the request (it is logged, never scored)."""
    if not column or column not in columns.values:
        return columns, None
    names = [n for n in columns.names if n != column]
    return (Columns(names, {n: columns.values[n] for n in names}, columns.rows),
            event_times(columns.values[column], column))


def event_times(values: Sequence, column: str) -> list[datetime | None]:
    """The event-time column's values (ISO 8601 text or epoch seconds) as UTC times."""
    times = []
    for value in values:
        if value is None:
            times.append(None)
            continue
        try:
            stamp = datetime.fromtimestamp(value, UTC) if type(value) in (int, float) \
                else datetime.fromisoformat(value)
        except (TypeError, ValueError, OverflowError, OSError):
            raise BadRequest(f"column {column!r} must be an ISO 8601 time or epoch seconds, got {value!r}") from None
        # Stored in UTC: SQLite keeps a timestamp's wall time and drops its offset.
        times.append(stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC))
    return times


def conform_columns(columns: Columns, model: ModelColumns) -> Columns:
    """Check the request against the model signature and convert every value, naming the first bad field."""
    missing = [c for c in model.columns if c not in columns.values]
    if missing:
        raise BadRequest(f"missing columns {missing}; the model needs {list(model.columns)}")
    unknown = [c for c in columns.names if c not in model.columns]
    if unknown:
        raise BadRequest(f"unknown columns {unknown}; the model needs {list(model.columns)}")
    if columns.rows == 0:
        raise BadRequest("no rows to score")
    values = {c: _numeric_column(columns.values[c], c) for c in model.numeric}
    values.update({c: _categorical_column(columns.values[c], c) for c in model.categorical})
    return Columns(list(model.columns), values, columns.rows)


class RecordsDecoder:
    """The fast path for ``{"dataframe_records": [...]}`` whose rows hold exactly the model's columns (and, if
    the model has one, its event-time column), numbers or null in the numeric columns and text or null in the
    others: decoded by msgspec into typed rows (no dict per row), then into conformed columns. ``decode``
    answers None for any other body, which then takes the general path."""

    def __init__(self, numeric: tuple[str, ...], categorical: tuple[str, ...], event_time: str | None):
        self.numeric, self.categorical, self.event_time = numeric, categorical, event_time
        names = [*numeric, *categorical, *([event_time] if event_time else [])]
        fields = [(f"f{i}", float | None) for i in range(len(numeric))]
        fields += [(f"f{len(fields) + i}", str | None) for i in range(len(categorical))]
        if event_time:  # optional, as in the general path
            fields.append((f"f{len(fields)}", str | float | None | msgspec.UnsetType, msgspec.UNSET))
        # Positional field names: a column's name need not be an identifier.
        row = msgspec.defstruct("Row", fields, rename=dict(zip([f[0] for f in fields], names, strict=True)),
                                forbid_unknown_fields=True, gc=False)
        body = msgspec.defstruct("Records", [("dataframe_records", list[row])], forbid_unknown_fields=True)
        self._decoder = msgspec.json.Decoder(body)
        self._rows = msgspec.json.Decoder(list[row])
        self._getters = [attrgetter(f[0]) for f in fields]

    def _decode_rows(self, body: bytes) -> list:
        if len(body) <= LARGE_BODY_BYTES:
            return self._decoder.decode(body).dataframe_records
        records = _RAW_RECORDS.decode(body).dataframe_records
        return [row for _, piece in pieces(records) for row in self._rows.decode(piece)]

    def decode(self, body: bytes) -> tuple[Columns, list[datetime | None] | None] | None:
        """The rows conformed to the model, and their event times if sent; None if the body is not of this
        shape (or is malformed)."""
        try:
            rows = self._decode_rows(body)
        except (msgspec.DecodeError, RecursionError):
            return None
        if not rows:
            return None
        getters = iter(self._getters)
        values = {c: np.array(list(map(next(getters), rows)), dtype=np.float64) for c in self.numeric}
        values.update({c: np.fromiter(map(next(getters), rows), dtype=object, count=len(rows))
                       for c in self.categorical})
        times = None
        if self.event_time:
            sent = list(map(next(getters), rows))
            if any(v is not msgspec.UNSET for v in sent):  # the column is in the request
                times = event_times([None if v is msgspec.UNSET else v for v in sent], self.event_time)
        return Columns([*self.numeric, *self.categorical], values, len(rows)), times


_RAW_RECORDS = msgspec.json.Decoder(msgspec.defstruct("RawRecords", [("dataframe_records", list[msgspec.Raw])],
                                                      forbid_unknown_fields=True))


@lru_cache(maxsize=64)
def records_decoder(numeric: tuple[str, ...], categorical: tuple[str, ...], event_time: str | None) -> RecordsDecoder:
    return RecordsDecoder(numeric, categorical, event_time)


@dataclass(frozen=True)
class ScoringRequest:
    """One scoring request read for a model: its rows conformed to that model, the event times sent with them,
    and what it takes to conform them to another model (a shadow challenger)."""

    columns: Columns
    event_times: list[datetime | None] | None
    body: bytes
    content_type: str
    event_time: str | None
    conformed_to: tuple[tuple[str, ...], tuple[str, ...]]  # the model's numeric and categorical columns
    parsed: Columns | None = None  # the general path's parse, when it took the request

    def for_model(self, model: ModelColumns) -> Columns:
        """The rows conformed to ``model`` (raises ``BadRequest`` when they do not fit it)."""
        if (model.numeric, model.categorical) == self.conformed_to:
            return self.columns
        parsed = self.parsed or split_event_time(parse_columns(self.body, self.content_type), self.event_time)[0]
        return conform_columns(parsed, model)


def read_request(body: bytes, content_type: str, model: ModelColumns, event_time: str | None) -> ScoringRequest:
    """The request's rows conformed to ``model``, by the fast path when the body fits it (``RecordsDecoder``),
    else by the general one. Raises ``BadRequest`` naming what is wrong."""
    read = dict(body=body, content_type=content_type, event_time=event_time,
                conformed_to=(model.numeric, model.categorical))
    if content_type.split(";")[0].strip().lower() == "application/json":
        decoded = records_decoder(model.numeric, model.categorical, event_time).decode(body)
        if decoded is not None:
            return ScoringRequest(*decoded, **read)
    parsed, times = split_event_time(parse_columns(body, content_type), event_time)
    return ScoringRequest(conform_columns(parsed, model), times, parsed=parsed, **read)


def join_columns(batch: list[Columns]) -> Columns:
    """A micro-batch of conformed requests as one (the batcher's ``combine``): each column joined, and each text
    column's codes when every request has them against the same categories; joined once, for the scorer and
    the prediction log."""
    if len(batch) == 1:
        return batch[0]
    first = batch[0]
    codes = {}
    for name, first_codes in first.codes.items():
        parts = [part.codes.get(name) for part in batch]
        if all(p is not None and p.known is first_codes.known for p in parts):
            codes[name] = replace(first_codes, codes=np.concatenate([p.codes for p in parts]))
    values = {name: np.concatenate([part.values[name] for part in batch]) for name in first.values}
    return Columns(first.names, values, sum(p.rows for p in batch), codes)


def columns_frame(columns: Columns) -> pd.DataFrame:
    """The conformed rows as one DataFrame, columns in order."""
    return pd.DataFrame(columns.values, columns=columns.names)


def parse_frame(body: bytes, content_type: str) -> pd.DataFrame:
    """The request as a DataFrame (for callers outside the serving hot path)."""
    columns = parse_columns(body, content_type)
    return pd.DataFrame(columns.values, columns=columns.names)


def conform(frame: pd.DataFrame, model: ModelColumns) -> pd.DataFrame:
    """``conform_columns`` for a DataFrame (for callers outside the serving hot path)."""
    if frame.columns.duplicated().any():
        raise BadRequest(f"duplicate columns {sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})}")
    frame = frame.astype(object).where(frame.notna(), None)
    columns = Columns([str(c) for c in frame.columns], {str(c): frame[c].tolist() for c in frame.columns}, len(frame))
    return columns_frame(conform_columns(columns, model))
