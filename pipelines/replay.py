"""Replay a model's recorded history through the live system, as production would see it (``mlops-loop
replay``): land each day's rows, send its examples to the model's own route of the prediction service (with
their event time), land the actual outcomes later as the labels feed, judge every window with the model's
monitoring DAG, follow the retrains it starts, and end with the timeline and the retrains table.

The history comes from a *source* (``pipelines.sources.ReplaySource``): anything with ``days()``,
``land(landing_root, start, end)`` and ``examples(start, end)`` returning the model's feature columns, its
event-time column and its target.
``TableReplay`` is built from the model config alone over files of its feeds (the later history of a table
``mlops-loop init`` drafted); the example data sets have their own (``pipelines.sources``). Where the DAGs
run is a ``WindowRuns`` the caller gives: the stack's Airflow (``pipelines.airflow_edge.stack_runs``, from
``mlops-loop replay``), or in process in the tests.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

import httpx
import pandas as pd

from pipelines.config import ModelConfig, StatePaths
from pipelines.shifts import Shift, apply_shift, shift_tables
from pipelines.sources import ReplaySource, built_in_history
from pipelines.storage import write_parquet_atomic

log = logging.getLogger(__name__)


class WindowRuns(Protocol):
    """Where a model's DAGs run for a replay."""

    def monitor(self, window_start: date, window_end: date) -> str:
        """Run ``monitor_<model>`` on the window to its end; its final state."""

    def follow_training(self, run_id: str) -> str:
        """Wait for the ``train_<model>`` run the monitor started; its final state."""

    def training_state(self, run_id: str) -> str | None:
        """The state of a ``train_<model>`` run now (None: no such run)."""


@dataclass(frozen=True)
class ReplayPlan:
    """Days [start, end) judged in windows of ``every`` days; day D's outcomes land once day D +
    ``label_delay_days`` has been served."""

    start: date
    end: date
    every: int
    label_delay_days: int = 1

    def windows(self) -> list[tuple[date, date]]:
        if self.every < 1 or self.label_delay_days < 0:
            raise ValueError(f"--every must be at least 1 and --label-delay-days at least 0 (got {self.every}, "
                             f"{self.label_delay_days})")
        if self.start >= self.end:
            raise ValueError(f"nothing to replay: start {self.start} is not before end {self.end}")
        starts = pd.date_range(self.start, self.end, freq=f"{self.every}D", inclusive="left").date
        return [(begin, min(begin + timedelta(days=self.every), self.end)) for begin in starts]


@dataclass(frozen=True)
class ReplayedWindow:
    start: date
    end: date
    served: int
    monitor_state: str
    row: dict | None              # the window's monitoring row, if the run wrote one
    training_state: str | None    # the retrain it started, followed to its end


def model_route(url: str, cfg: ModelConfig) -> str:
    return f"{url.rstrip('/')}/models/{cfg.model_name}/invocations"


def send_examples(client: httpx.Client, url: str, cfg: ModelConfig, examples: pd.DataFrame, request_prefix: str,
                  rows_per_request: int = 250) -> pd.DataFrame:
    """POST the examples to the model's ``/models/<name>/invocations`` (dataframe_split, event time included)
    in chunks; return the served rows' (request_id, row_index, target) so their outcomes can be landed later.
    Each request's id is ``<prefix>-<model>-<replay>-<chunk>``: the service answers an id once, so a replay of
    the same days (or of another model on the same service) sends ids of its own."""
    columns = [*cfg.features.numeric, *cfg.features.categorical]
    event_time = cfg.features.event_time
    if event_time is None:
        raise ValueError(f"{cfg.name} has no event time: a replay sends each example with its event time")
    payload_frame = examples[columns].astype(object).where(examples[columns].notna(), None)
    times = examples[event_time].map(lambda t: t.isoformat() if pd.notna(t) else None)
    outcomes = []
    replay = uuid.uuid4().hex[:8]
    route = model_route(url, cfg)
    for number, begin in enumerate(range(0, len(examples), rows_per_request)):
        chunk = slice(begin, begin + rows_per_request)
        request_id = f"{request_prefix}-{cfg.name}-{replay}-{number:05d}"
        body = {"dataframe_split": {"columns": [*columns, event_time],
                                   "data": [[*row, t] for row, t in zip(payload_frame.iloc[chunk].values.tolist(),
                                                                          times.iloc[chunk].tolist(), strict=True)]}}
        response = client.post(route, json=body, headers={"X-Request-ID": request_id}, timeout=60)
        response.raise_for_status()
        served = len(response.json()["predictions"])
        outcomes.append(pd.DataFrame({"request_id": request_id, "row_index": range(served),
                                      cfg.features.target: examples[cfg.features.target].iloc[chunk].to_numpy()}))
    return pd.concat(outcomes, ignore_index=True) if outcomes else pd.DataFrame(
        columns=["request_id", "row_index", cfg.features.target])


