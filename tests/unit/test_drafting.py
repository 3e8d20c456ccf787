"""`mlops-loop init`: the drafts it writes from a user's table, and the table it lands."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import init
from pipelines.config import StatePaths, load_model_config
from pipelines.drafting import DraftError, draft_model
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
