"""Replay recorded data through the live system, as production would see it: land a day's files, send its
examples to the prediction service (with their event time), and land the actual outcomes later as the
labels feed. Used by ``scripts/simulate.py`` (a year of 2013) and by the monitoring integration tests.

The data set's specifics live in a *source* (``pipelines.features.flights.NycFlights13Replay``): anything
with ``land(landing_root, start, end)`` and ``examples(start, end)`` returning the model's feature columns,
its event-time column and its target.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date
from typing import Protocol

import httpx
import pandas as pd

from pipelines.config import ModelConfig, StatePaths
from pipelines.storage import write_parquet_atomic

log = logging.getLogger(__name__)


class ReplaySource(Protocol):
    def land(self, landing_root, start: date, end: date) -> dict[str, int]: ...

    def examples(self, start: date, end: date) -> pd.DataFrame: ...


def send_examples(client: httpx.Client, url: str, cfg: ModelConfig, examples: pd.DataFrame, request_prefix: str,
                  rows_per_request: int = 250) -> pd.DataFrame:
    """POST the examples to ``/invocations`` (dataframe_split, event time included) in chunks; return the
    served rows' (request_id, row_index, target) so their outcomes can be landed later. Each request's id is
    ``<prefix>-<model>-<replay>-<chunk>``: the service answers an id once, so a replay of the same days (or
    of another model on the same service) sends ids of its own."""
    columns = [*cfg.features.numeric, *cfg.features.categorical]
    event_time = cfg.features.event_time
    if event_time is None:
        raise ValueError(f"{cfg.name} has no event time: a replay sends each example with its event time")
    payload_frame = examples[columns].astype(object).where(examples[columns].notna(), None)
    times = examples[event_time].map(lambda t: t.isoformat() if pd.notna(t) else None)
    outcomes = []
    replay = uuid.uuid4().hex[:8]
    for number, begin in enumerate(range(0, len(examples), rows_per_request)):
        chunk = slice(begin, begin + rows_per_request)
        request_id = f"{request_prefix}-{cfg.name}-{replay}-{number:05d}"
        body = {"dataframe_split": {"columns": [*columns, event_time],
                                   "data": [[*row, t] for row, t in zip(payload_frame.iloc[chunk].values.tolist(),
                                                                          times.iloc[chunk].tolist(), strict=True)]}}
        response = client.post(f"{url}/invocations", json=body, headers={"X-Request-ID": request_id}, timeout=60)
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
