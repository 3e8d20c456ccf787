"""Known changes injected into a replayed history from a given day, for drills (``mlops-loop replay --shift``).

A SPEC names a column (or ``label``, the model's target), a change and the first day it applies to (event
time, UTC)::

    COLUMN*FACTOR@DAY        scale a numeric column:                  area*1.5@2024-04-10
    COLUMN+AMOUNT@DAY        offset it (COLUMN-AMOUNT@DAY the other way): temp+10@2013-06-01
    COLUMN=VALUE:SHARE@DAY   the share of one category becomes SHARE (0 to 1): district=north:0.6@2024-04-10
    label+AMOUNT@DAY         shift a regression's target (label*FACTOR@DAY scales it): a concept change
    label:flipSHARE@DAY      that share of a classifier's labels change class: label:flip0.2@2013-06-01

Which rows change is decided by each row's own content (a hash of its other columns), so a row is shifted
the same way however the history is cut into days or windows. A share change moves rows into the category
(from the others) or out of it (into the others, in their proportions), over the rows it is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

LABEL = "label"  # the model's target, whatever its column is called
ShiftKind = Literal["scale", "offset", "share", "flip"]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_FLIP = re.compile(rf"^(?P<column>.+):flip(?P<share>{_NUMBER})$")
_SHARE = re.compile(rf"^(?P<column>[^=]+)=(?P<value>.*):(?P<share>{_NUMBER})$")
_ARITHMETIC = re.compile(rf"^(?P<column>.+)(?P<op>[*+-])(?P<amount>{_NUMBER})$")
GRAMMAR = ("COLUMN*FACTOR@DAY, COLUMN+AMOUNT@DAY, COLUMN-AMOUNT@DAY, COLUMN=VALUE:SHARE@DAY or "
           "label:flipSHARE@DAY (label is the model's target; DAY is YYYY-MM-DD)")


class ShiftSpecError(ValueError):
    """A --shift SPEC that does not parse, or that does not fit the data it is applied to."""


@dataclass(frozen=True)
class Shift:
    """One injected change: ``kind`` of ``column`` (``LABEL``: the target) by ``amount`` from day ``since``.

    scale: values times ``amount``; offset: values plus ``amount``; share: the share of category ``value``
    becomes ``amount``; flip: a share ``amount`` of the labels change class."""

    column: str
    kind: ShiftKind
    amount: float
    since: date
    value: str | None = None
    spec: str = ""

    def resolved_column(self, target: str) -> str:
        return target if self.column == LABEL else self.column


def parse_shift(spec: str) -> Shift:
    """A Shift from its SPEC (see the module's doc), or ShiftSpecError saying what is wrong and the grammar."""
    text = spec.strip()
    change, at, day = text.rpartition("@")
    if not at:
        raise ShiftSpecError(f"shift {spec!r} has no @DAY: expected {GRAMMAR}")
    try:
        since = date.fromisoformat(day.strip())
    except ValueError:
        raise ShiftSpecError(f"shift {spec!r}: {day!r} is not a day (YYYY-MM-DD)") from None
    if match := _FLIP.match(change):
        column, kind, amount, value = match["column"], "flip", float(match["share"]), None
        if column.strip() != LABEL:
            raise ShiftSpecError(f"shift {spec!r}: only the label can be flipped (label:flipSHARE@DAY)")
    elif match := _SHARE.match(change):
        column, kind, amount, value = match["column"], "share", float(match["share"]), match["value"]
        if not value:
            raise ShiftSpecError(f"shift {spec!r}: name the category whose share changes (COLUMN=VALUE:SHARE@DAY)")
    elif match := _ARITHMETIC.match(change):
        column, amount, value = match["column"], float(match["amount"]), None
        kind = "scale" if match["op"] == "*" else "offset"
        amount = -amount if match["op"] == "-" else amount
    else:
        raise ShiftSpecError(f"shift {spec!r} does not parse: expected {GRAMMAR}")
    column = column.strip()
    if not column:
        raise ShiftSpecError(f"shift {spec!r} names no column: expected {GRAMMAR}")
    if kind in ("share", "flip") and not 0 <= amount <= 1:
        raise ShiftSpecError(f"shift {spec!r}: a share is between 0 and 1, not {amount:g}")
    if not np.isfinite(amount):
        raise ShiftSpecError(f"shift {spec!r}: {amount} is not a finite number")
    return Shift(column=column, kind=kind, amount=amount, since=since, value=value, spec=text)


def apply_shift(frame: pd.DataFrame, shift: Shift, times: pd.Series, target: str,
                classes: list | None = None) -> pd.DataFrame:
    """``frame`` with ``shift`` applied to its rows whose time (``times``, aligned with the frame) falls on or
    after the shift's day; the other rows, and the frame given, are left as they are. ``target`` is the column
    ``label`` stands for; ``classes`` the labels a flip chooses from (default: those in the frame). An integer
    column stays integer (rounded). ShiftSpecError when the column is missing or of the wrong kind."""
    column = shift.resolved_column(target)
    if column not in frame.columns:
        raise ShiftSpecError(f"shift {shift.spec!r}: no column {column!r} "
                             f"(columns: {', '.join(map(str, frame.columns))})")
    when = pd.to_datetime(times, utc=True)
    affected = (when >= pd.Timestamp(shift.since, tz="UTC")).to_numpy() & frame[column].notna().to_numpy()
    shifted = frame.copy()
    if not affected.any():
        return shifted
    values = frame[column]
    if shift.kind in ("scale", "offset"):
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise ShiftSpecError(f"shift {shift.spec!r}: column {column!r} is not numeric ({values.dtype})")
        numbers = values.astype("float64")
        changed = numbers * shift.amount if shift.kind == "scale" else numbers + shift.amount
        if pd.api.types.is_integer_dtype(values):
            changed = changed.round()
        shifted[column] = numbers.where(~affected, changed).astype(values.dtype)
        return shifted
    draw, pick = row_uniforms(frame.drop(columns=[column]))
    if shift.kind == "flip":
        labels = list(classes) if classes is not None else list(pd.unique(values.dropna()))
        if len(labels) < 2:
            raise ShiftSpecError(f"shift {shift.spec!r}: the label {column!r} has fewer than two classes to flip "
                                 "between (a flip is for classifiers)")
        text = [str(label) for label in labels]
        position = values.astype(str).map({t: i for i, t in enumerate(text)})
        flip = affected & (draw < shift.amount) & position.notna().to_numpy()
        # Each flipped label becomes one of the other classes, chosen by the row's second number.
        other = np.floor(pick * (len(labels) - 1)).astype(int)
        current = position.fillna(-1).to_numpy().astype(int)
        chosen = np.where(other < current, other, other + 1)
        typed = np.asarray([category_value(values, label, shift.spec) for label in text], dtype=object)
        shifted[column] = replaced(values, flip, typed[chosen[flip]])
        return shifted
    return _change_share(shifted, values, column, shift, affected, draw, pick)


def _change_share(shifted: pd.DataFrame, values: pd.Series, column: str, shift: Shift, affected: np.ndarray,
                  draw: np.ndarray, pick: np.ndarray) -> pd.DataFrame:
    text = values.astype(str).to_numpy()
    is_value = affected & (text == shift.value)
    current = is_value.sum() / affected.sum()
    others = pd.Series(values[affected & ~is_value]).value_counts(normalize=True)
    if shift.amount > current:
        move = affected & ~is_value & (draw < (shift.amount - current) / (1 - current))
        shifted[column] = replaced(values, move, category_value(values, shift.value, shift.spec))
    elif shift.amount < current:
        if others.empty:
            raise ShiftSpecError(f"shift {shift.spec!r}: column {column!r} has no other category to move rows to")
        move = is_value & (draw < (current - shift.amount) / current)
        bounds = others.cumsum().to_numpy()
        chosen = np.minimum(np.searchsorted(bounds, pick[move], side="right"), len(bounds) - 1)
        shifted[column] = replaced(values, move, others.index.to_numpy()[chosen])
    return shifted


def replaced(values: pd.Series, mask: np.ndarray, new) -> pd.Series:
    """``values`` with the rows of ``mask`` set to ``new``, in the column's own type."""
    changed = values.astype(object).to_numpy().copy()
    changed[mask] = new
    return pd.Series(changed, index=values.index, name=values.name).astype(values.dtype)


def category_value(values: pd.Series, text: str, spec: str):
    """The value of the column written ``text``: as it appears in the column, else converted to its type."""
    present = values[values.astype(str) == text]
    if not present.empty:
        return present.iloc[0]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        try:
            return pd.Series([float(text)]).astype(values.dtype).iloc[0]
        except (ValueError, TypeError):
            raise ShiftSpecError(f"shift {spec!r}: {text!r} is not a value of numeric column "
                                 f"{values.name!r}") from None
    return text


def row_uniforms(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Two numbers in [0, 1) per row, from the row's content alone (the same row draws the same numbers in
    any frame): one decides whether the row changes, the other what it becomes."""
    scale = float(2**64)
    draw = pd.util.hash_pandas_object(frame, index=False, hash_key="replay-shift-one").to_numpy() / scale
    pick = pd.util.hash_pandas_object(frame, index=False, hash_key="replay-shift-two").to_numpy() / scale
    return draw, pick


def shift_tables(tables: Mapping[str, pd.DataFrame], times: Mapping[str, pd.Series], shift: Shift, target: str,
                 classes: list | None = None) -> dict[str, pd.DataFrame] | None:
    """The tables with the shift applied to the first that holds its column (so what lands, what is served
    and the outcomes agree; a key shared with a later table, as a join column, stays as it is there), or None
    when none does: the column is computed by the feature builder, and the examples are shifted instead."""
    column = shift.resolved_column(target)
    holding = next((name for name, table in tables.items() if column in table.columns), None)
    if holding is None:
        return None
    return {name: apply_shift(table, shift, times[name], target, classes) if name == holding else table
            for name, table in tables.items()}