def land_outcomes(cfg: ModelConfig, state: StatePaths, day: date, outcomes: pd.DataFrame) -> None:
    """The labels feed: one Parquet file per day, written atomically."""
    folder = state.landing(cfg.name, cfg.monitoring.labels_feed)
    write_parquet_atomic(outcomes.reset_index(drop=True), folder / f"{day.isoformat()}.parquet")


def replay_days(cfg: ModelConfig, state: StatePaths, source: ReplaySource, url: str, start: date, end: date,
                client: httpx.Client | None = None, labels: bool = True) -> dict:
    """Land, serve and (unless ``labels`` is False: outcomes not known yet) label every day of [start, end).
    Outcomes not landed are returned under ``pending`` (day -> outcomes), to land later with land_outcomes."""
    owned = client is None
    client = client or httpx.Client()
    served, pending = 0, {}
    try:
        source.land(state.landing_root(cfg.landing_name), start, end)
        for day in pd.date_range(start, end, freq="D", inclusive="left").date:
            examples = source.examples(day, day + pd.Timedelta(days=1))
            outcomes = send_examples(client, url, cfg, examples, request_prefix=day.isoformat())
            served += len(outcomes)
            if labels:
                land_outcomes(cfg, state, day, outcomes)
            else:
                pending[day] = outcomes
    finally:
        if owned:
            client.close()
    log.info("replayed %s..%s: %d rows served", start, end, served)
    return {"rows_served": served, "pending": pending}


def answered_rows(cfg: ModelConfig, start: date, end: date) -> int:
    """Rows of [start, end) of event time that the prediction log holds as answered (champion or canary; a
    shadow's scores were never returned)."""
    from pipelines.monitoring_tasks import day_start
    from pipelines.prediction_store import read_segments, reader

    return sum(table.num_rows for table in read_segments(reader(), cfg.model_name, day_start(start), day_start(end))
               if table["route"][0].as_py() != "shadow")


LoggedRows = Callable[[ModelConfig, date, date], int]


def wait_until_logged(cfg: ModelConfig, start: date, end: date, served: int, logged_rows: LoggedRows = answered_rows,
                      timeout_s: float = 60.0, poll_s: float = 0.5) -> None:
    """Wait until the service's log holds the ``served`` rows of the window: its writer flushes every second or
    so (and retries a busy store later), and a monitor run started before that would judge part of the window."""
    deadline = time.monotonic() + timeout_s
    while (logged := logged_rows(cfg, start, end)) < served:
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{cfg.name}: the prediction log holds {logged} of the {served} rows served for {start}..{end} "
                f"after {timeout_s:g} s: is the service logging to the store this command reads "
                "($MLOPS_PREDICTION_LOG_URL), and is that store reachable? The service's /metrics shows its "
                "log's backlog and spilled rows.")
        time.sleep(poll_s)


