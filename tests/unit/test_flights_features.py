import pandas as pd
import pytest

from pipelines.config import load_model_config
from pipelines.features.flights import build_examples, hours_of_day
from pipelines.ingest import cast_columns

CFG = load_model_config("flights_delay")
OUTCOMES = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}


@pytest.fixture(scope="module")
def january(flights_tables):
    feeds = {}
    for feed in CFG.feeds:
        table = flights_tables[feed.name]
        table = table[(table.month == 1) & (table.day <= 7)]
        feeds[feed.name] = cast_columns(table[list(feed.columns)], feed.columns, feed.name)
    return feeds


def test_one_example_per_flight_with_weather(january):
    examples = build_examples(january)
    assert len(examples) == len(january["flights"])
    assert examples["example_id"].is_unique
    assert examples["temp"].notna().mean() > 0.95


def test_no_outcome_is_a_feature():
    assert not OUTCOMES & set(CFG.features.inputs)


def test_label_counts_cancelled_and_late_flights(january):
    flights = january["flights"].iloc[:4].copy()
    flights["arr_delay"] = [5.0, 15.0, None, 60.0]
    examples = build_examples({"flights": flights, "weather": january["weather"]})
    on_time_id = build_examples({"flights": flights.iloc[:1], "weather": january["weather"]})["example_id"].item()
    delayed = examples.set_index("example_id")["delayed"]
    assert delayed[on_time_id] == 0 and delayed.sum() == 3


def test_label_ignores_features_of_the_outcome(january):
    """Changing departure and arrival outcomes changes only the label column."""
    changed = january["flights"].copy()
    changed["dep_delay"] = 999.0
    changed["arr_time"] = 1.0
    before, after = build_examples(january), build_examples({**january, "flights": changed})
    pd.testing.assert_frame_equal(before[CFG.features.inputs], after[CFG.features.inputs])


def test_hours_of_day():
    assert hours_of_day(pd.Series([0, 530, 1545, 2359])).round(3).tolist() == [0.0, 5.5, 15.75, 23.983]


def test_weather_is_the_last_complete_observation_before_the_prediction(january):
    """For one flight: changing the weather of its departure hour or the hour before changes none of its
    features; changing the observation WEATHER_LAG before departure does."""
    from pipelines.features.flights import WEATHER_LAG

    flight = january["flights"].iloc[[500]]
    origin, departs = flight["origin"].item(), flight["time_hour"].item()
    base = build_examples({"flights": flight, "weather": january["weather"]})
    assert base["temp"].notna().all()
    for lag, should_change in [(pd.Timedelta(0), False), (pd.Timedelta(hours=1), False), (WEATHER_LAG, True)]:
        weather = january["weather"].copy()
        hit = (weather["origin"] == origin) & (weather["time_hour"] == departs - lag)
        assert hit.sum() == 1
        weather.loc[hit, "temp"] = 999.0
        changed = build_examples({"flights": flight, "weather": weather})
        assert (changed["temp"].item() == 999.0) == should_change, lag

