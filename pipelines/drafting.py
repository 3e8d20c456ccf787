"""Draft a model from a user's own table: what ``mlops-loop init`` writes for review.

Reads the table once and infers, column by column, the type each landed file must have and the role each
column plays (a numeric or categorical feature, the target, the event time, an example id, or nothing a
model can use, and why): numbers written as text are numbers, dates written as text are never categories,
a column empty in every row is dropped, a time-like number (a year, a fractional date, a counter, an
increasing id: monotone in the event time) is neither a feature nor bounded in the suite. It asks the task
types which one the target fits (``pipelines.task_types.infer_task_type``), and profiles a Great
Expectations suite from the data. Pure: the command in ``pipelines.cli`` reads the file and writes the
drafts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

# Text columns with at most this many distinct values are categories; more, and they are ids or free text.
MAX_CATEGORIES = 200
# Value sets are written into the suite for categories with at most this many values.
MAX_VALUE_SET = 50
# A number whose rank correlation with the event time reaches this is time-like: later rows lie past its
# drafted range. So is one that never steps back as the event time advances and whose earliest and latest
# TIME_LIKE_EDGE_SHARE of rows share no value: a year, a counter of few values. Judged on at least
# MIN_TIME_LIKE_ROWS rows.
TIME_LIKE_RANK_CORRELATION = 0.95
TIME_LIKE_EDGE_SHARE = 0.05
MIN_TIME_LIKE_ROWS = 20
# The rank correlation is estimated on at most this many rows, evenly spread in event time (ranking every
# row of a large table, column by column, is what would make drafting slow).
RANK_CORRELATION_ROWS = 100_000
# Dates written in another layout than ISO 8601 (03/15/2010, 15.03.2010, 2010/03/15), a time of day allowed.
OTHER_DATE_TEXT = re.compile(r"(\d{1,2}[/.]\d{1,2}[/.]\d{4}|\d{4}/\d{1,2}/\d{1,2})([ T].*)?")
TIME_NAME = re.compile(r"(^|_)(time|date|datetime|timestamp|ts|day|at)$|_at$|^date|^time", re.IGNORECASE)
ID_NAME = re.compile(r"(^|_)id$|^id(_|$)|[a-z]Id$|ID$", re.IGNORECASE)


class DraftError(ValueError):
    """The table cannot be drafted as asked (the message says which column and why)."""


@dataclass(frozen=True)
class ColumnRole:
    name: str
    kind: str          # the feed type: int, float, string or datetime
    role: str          # numeric, categorical, target, event_time, id, time_like, dropped
    why: str = ""      # for dropped columns and inferred roles: a comment in the config


@dataclass(frozen=True)
class ModelDraft:
    name: str
    task: str  # a task type's name
    task_reason: str
    rows: int
    columns: list[ColumnRole]
    target: str
    event_time: str | None
    example_id: str | None
    classes: list[str] | None
    positive_class: str | None
    positive_reason: str
    slices: list[str]
    start_date: date
    default_interval: tuple[date, date] | None
    holdout_days: int | None = None
    validation_days: int | None = None
    window_days: int = 1  # days of traffic one monitoring run judges
    window_rows: int | None = None  # about how many rows such a window holds at the table's pace
    gate_floors: dict[str, float] = field(default_factory=dict)
    gate_reason: str = ""
    suite: dict = field(default_factory=dict)

    def by_role(self, role: str) -> list[str]:
        return [c.name for c in self.columns if c.role == role]


def feed_kind(series: pd.Series) -> str:
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_bool_dtype(series):
        return "string"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        present = series.dropna()
        return "int" if len(present) and bool(np.all(np.mod(present, 1) == 0)) and series.isna().sum() == 0 \
            else "float"
    return "string"


def looks_like_times(series: pd.Series) -> bool:
    """A datetime column, or text whose values are (nearly all) ISO 8601 dates or times, judged on a sample."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
        return False
    sample = series.dropna().head(1000).astype(str)
    if sample.empty or not sample.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        return False
    try:
        parsed = pd.to_datetime(sample, utc=True, errors="coerce", format="ISO8601")
    except (ValueError, TypeError):
        return False
    return parsed.notna().mean() >= 0.99