def replay_windows(cfg: ModelConfig, state: StatePaths, source: ReplaySource, url: str, plan: ReplayPlan,
                   runs: WindowRuns, say: Callable[[str], None] = print, tick: Callable[[], object] = lambda: None,
                   client: httpx.Client | None = None, logged_rows: LoggedRows = answered_rows) -> list[ReplayedWindow]:
    """Replay ``plan`` window by window: land the window's days, serve each day and land its outcomes after
    the delay, wait until the service's log holds what it answered (``logged_rows``), run the monitor on the
    window, and when it starts a retrain, wait for it, so the next window is served by whatever champion the
    gate left in place. ``say`` gets a line per window, ``tick`` a call per
    day served. The outcomes still pending at the end are landed."""
    from pipelines import monitoring_store as store

    owned = client is None
    client = client or httpx.Client()
    pending: dict[date, pd.DataFrame] = {}
    replayed = []
    try:
        for window_start, window_end in plan.windows():
            source.land(state.landing_root(cfg.landing_name), window_start, window_end)
            served = 0
            for day in pd.date_range(window_start, window_end, freq="D", inclusive="left").date:
                examples = source.examples(day, day + timedelta(days=1))
                if not examples.empty:
                    pending[day] = send_examples(client, url, cfg, examples, request_prefix=day.isoformat())
                    served += len(pending[day])
                for ready in [d for d in pending if d <= day - timedelta(days=plan.label_delay_days)]:
                    land_outcomes(cfg, state, ready, pending.pop(ready))
                tick()
            wait_until_logged(cfg, window_start, window_end, served, logged_rows)
            monitor_state = runs.monitor(window_start, window_end)
            engine = store.engine()
            try:
                with engine.connect() as connection:
                    row = next((r for r in store.load_windows(connection, cfg.name, since=window_end)
                                if r["window_start"] == window_start and r["window_end"] == window_end), None)
            finally:
                engine.dispose()
            say(window_line(cfg, window_start, window_end, served, monitor_state, row))
            training = None
            if row and row["decision"] == "retrain" and row["triggered_run_id"]:
                say(f"    retrain: {str(row['reason'])[:200]}")
                training = runs.follow_training(row["triggered_run_id"])
                say(f"    training run {row['triggered_run_id']}: {training}")
            replayed.append(ReplayedWindow(window_start, window_end, served, monitor_state, row, training))
        for ready in sorted(pending):
            land_outcomes(cfg, state, ready, pending.pop(ready))
    finally:
        if owned:
            client.close()
    return replayed


def window_line(cfg: ModelConfig, start: date, end: date, served: int, monitor_state: str, row: dict | None) -> str:
    """One window of the replay in a line: rows served, the monitor's state, and its numbers and decision."""
    import json

    line = f"{start}..{end}: served {served:5d}, monitor {monitor_state}"
    if not row:
        return line
    details = json.loads(row["details"]) if isinstance(row.get("details"), str) else (row.get("details") or {})
    metric = cfg.margin_metric
    value = (details.get("realized") or {}).get(metric)
    drift = row.get("drift_share")
    return (line + (f", drift share {drift:.2f}" if drift is not None else "")
            + (f", realized {metric} {value:.3f}" if value is not None else "")
            + f", champion v{row['model_version']}: {row['decision']}")


def retrain_outcomes(cfg: ModelConfig, rows: list[dict], runs: WindowRuns):
    """Each retrain the monitoring DAG started: its run's state, the gate's decision, the new version."""
    from pipelines.timeline import Retrain
    from pipelines.tracking import mlflow_client
    from pipelines.training_outcomes import training_outcomes

    retrains = [row for row in rows if row["decision"] == "retrain" and row["triggered_run_id"]]
    if not retrains:
        return []
    made = training_outcomes(mlflow_client(), cfg.model_name, cfg.name, [r["triggered_run_id"] for r in retrains])
    return [Retrain.started(row["window_end"], row["reason"], run_id, runs.training_state(run_id) or "not started",
                            made[run_id])
            for row in retrains for run_id in [row["triggered_run_id"]]]


def write_replay_report(cfg: ModelConfig, state: StatePaths, plan: ReplayPlan, runs: WindowRuns) -> dict:
    """The timeline (PNG and HTML) and the retrains table of the windows of ``plan``, under
    ``reports/<model>/replay/``; returns the windows, the retrains and the paths."""
    from pipelines import monitoring_store as store
    from pipelines.timeline import windows_frame, write_timeline

    engine = store.engine()
    try:
        with engine.connect() as connection:
            rows = [r for r in store.load_windows(connection, cfg.name, since=plan.start)
                    if r["window_start"] >= plan.start and r["window_end"] <= plan.end]
    finally:
        engine.dispose()
    windows = windows_frame(rows)
    retrains = retrain_outcomes(cfg, rows, runs)
    paths = write_timeline(cfg, windows, retrains, state.reports(cfg.name) / "replay")
    return {"windows": windows, "retrains": retrains, "paths": paths}


