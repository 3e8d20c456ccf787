"""Regenerate the flights models' suites, include/expectations/flights_delay.json (late or not) and
flights_arr_delay.json (arrival delay in minutes), from readable Python (run by hand, output committed)."""

import json
from pathlib import Path

from pipelines.drafting import expectation

CARRIERS = ["9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL", "HA", "MQ", "OO", "UA", "US", "VX", "WN", "YV"]
WEATHER_RANGES = {
    "temp": (-40, 130), "dewp": (-60, 100), "humid": (0, 100), "wind_dir": (0, 360),
    "wind_speed": (0, 120), "precip": (0, 10), "visib": (0, 10),
}
FEATURES = ["example_id", "time_hour", "month", "carrier", "origin", "dest", "distance", "sched_dep_hour",
            "sched_arr_hour", "day_of_week", *WEATHER_RANGES]


def common(columns: list[str], target: str) -> list[dict]:
    return [
        expectation("expect_table_columns_to_match_set", column_set=columns, exact_match=True),
        expectation("expect_table_row_count_to_be_between", min_value=100, max_value=5_000_000),
        expectation("expect_column_values_to_be_unique", column="example_id"),
        *[expectation("expect_column_values_to_not_be_null", column=c) for c in ["example_id", "time_hour", target]],
        expectation("expect_column_values_to_be_in_set", column="origin", value_set=["EWR", "JFK", "LGA"]),
        expectation("expect_column_values_to_be_in_set", column="carrier", value_set=CARRIERS),
        expectation("expect_column_values_to_match_regex", column="dest", regex=r"^[A-Z0-9]{3}$"),
        expectation("expect_column_values_to_be_between", column="distance", min_value=1, max_value=6000),
        expectation("expect_column_values_to_be_between", column="sched_dep_hour", min_value=0, max_value=24),
        expectation("expect_column_values_to_be_between", column="sched_arr_hour", min_value=0, max_value=24),
        expectation("expect_column_values_to_be_between", column="day_of_week", min_value=0, max_value=6),
        *[expectation("expect_column_values_to_be_in_type_list", column=c, type_list=["float64", "float"])
          for c in ["distance", "sched_dep_hour", "sched_arr_hour", "day_of_week", *WEATHER_RANGES]],
        *[expectation("expect_column_values_to_be_in_type_list", column=c, type_list=["object", "str", "string"])
          for c in ["carrier", "origin", "dest"]],
        # The seeds ask that no feature misses values in more than 5% of rows.
        *[expectation("expect_column_values_to_not_be_null", column=c, mostly=0.95)
          for c in ["carrier", "origin", "dest", "distance", "sched_dep_hour", "sched_arr_hour", "day_of_week",
                    *WEATHER_RANGES]],
        # Real sensors glitch (one 2013 wind reading is 1048 mph): allow one reading in a thousand out of range.
        *[expectation("expect_column_values_to_be_between", column=c, min_value=lo, max_value=hi, mostly=0.999)
          for c, (lo, hi) in WEATHER_RANGES.items()],
    ]


SUITES = {
    "flights_delay": [*common([*FEATURES, "delayed"], "delayed"),
                      expectation("expect_column_values_to_be_in_set", column="delayed", value_set=[0, 1])],
    # Minutes: early arrivals are negative; the longest 2013 delay was 1,272 minutes.
    "flights_arr_delay": [*common([*FEATURES, "arr_delay"], "arr_delay"),
                          expectation("expect_column_values_to_be_between", column="arr_delay", min_value=-120,
                                      max_value=2000)],
}
for model, expectations in SUITES.items():
    suite = {"name": f"{model}_examples", "expectations": expectations, "meta": {"model": model}}
    target = Path(__file__).resolve().parents[1] / "include" / "expectations" / f"{model}.json"
    target.write_text(json.dumps(suite, indent=2) + "\n")
    print(f"wrote {len(expectations)} expectations to {target}")