def looks_like_other_dates(series: pd.Series) -> bool:
    """Text whose values are (nearly all) dates in a layout other than ISO 8601, judged on a sample: the
    event time is read as ISO 8601 only, so such a column is neither the event time nor a category."""
    if not _is_text(series):
        return False
    sample = series.dropna().head(1000).astype(str).str.strip()
    if sample.empty or not sample.str.fullmatch(OTHER_DATE_TEXT.pattern).all():
        return False
    return pd.to_datetime(sample, errors="coerce", format="mixed").notna().mean() >= 0.99


def looks_like_numbers(series: pd.Series) -> bool:
    """Text whose every value is a number as ``ingest.numbers_from_text`` reads it ("12.5", "1,234"); codes
    written with a leading zero ("01234": a zip code, an account) stay text."""
    from pipelines.ingest import numbers_from_text

    if not _is_text(series):
        return False
    present = series.dropna()
    if present.empty:
        return False
    try:
        numbers_from_text(present.head(100))  # where most text columns fail, cheaply
        numbers_from_text(present)
    except (ValueError, TypeError):
        return False
    return not has_leading_zero(present)


LEADING_ZERO = r"[+-]?0\d"  # "01234", "-007": a code (a zip code, an account), where a number has no leading zero


def has_leading_zero(text: pd.Series) -> bool:
    """Whether any of these values, as text, is written with a leading zero."""
    return bool(text.dropna().astype(str).str.strip().str.match(LEADING_ZERO).any())


def with_numbers(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The table with its columns of numbers written as text read as numbers, and those columns' names (a
    landed file's text is read the same way, by the feed's declared int or float type)."""
    from pipelines.ingest import numbers_from_text

    as_text = [c for c in frame.columns if looks_like_numbers(frame[c])]
    if not as_text:
        return frame, []
    return frame.assign(**{c: numbers_from_text(frame[c]).astype("float64") for c in as_text}), as_text


def _is_text(series: pd.Series) -> bool:
    return (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)) \
        and not pd.api.types.is_bool_dtype(series)


def with_event_time(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, str | None]:
    """The table with its event-time column (if it has one) parsed to UTC timestamps, and that column's name.
    Parsing is the costly part of drafting a large table: done once, here; a parsed column is kept as is."""
    event_time = find_event_time(frame, target)
    if event_time is None or isinstance(frame[event_time].dtype, pd.DatetimeTZDtype):
        return frame, event_time
    return frame.assign(**{event_time: pd.to_datetime(frame[event_time], utc=True, errors="coerce",
                                                      format="ISO8601")}), event_time


def infer_task(target: pd.Series, name: str) -> tuple[str, str]:
    """The name of the task type the target fits, and why."""
    from pipelines.task_types import TargetError, infer_task_type

    present = target.dropna()
    if present.empty:
        raise DraftError(f"target column {name!r} holds no values")
    if present.nunique() < 2:
        raise DraftError(f"target column {name!r} holds the single value {present.iloc[0]!r}: there is nothing "
                         "to learn")
    try:
        task_type, why = infer_task_type(present.rename(name))
    except TargetError as exc:
        raise DraftError(str(exc)) from None
    return task_type.name, f"{name!r} {why}"


@dataclass(frozen=True)
class EventOrder:
    """The rows that have an event time, in event-time order: sorted once per table, shared by the columns."""

    name: str
    positions: np.ndarray  # row positions, earliest event first
    stamps: np.ndarray     # their event times as int64 nanoseconds, ascending

    @classmethod
    def of(cls, times: pd.Series, name: str) -> EventOrder:
        present = times.notna().to_numpy()
        stamps = pd.DatetimeIndex(times[present]).asi8
        order = np.argsort(stamps, kind="stable")
        return cls(name, np.flatnonzero(present)[order], stamps[order])


def _first_of_each_time(stamps: np.ndarray) -> np.ndarray:
    """Where each event time's rows begin in ascending ``stamps``."""
    return np.flatnonzero(np.r_[True, np.diff(stamps) != 0])


def _mean_ranks(stamps: np.ndarray) -> np.ndarray:
    """The ranks of ascending ``stamps``, tied times sharing their mean rank."""
    starts = _first_of_each_time(stamps)
    sizes = np.diff(np.r_[starts, len(stamps)])
    return np.repeat(starts + (sizes - 1) / 2, sizes)