class TableReplay:
    """A model's history from tables of its feeds, replayed by the model config alone: each feed's rows land
    by their day of time (the event time, or the feed's one datetime column) through the code ``mlops-loop
    land`` uses (without its Asset event: the replay's trainings are the ones the monitor starts), and a day's
    examples are what the model's own feature builder makes of the feeds' rows of that day and the day before,
    kept by their event time. With a ``shift``, the change applies to the feed
    holding its column before anything lands (so the landed days, the served examples and the outcomes
    agree), or, for a column the builder computes, to the examples."""

    def __init__(self, cfg: ModelConfig, tables: Mapping[str, pd.DataFrame], shift: Shift | None = None,
                 sources: Mapping[str, str] | None = None, keep_replaced: bool = False) -> None:
        from pipelines.features import examples_builder

        if cfg.features.event_time is None:
            raise ValueError(f"{cfg.name} has no event time: its history cannot be replayed day by day")
        missing = [feed.name for feed in cfg.feeds if feed.name not in tables]
        if missing:
            raise ValueError(f"no table for feed(s) {missing} of {cfg.name}")
        self.cfg, self.shift, self.keep_replaced = cfg, shift, keep_replaced
        self.sources = dict(sources or {})
        self.time_columns = {feed.name: feed_time_column(cfg, feed.name) for feed in cfg.feeds}
        self.tables = {name: tables[name].reset_index(drop=True) for name in self.time_columns}
        self.times = {name: pd.to_datetime(table[self.time_columns[name]], utc=True)
                      for name, table in self.tables.items()}
        shifted = shift_tables(self.tables, self.times, shift, cfg.features.target, self.classes) if shift else None
        self.shift_examples = shift is not None and shifted is None
        self.tables = shifted or self.tables
        self.build = examples_builder(cfg)

    @classmethod
    def from_files(cls, cfg: ModelConfig, files: Mapping[str, Path], shift: Shift | None = None,
                   keep_replaced: bool = False) -> TableReplay:
        """The feeds' tables read from ``files`` (feed -> CSV or Parquet) with the strict reader of ``mlops-loop
        land``: each held to its feed's columns and types exactly."""
        from pipelines.landing import read_batch

        unknown = sorted(set(files) - {feed.name for feed in cfg.feeds})
        if unknown:
            raise ValueError(f"{cfg.name} has no feed(s) {unknown} (its feeds: {[f.name for f in cfg.feeds]})")
        tables = {feed.name: read_batch(Path(files[feed.name]), feed) for feed in cfg.feeds if feed.name in files}
        return cls(cfg, tables, shift, {name: str(path) for name, path in files.items()}, keep_replaced)

    @property
    def classes(self) -> list | None:
        return list(self.cfg.features.classes) if self.cfg.features.classes else None

    def days(self) -> list[date]:
        """Every day (UTC) some feed has rows of."""
        stamps = pd.concat([times.dt.floor("D") for times in self.times.values()]).dropna().unique()
        return sorted(pd.Timestamp(stamp).date() for stamp in stamps)

    def _rows(self, name: str, start: date, end: date) -> pd.DataFrame:
        times = self.times[name]
        return self.tables[name][((times >= pd.Timestamp(start, tz="UTC"))
                                  & (times < pd.Timestamp(end, tz="UTC"))).to_numpy()]

    def land(self, landing_root, start: date, end: date) -> dict[str, int]:
        """Land the feeds' rows of [start, end), one file per day, as ``mlops-loop land`` does (a day already
        landed with the same rows is left as it is; with other rows it is refused, or, with ``keep_replaced``,
        replaced and its old file kept in the feed's ``replaced/`` folder). Files written per feed."""
        from pipelines.landing import land_table

        written = {}
        for name, column in self.time_columns.items():
            rows = self._rows(name, start, end)
            folder = Path(landing_root) / name
            if rows.empty:
                written[name] = 0
                continue
            landed = land_table(rows, folder, column, source=self.sources.get(name, f"the {name} history"),
                                keep_replaced_in=folder / "replaced" if self.keep_replaced else None)
            written[name] = len(landed.written)
        return written

    def examples(self, start: date, end: date) -> pd.DataFrame:
        """The examples whose event time lies in [start, end), built by the model's builder from the feeds'
        rows of [start - 1 day, end)."""
        event_time = self.cfg.features.event_time
        feeds = {name: self._rows(name, start - timedelta(days=1), end) for name in self.tables}
        if all(rows.empty for rows in feeds.values()):
            return pd.DataFrame(columns=[*self.cfg.features.inputs, event_time, self.cfg.features.target])
        built = self.build(feeds)
        times = pd.to_datetime(built[event_time], utc=True)
        kept = built[((times >= pd.Timestamp(start, tz="UTC")) & (times < pd.Timestamp(end, tz="UTC"))).to_numpy()]
        kept = kept.assign(**{event_time: times[kept.index]}).reset_index(drop=True)
        if self.shift_examples:
            kept = apply_shift(kept, self.shift, kept[event_time], self.cfg.features.target, self.classes)
        return kept


