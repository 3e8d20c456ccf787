"""The typed ``/predict`` request, read against the model's request schema (``models.request_model``) into
plain column lists.

The body is split into its rows by msgspec (raw JSON, no object per field), and the rows are validated by the
schema's row model ``PIECE_ROWS`` at a time: a big body, read in a worker thread, hands the interpreter to the
event loop between pieces instead of holding it for the whole body (see ``protocol``)."""

from __future__ import annotations

import re
import typing
from functools import lru_cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec
from pydantic import TypeAdapter, ValidationError

from pipelines.serving.protocol import Columns, conform_columns, pieces

if TYPE_CHECKING:
    from pipelines.serving.models import LoadedModel

MAX_SHOWN = 20  # invalid fields named in an answer; validation stops once a piece has brought this many


class InvalidRequest(ValueError):
    """The request does not match the schema; ``detail`` names each invalid field (answered as a 422)."""

    def __init__(self, detail: list[dict[str, str]], message: str):
        super().__init__(message)
        self.detail, self.message = detail, message


_ENVELOPE = msgspec.json.Decoder(msgspec.defstruct("Envelope", [("rows", list[msgspec.Raw])],
                                                   forbid_unknown_fields=True))


def _field(location: tuple) -> str:
    return ".".join(str(part) for part in location)


def _envelope_error(exc: Exception) -> InvalidRequest:
    """msgspec's error on the body's outer shape, naming the field as pydantic would: its ``$.rows[3]`` path
    as ``rows.3``, a missing or unknown field by its name."""
    message, _, path = str(exc).partition(" - at `$")
    location = [part for part in re.split(r"[.\[\]]", path.rstrip("`")) if part]
    named = re.fullmatch(r"Object (?:missing required|contains unknown) field `(.*)`", message)
    field = _field((*location, *([named.group(1)] if named else [])))
    return InvalidRequest([{"field": field, "message": message}], 'the body is not {"rows": [...]}: ' + message)


class TypedRequestReader:
    """Reads one model's typed request (``schema``: its ``request_model``)."""

    def __init__(self, schema: type):
        self.schema = schema
        (row,) = typing.get_args(schema.model_fields["rows"].annotation)
        self.names = list(row.model_fields)
        self._rows = TypeAdapter(list[row])

    def read(self, body: bytes) -> Columns:
        """The rows, column by column as sent (validated: numbers as floats or None, text or None). Raises
        ``InvalidRequest`` naming the fields (``rows.<i>.<field>``) of the first pieces that hold any."""
        try:
            raw_rows = _ENVELOPE.decode(body).rows
        except (msgspec.DecodeError, RecursionError) as exc:
            raise _envelope_error(exc) from None
        if not raw_rows:  # the schema's own error (at least one row)
            try:
                self.schema.model_validate({"rows": []})
            except ValidationError as exc:
                detail = [{"field": _field(e["loc"]), "message": e["msg"]} for e in exc.errors(include_url=False)]
                raise InvalidRequest(detail, f"{len(detail)} invalid field(s)") from None
        values: dict[str, list[Any]] = {name: [] for name in self.names}
        columns = [(values[name].extend, attrgetter(name)) for name in self.names]
        detail: list[dict[str, str]] = []
        unchecked_from = None
        for start, piece in pieces(raw_rows):
            if len(detail) >= MAX_SHOWN:
                unchecked_from = start
                break
            try:
                rows = self._rows.validate_json(piece)
            except ValidationError as exc:
                detail += [{"field": _field(("rows", start + e["loc"][0], *e["loc"][1:])), "message": e["msg"]}
                           for e in exc.errors(include_url=False)]
                continue
            if not detail:
                for extend, value in columns:
                    extend(map(value, rows))
        if detail:
            rest = "" if unchecked_from is None else f" in the first {unchecked_from} rows (the rest not checked)"
            raise InvalidRequest(detail[:MAX_SHOWN], f"{len(detail)} invalid field(s){rest}")
        return Columns(list(self.names), values, len(raw_rows))


@lru_cache(maxsize=64)
def typed_reader(schema: type) -> TypedRequestReader:
    return TypedRequestReader(schema)


def read_typed_request(body: bytes, model: LoadedModel) -> Columns:
    """The typed request's rows conformed to ``model``; raises ``InvalidRequest`` naming the fields."""
    return conform_columns(typed_reader(model.request_schema).read(body), model)
