"""`mlops-loop init`: the drafts it writes from a user's table, and the table it lands."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import init
from pipelines.config import StatePaths, load_model_config
from pipelines.drafting import DraftError, draft_model, render_config
from pipelines.validation import validate_frame


def churn(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A customer table: an id, no time, a Yes/No target, text and numbers with some missing values."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, size=n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], size=n, p=[0.5, 0.3, 0.2])
    charges = rng.normal(70, 20, size=n).round(2)
    charges[::37] = np.nan
    churned = (rng.random(n) < np.where(contract == "Month-to-month", 0.45, 0.1) + 0.002 * (72 - tenure))
    return pd.DataFrame({"customerID": [f"{i:04d}-ABCD" for i in range(n)], "gender": rng.choice(["F", "M"], n),
                         "tenure": tenure, "Contract": contract, "MonthlyCharges": charges,
                         "Churn": np.where(churned, "Yes", "No"), "constant": "same"})


def test_a_customer_table_is_drafted_without_time_and_with_its_id_kept_out_of_the_features():
    draft = draft_model(churn(), "Churn", "churn")
    assert draft.task == "binary" and draft.positive_class == "Yes" and draft.classes == ["No", "Yes"]
    assert draft.event_time is None and draft.example_id == "customerID"
    assert set(draft.by_role("numeric")) == {"tenure", "MonthlyCharges"}
    assert set(draft.by_role("categorical")) == {"gender", "Contract"}
    assert draft.by_role("dropped") == ["constant"]


@pytest.mark.parametrize(("values", "task"), [
    (np.arange(914) * 1000.0 + 50_000, "regression"),         # 914 house prices, not 914 classes
    (np.random.default_rng(0).normal(size=914), "regression"),
    (np.tile(["red", "green", "blue"], 300), "multiclass"),
    (np.tile([1, 2, 3, 4], 200), "multiclass"),
    (np.tile([True, False], 300), "binary"),
])
def test_the_task_type_is_inferred_from_the_target(values, task):
    frame = pd.DataFrame({"x": np.arange(len(values)), "target": values})
    assert draft_model(frame, "target", "m").task == task


def test_task_can_be_overridden_and_a_bad_target_is_named():
    frame = pd.DataFrame({"x": range(100), "y": [1, 2] * 50})
    assert draft_model(frame, "y", "m", task="regression").task == "regression"
    with pytest.raises(DraftError, match="'missing' is not in the table"):
        draft_model(frame, "missing", "m")
    with pytest.raises(DraftError, match="single value"):
        draft_model(frame.assign(y=1), "y", "m")
    with pytest.raises(DraftError, match="'y' fits no task type .*regression: it holds text, not numbers"):
        draft_model(frame.assign(y=[f"ticket {i}" for i in range(100)]), "y", "m")


def test_an_event_time_is_found_and_gives_a_time_split():
    frame = churn().assign(signup_date=pd.date_range("2024-01-01", periods=600, freq="6h").strftime("%Y-%m-%d %H:%M"))
    draft = draft_model(frame, "Churn", "churn")
    assert draft.event_time == "signup_date"
    assert draft.default_interval == (pd.Timestamp("2024-01-01").date(), pd.Timestamp("2024-05-30").date())


def test_the_profiled_suite_passes_its_own_table_and_catches_a_bad_batch():
    frame = churn()
    draft = draft_model(frame, "Churn", "churn")
    kinds = {c.name: c.kind for c in draft.columns}
    from pipelines.features import single_table
    from pipelines.ingest import cast_columns

    examples = single_table({"churn": cast_columns(frame, kinds, "churn.csv")})
    assert validate_frame(examples, draft.suite).success
    bad = examples.assign(MonthlyCharges=examples["MonthlyCharges"] * 100, Churn="Maybe")
    failures = {(o.expectation, o.column) for o in validate_frame(bad, draft.suite).failures}
    assert ("expect_column_values_to_be_between", "MonthlyCharges") in failures
    assert ("expect_column_values_to_be_in_set", "Churn") in failures


def test_the_bounds_of_a_long_tailed_column_pass_later_batches_of_the_same_data_and_catch_a_unit_change():
    from pipelines.features import single_table
    from pipelines.ingest import cast_columns

    rng = np.random.default_rng(3)

    def batch(rows: int) -> pd.DataFrame:
        years = rng.gamma(3, 2, rows).round(1)
        return pd.DataFrame({"ticket": [f"T{i}" for i in rng.permutation(10 * rows)[:rows]], "years": years,
                             "minutes": (40 + 3 * years + rng.normal(0, 5, rows)).round(1)})

    frame = batch(6000)
    draft = draft_model(frame, "minutes", "tickets")
    kinds = {c.name: c.kind for c in draft.columns}

    def failures(rows: pd.DataFrame) -> set:
        examples = single_table({"tickets": cast_columns(rows, kinds, "tickets.csv")})
        return {(o.expectation, o.column) for o in validate_frame(examples, draft.suite).failures}

    # 40 weekly batches of 250 rows go past the table's maximum plus a tenth of its range, not past its tail's
    # own width again.
    years = next(e["kwargs"] for e in draft.suite["expectations"]
                 if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == "years")
    later = np.concatenate([batch(250)["years"].to_numpy() for _ in range(40)])
    assert later.max() > frame["years"].max() + 0.1 * (frame["years"].max() - frame["years"].min())
    assert years["min_value"] <= later.min() and later.max() <= years["max_value"]
    assert failures(batch(250)) == set()
    in_months = batch(250).assign(years=lambda f: f["years"] * 12)
    assert ("expect_column_values_to_be_between", "years") in failures(in_months)


def test_init_writes_a_config_that_loads_and_a_suite_and_lands_the_table(tmp_path, capsys):
    data = tmp_path / "churn.csv"
    churn().to_csv(data, index=False)
    state = StatePaths(root=tmp_path / "state")
    made = init(data, "Churn", "churn", None, False, include=tmp_path / "include", state=state)
    cfg = load_model_config(made["config"])
    assert cfg.task == "binary" and cfg.split_method == "random" and cfg.features.example_id == "customerID"
    assert cfg.expectation_suite_path == tmp_path / "include" / "expectations" / "churn.json"
    assert json.loads(cfg.expectation_suite_path.read_text())["name"] == "churn_examples"
    text = made["config"].read_text()
    assert "# inferred:" in text and "constant: string  # not used by the model" in text
    [landed] = made["landed"]
    assert landed.parent == state.landing("churn", "churn") and len(pd.read_parquet(landed)) == 600
    # Without a stack to tell, landing still works, and says Airflow's Asset was not updated.
    assert "Airflow not told (no stack login here): Asset x-mlops://landed/churn not updated" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="already exist"):
        init(data, "Churn", "churn", None, False, include=tmp_path / "include", state=state)


def test_landing_with_airflow_unreachable_says_so_and_keeps_the_files(tmp_path, monkeypatch):
    import socket

    from pipelines.cli import announce_landing

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "not-used")
    cfg = load_model_config("penguins")
    landed = [tmp_path / "2026-12-01.parquet", tmp_path / "2026-12-03.parquet"]
    said = announce_landing(cfg, landed, StatePaths(root=tmp_path / "state"))
    assert said.startswith("Airflow not told (") and "x-mlops://landed/penguins not updated" in said


def awkward(n: int = 400, seed: int = 1) -> pd.DataFrame:
    """A table as exports give them: empty and mostly empty columns, booleans, integers with gaps, numbers
    written as text ("11,622"), dates written as text; the target a price."""
    rng = np.random.default_rng(seed)
    area = rng.integers(500, 20_000, size=n)
    rooms = rng.integers(1, 8, size=n).astype(float)
    rooms[::9] = np.nan
    pool = np.full(n, None, dtype=object)
    pool[::40] = rng.choice(["Ex", "Gd", "Fa"], size=len(pool[::40]))
    shed = np.where(rng.random(n) < 0.1, "Y", None)
    corner = np.where(rng.random(n) < 0.2, None, rng.random(n) < 0.3)
    listed = pd.Timestamp("2010-01-01") + pd.to_timedelta(rng.integers(0, 365, size=n), unit="D")
    return pd.DataFrame({
        "notes": None, "pool_qc": pool, "shed": shed, "central_air": rng.random(n) < 0.9, "corner": corner,
        "rooms": rooms, "lot_area": [f"{v:,}" for v in area],
        "sold_at": (listed + pd.Timedelta(days=30)).strftime("%Y-%m-%d"), "listed": listed.strftime("%m/%d/%Y"),
        "updated": (listed + pd.to_timedelta(rng.integers(0, 86_400, size=n), unit="s")).strftime("%Y-%m-%dT%H:%M:%S"),
        "price": 100 * area + 5_000 * np.nan_to_num(rooms) + rng.normal(0, 1000, size=n),
    })


def test_each_kind_of_awkward_column_gets_a_sensible_role_and_the_draft_reads_its_own_file(tmp_path):
    from pipelines.ingest import read_landed_file
    from pipelines.landing import read_table

    data = tmp_path / "houses.csv"
    awkward().to_csv(data, index=False)
    frame = read_table(data)  # as `mlops-loop init` reads it
    draft = draft_model(frame, "price", "houses")
    roles = {c.name: (c.role, c.kind) for c in draft.columns}
    why = {c.name: c.why for c in draft.columns}
    assert roles["notes"][0] == "dropped" and why["notes"].startswith("empty in every row")
    assert roles["pool_qc"] == ("categorical", "string")  # missing in 97% of rows, three values where present
    assert roles["shed"] == ("categorical", "string") and why["shed"] == "'Y' or missing: a flag"
    assert roles["central_air"] == roles["corner"] == ("categorical", "string")  # True/False, with gaps too
    assert roles["rooms"] == ("numeric", "float")  # integers with gaps
    assert roles["lot_area"] == ("numeric", "int") and why["lot_area"] == "numbers written as text"
    assert roles["listed"] == ("dropped", "string") and "not ISO 8601" in why["listed"]
    assert roles["updated"] == ("dropped", "datetime")  # a time, unique in every row, is not an id either
    assert draft.event_time == "sold_at" and draft.example_id is None
    text = render_config(draft, "houses.csv")
    assert "lot_area: int  # numbers written as text" in text and "notes: float  # not used by the model" in text
    # The file, landed as it is, reads into the drafted types and passes the drafted suite.
    from pipelines.config import FeedConfig
    from pipelines.features import single_table

    feed = FeedConfig(name="houses", columns={c.name: c.kind for c in draft.columns})
    examples = single_table({"houses": read_landed_file(data, feed)})
    assert examples["lot_area"].tolist()[:3] == [int(v.replace(",", "")) for v in frame["lot_area"][:3]]
    assert examples["pool_qc"].isna().mean() > 0.9  # an empty field is a missing value, as at drafting
    outcome = validate_frame(examples, draft.suite)
    assert outcome.success, outcome.failure_message()


def test_numbers_written_as_text_in_a_parquet_file_are_numbers(tmp_path):
    """In a CSV file "12.5" reads as a number anyway; a Parquet file keeps it text. Digits with a leading zero
    are a code, not a number."""
    frame = pd.DataFrame({"x": [f"{v:.1f}" for v in np.linspace(0, 50, 200)], "code": ["007", "010"] * 100,
                          "y": np.linspace(0, 1, 200)})
    frame.to_parquet(tmp_path / "t.parquet")
    from pipelines.landing import read_table

    draft = draft_model(read_table(tmp_path / "t.parquet"), "y", "m")
    assert draft.by_role("numeric") == ["x"] and draft.by_role("categorical") == ["code"]


def with_time_like_columns(n: int = 1200, seed: int = 3) -> pd.DataFrame:
    """Sales over two years: an event date, the year and a fractional year (2022.0, 2022.25, ...: a quarter's
    start), a running count of sales with ties, an increasing record number that is not the example id, the
    months left of a two-year lease, a seasonal temperature (up and down twice: not monotone), a rare
    promotion flag, a pool's area (in six sales of the first day only, then none: never rising, yet not a
    time), a noisy amount, and the amount to predict."""
    rng = np.random.default_rng(seed)
    days = np.sort(np.r_[np.zeros(6, dtype=int), rng.integers(1, 730, size=n - 6)])
    sold = pd.Timestamp("2022-01-01") + pd.to_timedelta(days, unit="D")
    year = sold.year + (sold.quarter - 1) / 4
    day = (sold - pd.Timestamp("2022-01-01")).days.to_numpy()
    temperature = (12 + 10 * np.sin(2 * np.pi * day / 365.25) + rng.normal(0, 2, size=n)).round(1)
    area = rng.normal(120, 30, size=n).round(1)
    return pd.DataFrame({"sold_on": sold.strftime("%Y-%m-%d"), "year": sold.year, "year_frac": year,
                         "sales_to_date": day // 3, "record_no": 10_000 + np.arange(n) * 3,
                         "lease_months_left": 24 - day // 30.5, "temperature": temperature,
                         "promotion": (rng.random(n) < 0.02).astype(int),
                         "pool_area": np.where(days == 0, rng.integers(400, 800, size=n), 0), "area": area,
                         "price": (1_000 * area + 500 * temperature + rng.normal(0, 5_000, size=n)).round()})


def test_time_like_columns_are_recognised_kept_out_of_the_features_unbounded_and_explained():
    frame = with_time_like_columns()
    draft = draft_model(frame, "price", "sales")
    roles = {c.name: c.role for c in draft.columns}
    why = {c.name: c.why for c in draft.columns}
    time_like = ["year", "year_frac", "sales_to_date", "record_no", "lease_months_left"]
    assert draft.event_time == "sold_on"
    assert [roles[c] for c in time_like] == ["time_like"] * 5
    # Seasonal (not monotone), rare, in one day only, noisy: features.
    assert set(draft.by_role("numeric")) == {"temperature", "promotion", "pool_area", "area"}
    assert all(f"{'falls' if c == 'lease_months_left' else 'rises'} with sold_on" in why[c]
               and "add it to features.numeric" in why[c] for c in time_like)
    # The suite types them and counts their missing values, and bounds neither end; the features it bounds.
    bounded = {e["kwargs"]["column"] for e in draft.suite["expectations"]
               if e["type"] == "expect_column_values_to_be_between"}
    assert bounded == {"temperature", "promotion", "pool_area", "area", "price"}
    typed = {e["kwargs"]["column"] for e in draft.suite["expectations"]
             if e["type"] in ("expect_column_values_to_be_in_type_list", "expect_column_values_to_not_be_null")}
    assert set(time_like) <= typed
    # The config lists them in the feed with the reason, and not among the features.
    text = render_config(draft, "sales.csv")
    features = text.split("features:")[1].split("target:")[0]
    assert not any(c in features for c in time_like)
    assert "year_frac: float  # not used by the model: rises with sold_on" in text


def test_init_writes_time_like_columns_into_the_feed_and_leaves_them_out_of_the_features(tmp_path, capsys):
    data = tmp_path / "sales.csv"
    with_time_like_columns().to_csv(data, index=False)
    made = init(data, "price", "sales", None, False, include=tmp_path / "include",
                state=StatePaths(root=tmp_path / "state"))
    cfg = load_model_config(made["config"])
    assert set(cfg.features.numeric) == {"temperature", "promotion", "pool_area", "area"}
    assert {"year", "year_frac", "sales_to_date", "record_no", "lease_months_left"} <= set(cfg.feeds[0].columns)
    assert "  year_frac: time_like, rises with sold_on" in capsys.readouterr().out


def test_a_later_batch_of_time_like_columns_passes_the_drafted_suite():
    frame = with_time_like_columns()
    cut = frame["sold_on"] >= "2023-07-01"
    history, later = frame[~cut], frame[cut]
    draft = draft_model(history, "price", "sales")
    kinds = {c.name: c.kind for c in draft.columns}
    from pipelines.features import single_table
    from pipelines.ingest import cast_columns

    # Every later fractional year, count and record number lies past the history's maximum.
    assert all(later[c].min() > history[c].max() for c in ("year_frac", "sales_to_date", "record_no"))
    outcome = validate_frame(single_table({"sales": cast_columns(later, kinds, "later.csv")}), draft.suite)
    assert outcome.success, outcome.failure_message()


def test_without_an_event_time_only_an_increasing_integer_id_is_time_like():
    frame = churn().assign(row=np.arange(600) + 1, falling=np.arange(600, 0, -1) * 1.5,
                           sorted_charges=np.sort(churn()["MonthlyCharges"].fillna(0).to_numpy()))
    draft = draft_model(frame, "Churn", "churn")
    roles = {c.name: c.role for c in draft.columns}
    why = {c.name: c.why for c in draft.columns}
    assert roles["row"] == "time_like" and "rising row by row" in why["row"]
    # Row order alone says nothing of floats: a table sorted by a column is not a clock.
    assert roles["falling"] == roles["sorted_charges"] == roles["tenure"] == "numeric"


@pytest.mark.parametrize(("per_day", "window_days"), [(500, 1), (40, 7), (20, 14), (3, 28)])
def test_the_monitoring_window_holds_enough_rows_to_judge_at_the_tables_pace(per_day, window_days):
    days = pd.date_range("2024-01-01", periods=60, freq="D").repeat(per_day)
    frame = churn(len(days)).assign(signup_date=days.strftime("%Y-%m-%d"))
    draft = draft_model(frame, "Churn", "churn")
    assert (draft.window_days, draft.window_rows) == (window_days, per_day * window_days)
    monitoring = load_model_config_from_text(render_config(draft, "churn.csv")).monitoring
    assert monitoring.window_days == window_days


def load_model_config_from_text(text: str):
    import yaml

    from pipelines.config import ModelConfig

    return ModelConfig.model_validate(yaml.safe_load(text))


def test_codes_written_with_a_leading_zero_in_a_csv_file_are_drafted_as_text_and_land_as_written(tmp_path,
                                                                                                 monkeypatch):
    """pandas reads "02134" in a CSV as 2134; init keeps such a column as text, so the code is a category and
    the landed rows hold it as written."""
    rng = np.random.default_rng(5)
    zips = rng.choice(["02134", "10001", "02139", "94105"], size=400)
    frame = pd.DataFrame({"zip": zips, "amount": rng.normal(50, 10, 400).round(2),
                          "returned": np.where(rng.random(400) < 0.3, "yes", "no")})
    frame.to_csv(tmp_path / "orders.csv", index=False)
    from pipelines.landing import read_table

    assert read_table(tmp_path / "orders.csv")["zip"].tolist()[:3] == list(zips[:3])
    draft = draft_model(read_table(tmp_path / "orders.csv"), "returned", "orders")
    assert draft.by_role("categorical") == ["zip"] and draft.by_role("numeric") == ["amount"]
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    init(tmp_path / "orders.csv", "returned", "orders", None, False, include=tmp_path / "include")
    landed = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "state" / "landing").rglob("*.parquet")))
    assert sorted(set(landed["zip"])) == ["02134", "02139", "10001", "94105"]