def feed_time_column(cfg: ModelConfig, feed_name: str) -> str:
    """The column a feed's rows land by: the model's event time if the feed has it, else the feed's only
    datetime column; else ValueError."""
    feed = next(f for f in cfg.feeds if f.name == feed_name)
    if cfg.features.event_time in feed.columns:
        return cfg.features.event_time
    datetimes = [column for column, kind in feed.columns.items() if kind == "datetime"]
    if len(datetimes) != 1:
        raise ValueError(f"feed {feed_name!r} of {cfg.name} has {len(datetimes)} datetime columns and not the event "
                         f"time {cfg.features.event_time!r}: a replay lands a feed's rows by the day of one time")
    return datetimes[0]


def default_start(cfg: ModelConfig, state: StatePaths, source: ReplaySource) -> date:
    """The first day of the source's history whose files have not landed yet (the days the champion may have
    been trained on are landed; the history after them has not)."""
    from pipelines.ingest import landed_files

    folder = state.landing(cfg.landing_name, cfg.feeds[0].name)
    for day in source.days():
        if not landed_files(folder, day, day + timedelta(days=1)):
            return day
    raise ValueError(f"every day of the history has landed already under {folder}: give --start")


def check_shift(cfg: ModelConfig, shift: Shift) -> None:
    """ShiftSpecError unless the shift's column is one of the model's feed columns, inputs or target."""
    from pipelines.shifts import ShiftSpecError

    column = shift.resolved_column(cfg.features.target)
    known = {c for feed in cfg.feeds for c in feed.columns} | {*cfg.features.inputs, cfg.features.target}
    if column not in known:
        raise ShiftSpecError(f"shift {shift.spec!r}: {cfg.name} has no column {column!r} in its feeds or features")


def replay_source(cfg: ModelConfig, sources: list[str], shift: Shift | None = None,
                  keep_replaced: bool = False) -> ReplaySource:
    """The history a replay lands and serves: files ``FILE`` (a single-feed model) or ``FEED=FILE``, read as
    ``mlops-loop land`` reads a batch; with none, the built-in history of a model built on an example data
    set's feeds (``pipelines.sources``: the flights' 2013)."""
    if cfg.features.event_time is None:
        raise ValueError(f"{cfg.name} has no event time: its history cannot be replayed day by day")
    if not sources:
        if (history := built_in_history(cfg, shift)) is not None:
            return history
        raise ValueError(f"give the history to replay: --source FILE (a .csv or .parquet file of {cfg.name}'s table, "
                         "as `mlops-loop land` takes)")
    feeds = [feed.name for feed in cfg.feeds]
    files: dict[str, Path] = {}
    for text in sources:
        feed, separator, path = text.partition("=")
        if separator and feed in feeds:
            files[feed] = Path(path)
        elif len(feeds) == 1:
            files[feeds[0]] = Path(text)
        else:
            raise ValueError(f"{cfg.name} has feeds {feeds}: give each as --source FEED=FILE (got {text!r})")
    missing = [feed for feed in feeds if feed not in files]
    if missing:
        raise ValueError(f"no --source for feed(s) {missing} of {cfg.name}: give each as --source FEED=FILE")
    return TableReplay.from_files(cfg, files, shift, keep_replaced)