def _steps_with_time(values: np.ndarray, starts: np.ndarray) -> bool:
    """Whether ``values`` (in event-time order, each event time's rows beginning at ``starts``) never fall, or
    never rise, from one event time to the next, and their earliest and latest ``TIME_LIKE_EDGE_SHARE`` of
    rows share no value."""
    low, high = np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)
    edge = math.ceil(TIME_LIKE_EDGE_SHARE * len(values))
    earliest, latest = values[:edge], values[-edge:]
    rising = (high[:-1] <= low[1:]).all() and earliest.max() < latest.min()
    falling = (low[:-1] >= high[1:]).all() and earliest.min() > latest.max()
    return bool(rising or falling)


def time_like_reason(series: pd.Series, events: EventOrder | None) -> str | None:
    """Why a numeric column is time-like (later rows lie past its drafted range), or None. With an event
    time: the column moves with it, a rank correlation of at least ``TIME_LIKE_RANK_CORRELATION`` either way,
    or it steps with it: it never falls (or never rises) as the event time advances, rows of one event time
    in any order, and its earliest and latest ``TIME_LIKE_EDGE_SHARE`` of rows share no value (a year, a
    counter of few values; not a column that is zero but in a few early rows).
    Without one, row order proves nothing of floats or repeated values: only integers unique in every row
    and rising row by row (a row number, an increasing id) are time-like."""
    add_back = "later rows go past its range, so the suite does not bound it; add it to features.numeric to " \
               "use it as a feature"
    if events is None:
        if feed_kind(series) != "int" or series.isna().any() or len(series) < MIN_TIME_LIKE_ROWS:
            return None
        if not (series.is_monotonic_increasing and series.is_unique):
            return None
        return f"an integer rising row by row (a row number or an increasing id): {add_back}"
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64")[events.positions]
    present = ~np.isnan(values)
    values, stamps = values[present], events.stamps[present]
    if len(values) < MIN_TIME_LIKE_ROWS or values.min() == values.max():
        return None
    starts = _first_of_each_time(stamps)
    if len(starts) < 3:
        return None  # too few event times to move with
    every = -(-len(values) // RANK_CORRELATION_ROWS)
    sample, sampled_stamps = values[::every], stamps[::every]
    correlation = float(np.corrcoef(pd.Series(sample).rank().to_numpy(), _mean_ranks(sampled_stamps))[0, 1])
    # nan when the sample holds one time or one value: then the steps alone tell
    if not abs(correlation) >= TIME_LIKE_RANK_CORRELATION and not _steps_with_time(values, starts):
        return None
    rises = correlation > 0 if math.isfinite(correlation) else values[-1] > values[0]
    measured = f" (rank correlation {correlation:.2f})" if math.isfinite(correlation) else ""
    return f"{'rises' if rises else 'falls'} with {events.name}{measured}: {add_back}"


def column_roles(frame: pd.DataFrame, target: str, event_time: str | None,
                 numbers_as_text: tuple[str, ...] | list[str] = ()) -> list[ColumnRole]:
    """Each column's feed type and role (``numbers_as_text``: the columns ``with_numbers`` read as numbers;
    ``event_time``: a column parsed by ``with_event_time``)."""
    roles = []
    rows = len(frame)
    id_taken = False
    events = EventOrder.of(frame[event_time], str(event_time)) if event_time else None
    for name in frame.columns:
        series = frame[name]
        kind = feed_kind(series)
        if name == target:
            roles.append(ColumnRole(name, kind, "target"))
            continue
        if name == event_time:
            roles.append(ColumnRole(name, "datetime", "event_time", "orders the examples: a time-based split"))
            continue
        present = series.dropna()
        distinct = present.nunique()
        if distinct == 0:
            roles.append(ColumnRole(name, kind, "dropped", "empty in every row: nothing to learn from"))
        elif distinct == 1 and kind == "string" and len(present) < rows:
            roles.append(ColumnRole(name, kind, "categorical", f"{present.iloc[0]!r} or missing: a flag"))
        elif distinct == 1:
            roles.append(ColumnRole(name, kind, "dropped", "one single value: nothing to learn from"))
        elif kind == "datetime" or looks_like_times(series):
            roles.append(ColumnRole(name, "datetime", "dropped", "a time: not a feature as it is"))
        elif looks_like_other_dates(series):
            roles.append(ColumnRole(name, kind, "dropped", f"dates written as text ({present.iloc[0]!r}), not ISO "
                                    "8601: not a feature as they are (written as YYYY-MM-DD, they can be the "
                                    "event time)"))
        elif not id_taken and distinct == rows and kind in ("int", "string") and (
                ID_NAME.search(str(name)) or kind == "string"):
            id_taken = True
            roles.append(ColumnRole(name, kind, "id", "unique in every row: names an example, not a feature"))
        elif kind in ("int", "float") and (time_like := time_like_reason(series, events)):
            roles.append(ColumnRole(name, kind, "time_like", time_like))
        elif kind in ("int", "float"):
            roles.append(ColumnRole(name, kind, "numeric", "numbers written as text" if name in numbers_as_text
                                    else ""))
        elif distinct > MAX_CATEGORIES or distinct > 0.5 * rows:
            roles.append(ColumnRole(name, kind, "dropped", f"{distinct} distinct texts: an identifier or free text"))
        else:
            roles.append(ColumnRole(name, kind, "categorical"))
    return roles


def find_event_time(frame: pd.DataFrame, target: str) -> str | None:
    """A column of times that orders the examples, preferring names like ``*_time``, ``date``, ``*_at``."""
    candidates = [c for c in frame.columns if c != target and looks_like_times(frame[c])]
    if not candidates:
        return None
    named = [c for c in candidates if TIME_NAME.search(str(c))]
    return (named or candidates)[0]


def draft_model(frame: pd.DataFrame, target: str, name: str, task: str | None = None,
                today: date | None = None) -> ModelDraft:
    """Everything ``mlops-loop init`` writes for ``frame`` (its event time parsed by ``with_event_time``, or
    not yet)."""
    if target not in frame.columns:
        raise DraftError(f"target column {target!r} is not in the table (its columns: {list(frame.columns)})")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise DraftError(f"model name {name!r} must be lower case letters, digits and _, starting with a letter")
    if frame.empty:
        raise DraftError("the table has no rows")
    frame, numbers_as_text = with_numbers(frame)
    inferred, reason = infer_task(frame[target], target)
    if task is None:
        task = inferred
    else:
        reason = f"set by TASK= (the data suggests {inferred}: {reason})" if task != inferred else reason
    frame, event_time = with_event_time(frame, target)
    roles = column_roles(frame, target, event_time, numbers_as_text)
    ids = [r.name for r in roles if r.role == "id"]
    from pipelines.task_types import TargetError, task_type_named

    try:
        drafted = task_type_named(task).draft_target(frame[target])
    except TargetError as exc:
        raise DraftError(str(exc)) from None
    categorical = [r.name for r in roles if r.role == "categorical"]
    slices = [c for c in categorical if frame[c].nunique() <= 12][:2]
    today = today or date.today()
    interval = None
    holdout_days = validation_days = None
    if event_time:
        days = frame[event_time].dt.tz_convert("UTC").dt.date
        first, last = days.min(), days.max()
        interval = (first, last + pd.Timedelta(days=1).to_pytimedelta())
        span = (last - first).days + 1
        if span < 42:  # the defaults (14 + 7 days) would leave too little to train on
            holdout_days, validation_days = max(1, span // 6), max(1, span // 6)
        start = first
        window_days, window_rows = monitoring_window(days)
    else:
        start = today
        window_days, window_rows = 1, None
    draft = ModelDraft(name=name, task=task, task_reason=reason, rows=len(frame), columns=roles, target=target,
                       event_time=event_time, example_id=ids[0] if ids else None, classes=drafted.classes,
                       positive_class=drafted.positive_class, positive_reason=drafted.positive_reason,
                       slices=slices, start_date=start, default_interval=interval, holdout_days=holdout_days,
                       validation_days=validation_days, window_days=window_days, window_rows=window_rows,
                       gate_floors=drafted.gate_floors,
                       gate_reason=drafted.gate_reason)
    return draft_with_suite(draft, frame)


# the expectation suite ---------------------------------------------------------------------------------------
def expectation(kind: str, meta: str = "", **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": {"notes": meta} if meta else {}}


def _bound(value: float, kind: str, down: bool) -> float | int:
    return math.floor(value) if down else math.ceil(value) if kind == "int" else round(value, 6)


def profile_suite(frame: pd.DataFrame, draft: ModelDraft) -> dict:
    """A Great Expectations suite profiled from the table: its column set and types, non-null shares with
    headroom, numeric bounds with a margin as wide as each tail (not for time-like columns: later rows lie past
    them), value sets of low-cardinality columns, row-count bounds."""
    expectations = [
        expectation("expect_table_columns_to_match_set", column_set=[c.name for c in draft.columns], exact_match=True),
        expectation("expect_table_row_count_to_be_between", "a batch is at least one row; far more than the "
                    "drafted table is suspicious", min_value=1, max_value=max(1000, 100 * len(frame))),
    ]
    for column in draft.columns:
        name, series = column.name, frame[column.name]
        if column.role == "dropped":
            continue
        missing = float(series.isna().mean())
        if column.role in ("target", "id", "event_time") or missing == 0:
            strict = column.role in ("target", "id", "event_time")
            expectations.append(expectation(
                "expect_column_values_to_not_be_null", "never missing in the drafted table",
                column=name, **({} if strict else {"mostly": 0.95})))
        else:
            mostly = max(0.0, math.floor((1 - missing - max(0.05, missing)) * 100) / 100)
            expectations.append(expectation(
                "expect_column_values_to_not_be_null", f"{missing:.1%} missing in the drafted table",
                column=name, mostly=mostly))
        if column.role == "id":
            expectations.append(expectation("expect_column_values_to_be_unique", column=name))
        if column.role == "numeric" or (column.role == "target" and draft.classes is None):
            values = pd.to_numeric(series, errors="coerce").dropna()
            low, high, middle = float(values.min()), float(values.max()), float(values.median())
            # Headroom on each side of at least the median's distance to that extreme: a long tail's next
            # batch goes past the table's extreme now and then, a unit or sentinel change goes far past.
            least = 0.1 * (high - low) or abs(high) * 0.1 or 1.0
            upper = high + max(least, high - middle)
            lower = low - max(least, middle - low)
            lower = lower if low < 0 or lower >= 0 else 0.0
            expectations.append(expectation(
                "expect_column_values_to_be_between",
                f"drafted range {low:g} .. {high:g} (median {middle:g}), widened on each side by the median's "
                "distance to that end (at least 10% of the range)",
                column=name, min_value=_bound(lower, column.kind, True),
                max_value=_bound(upper, column.kind, False), mostly=0.999))
            expectations.append(expectation("expect_column_values_to_be_in_type_list", column=name,
                                            type_list=["float64", "float", "int64", "int"]))
        elif column.role == "time_like":
            expectations.append(expectation(
                "expect_column_values_to_be_in_type_list", "time-like: its type, no bounds", column=name,
                type_list=["float64", "float", "int64", "int"]))
        elif column.role == "target" and draft.classes is not None:
            # Labels in the type a landed file gives them (an int column stays int), so the set compares.
            labels = sorted({int(v) for v in series.dropna()}) if column.kind == "int" else \
                sorted({str(v) for v in series.dropna()})
            expectations.append(expectation(
                "expect_column_values_to_be_in_set", "the classes of the drafted table", column=name,
                value_set=labels))
        elif column.role == "categorical":
            # Missing values count as another type: allow as many as the not-null expectation does.
            expectations.append(expectation("expect_column_values_to_be_in_type_list", column=name,
                                            type_list=["object", "str", "string"], **({} if missing == 0 else {
                                                "mostly": max(0.0, math.floor((1 - missing - max(0.05, missing))
                                                                              * 100) / 100)})))
            values = sorted({str(v) for v in series.dropna().astype(str)})
            if len(values) <= MAX_VALUE_SET:
                expectations.append(expectation(
                    "expect_column_values_to_be_in_set", "the values of the drafted table; a new one in 1% of "
                    "rows passes", column=name, value_set=values, mostly=0.99))
    return {"name": f"{draft.name}_examples", "expectations": expectations,
            "meta": {"model": draft.name, "drafted_by": "mlops-loop init", "rows_profiled": len(frame)}}


WINDOW_CHOICES = (1, 7, 14, 28)


def monitoring_window(days: pd.Series) -> tuple[int, int]:
    """The fewest days of traffic (1, 7, 14 or 28) whose window holds the monitor's ``min_rows`` at the table's
    median pace (rows per day with rows), and the rows such a window holds."""
    from pipelines.config import MonitoringConfig

    per_day = float(days.value_counts().median())
    needed = MonitoringConfig().min_rows
    window = next((d for d in WINDOW_CHOICES if per_day * d >= needed), WINDOW_CHOICES[-1])
    return window, int(per_day * window)


def draft_with_suite(draft: ModelDraft, frame: pd.DataFrame) -> ModelDraft:
    from dataclasses import replace

    return replace(draft, suite=profile_suite(frame, draft))


# the config ------------------------------------------------------------------------------------------------
def _yaml_list(values: list[str], indent: int = 4, width: int = 110) -> str:
    """A flow list, wrapped onto indented lines when long."""
    items = [_scalar(v) for v in values]
    lines, current = [], "["
    for number, item in enumerate(items):
        piece = item + ("," if number < len(items) - 1 else "")
        if len(current) + len(piece) + 1 > width and current.strip() != "[":
            lines.append(current.rstrip())
            current = " " * indent
        current += piece + " "
    return "\n".join([*lines, current.rstrip() + "]"])


def _scalar(value) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def render_config(draft: ModelDraft, source: str) -> str:
    """The model config as a commented YAML file that says only what differs from the defaults."""
    lines = [
        f"# Drafted by `mlops-loop init` from {source} ({draft.rows:,} rows). Review it, then commit it with",
        f"# expectations/{draft.name}.json. Everything not written here takes its default (pipelines/config.py).",
        f"name: {draft.name}",
        f"task: {draft.task}  # inferred: {draft.task_reason}",
        "feeds:",
        f"  - name: {draft.name}",
    ]
    if draft.example_id:
        lines.append(f"    key: [{draft.example_id}]  # unique in every row: a re-landed row replaces the old one")
    lines.append("    columns:")
    for column in draft.columns:
        note = f"  # not used by the model: {column.why}" if column.role in ("dropped", "time_like") else \
            f"  # {column.why}" if column.why and column.role in ("numeric", "categorical") else ""
        lines.append(f"      {_scalar(column.name)}: {column.kind}{note}")
    lines += [
        "features:",
        f"  numeric: {_yaml_list(draft.by_role('numeric'))}",
        f"  categorical: {_yaml_list(draft.by_role('categorical'))}",
        f"  target: {_scalar(draft.target)}",
    ]
    if draft.classes is not None:
        lines.append(f"  classes: {_yaml_list(draft.classes)}")
    if draft.positive_class is not None:
        lines.append(f"  positive_class: {_scalar(draft.positive_class)}  # {draft.positive_reason}")
    if draft.example_id:
        lines.append(f"  example_id: {_scalar(draft.example_id)}")
    if draft.event_time:
        lines.append(f"  event_time: {_scalar(draft.event_time)}  # a time-based split: train on the past, "
                     "hold out the latest days")
    else:
        lines.append("  # No event time in the table: a seeded random split, stratified for classifiers "
                     "(split.holdout_fraction, split.validation_fraction: 0.15 each).")
    if draft.slices:
        lines.append(f"  slices: {_yaml_list(draft.slices)}  # evaluated apart; gate them with gate.slice_floors")
    if draft.holdout_days is not None:
        lines += ["split:  # the table spans few days: a shorter validation and holdout than 7 and 14 days",
                  f"  holdout_days: {draft.holdout_days}", f"  validation_days: {draft.validation_days}"]
    if draft.gate_floors:
        floors = ", ".join(f"{k}: {v}" for k, v in draft.gate_floors.items())
        lines += ["gate:", f"  floors: {{{floors}}}  # {draft.gate_reason}"]
    if draft.window_days != 1:
        lines += [f"monitoring:  # about {draft.window_rows} rows a window at the table's pace: a day holds too few "
                  "to judge (min_rows: 200)", f"  window_days: {draft.window_days}"]
    lines.append(f"start_date: {draft.start_date.isoformat()}")
    if draft.default_interval:
        start, end = draft.default_interval
        lines.append(f"default_interval: [{start.isoformat()}, {end.isoformat()}]  # the days of the drafted table")
    lines.append(f"tags: [{draft.task}]")
    return "\n".join(lines) + "\n"
