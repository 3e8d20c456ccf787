"""`mlops-loop replay --shift SPEC`: the SPEC grammar and the pure function that applies a shift."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.shifts import LABEL, Shift, ShiftSpecError, apply_shift, parse_shift, shift_tables

DAY = date(2024, 4, 10)


@pytest.mark.parametrize(("spec", "expected"), [
    ("area*1.5@2024-04-10", Shift("area", "scale", 1.5, DAY, spec="area*1.5@2024-04-10")),
    ("temp+10@2024-04-10", Shift("temp", "offset", 10.0, DAY, spec="temp+10@2024-04-10")),
    ("temp-2.5@2024-04-10", Shift("temp", "offset", -2.5, DAY, spec="temp-2.5@2024-04-10")),
    ("Year Remod/Add+3@2024-04-10", Shift("Year Remod/Add", "offset", 3.0, DAY, spec="Year Remod/Add+3@2024-04-10")),
    ("district=north:0.6@2024-04-10", Shift("district", "share", 0.6, DAY, "north", "district=north:0.6@2024-04-10")),
    ("Sale Type=WD :0@2024-04-10", Shift("Sale Type", "share", 0.0, DAY, "WD ", "Sale Type=WD :0@2024-04-10")),
    ("label+5@2024-04-10", Shift(LABEL, "offset", 5.0, DAY, spec="label+5@2024-04-10")),
    ("label:flip0.2@2024-04-10", Shift(LABEL, "flip", 0.2, DAY, spec="label:flip0.2@2024-04-10")),
    (" label*1.1@2024-04-10 ", Shift(LABEL, "scale", 1.1, DAY, spec="label*1.1@2024-04-10")),
])
def test_a_spec_parses_into_its_shift(spec, expected):
    assert parse_shift(spec) == expected


@pytest.mark.parametrize(("spec", "says"), [
    ("area*1.5", "has no @DAY"),
    ("area*1.5@10/04/2024", "is not a day (YYYY-MM-DD)"),
    ("area/2@2024-04-10", "does not parse: expected COLUMN*FACTOR@DAY"),
    ("area*@2024-04-10", "does not parse"),
    ("*2@2024-04-10", "does not parse"),
    ("district=north:1.5@2024-04-10", "a share is between 0 and 1, not 1.5"),
    ("district=:0.5@2024-04-10", "name the category"),
    ("price:flip0.2@2024-04-10", "only the label can be flipped"),
    ("label:flip2@2024-04-10", "a share is between 0 and 1"),
])
def test_a_bad_spec_is_refused_saying_what_is_wrong(spec, says):
    with pytest.raises(ShiftSpecError, match="shift") as refused:
        parse_shift(spec)
    assert says in str(refused.value) and isinstance(refused.value, ValueError)


def table(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "at": pd.Timestamp("2024-04-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 20, n)), unit="D"),
        "area": rng.normal(140, 40, n).round(1),
        "rooms": pd.array(rng.integers(1, 7, n), dtype="Int64"),
        "district": pd.array(rng.choice(["north", "south", "east", "west"], n, p=[0.1, 0.4, 0.3, 0.2]),
                             dtype="string"),
        "price": rng.normal(300_000, 50_000, n).round(0),
        "churn": rng.choice(["Yes", "No"], n),
    })


def after(frame: pd.DataFrame) -> np.ndarray:
    return (frame["at"] >= pd.Timestamp(DAY, tz="UTC")).to_numpy()


def test_scale_and_offset_change_only_the_rows_from_the_day_and_keep_the_type():
    frame = table()
    late = after(frame)
    scaled = apply_shift(frame, parse_shift("area*1.5@2024-04-10"), frame["at"], "price")
    np.testing.assert_allclose(scaled["area"][late], frame["area"][late] * 1.5)
    assert scaled["area"][~late].equals(frame["area"][~late]) and 0 < late.sum() < len(frame)
    rooms = apply_shift(frame, parse_shift("rooms*1.5@2024-04-10"), frame["at"], "price")
    assert str(rooms["rooms"].dtype) == "Int64"
    assert (rooms["rooms"][late] == (frame["rooms"][late].astype(float) * 1.5).round().astype("Int64")).all()
    labelled = apply_shift(frame, parse_shift("label-1000@2024-04-10"), frame["at"], "price")
    np.testing.assert_allclose(labelled["price"][late], frame["price"][late] - 1000)
    assert frame.equals(table())  # the frame given is left as it is


def test_a_share_change_reaches_the_share_from_the_day_and_moves_rows_from_or_to_the_others():
    frame = table()
    late = after(frame)
    more = apply_shift(frame, parse_shift("district=north:0.6@2024-04-10"), frame["at"], "price")
    assert abs((more["district"][late] == "north").mean() - 0.6) < 0.03
    assert more["district"][~late].equals(frame["district"][~late]) and str(more["district"].dtype) == "string"
    fewer = apply_shift(frame, parse_shift("district=south:0.1@2024-04-10"), frame["at"], "price")
    shares = fewer["district"][late].value_counts(normalize=True)
    assert abs(shares["south"] - 0.1) < 0.03
    # The rows moved out of south go to the others in their proportions (east 0.3 : west 0.2 : north 0.1).
    assert shares["east"] > shares["west"] > shares["north"]


def test_a_flip_changes_that_share_of_labels_to_another_class():
    frame = table()
    late = after(frame)
    flipped = apply_shift(frame, parse_shift("label:flip0.2@2024-04-10"), frame["at"], "churn", ["No", "Yes"])
    changed = (flipped["churn"] != frame["churn"]).to_numpy()
    assert abs(changed[late].mean() - 0.2) < 0.03 and not changed[~late].any()
    assert set(flipped["churn"]) == {"Yes", "No"}
    numbers = frame.assign(churn=(frame["churn"] == "Yes").astype("int64"))  # classes in the config are text
    flipped = apply_shift(numbers, parse_shift("label:flip1@2024-04-10"), frame["at"], "churn", ["0", "1"])
    assert flipped["churn"].dtype == "int64" and (flipped["churn"][late] == 1 - numbers["churn"][late]).all()


def test_which_rows_change_depends_on_each_row_not_on_how_the_history_is_cut():
    frame = table()
    shift = parse_shift("label:flip0.3@2024-04-10")
    whole = apply_shift(frame, shift, frame["at"], "churn", ["No", "Yes"])
    by_day = pd.concat([apply_shift(rows, shift, rows["at"], "churn", ["No", "Yes"])
                        for _, rows in frame.groupby(frame["at"].dt.floor("D"))])
    assert by_day.sort_index().equals(whole)


@pytest.mark.parametrize(("spec", "says"), [
    ("garden*2@2024-04-10", "no column 'garden'"),
    ("district*2@2024-04-10", "column 'district' is not numeric"),
    ("rooms=many:0.5@2024-04-10", "'many' is not a value of numeric column 'rooms'"),
])
def test_a_shift_that_does_not_fit_the_table_is_refused(spec, says):
    frame = table(200)
    with pytest.raises(ShiftSpecError, match=says):
        apply_shift(frame, parse_shift(spec), frame["at"], "price")


def test_shift_tables_changes_the_first_table_holding_the_column_or_none():
    frame = table(300)
    tables = {"sales": frame, "districts": frame[["at", "district"]]}
    times = {name: t["at"] for name, t in tables.items()}
    shifted = shift_tables(tables, times, parse_shift("district=north:1@2024-04-10"), "price")
    assert (shifted["sales"]["district"][after(frame)] == "north").all()
    assert shifted["districts"].equals(tables["districts"])
    assert shift_tables(tables, times, parse_shift("sched_hour+1@2024-04-10"), "price") is None
