"""Drift from a reference profile gives Evidently's DataDriftPreset scores and verdicts, column by column."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.drift import ReferenceProfile, dataset_drift, profile_reference

NUMERIC = ["smooth", "shifted", "few_values", "hours", "with_nans"]
CATEGORICAL = ["carrier", "new_category"]


def frames(rows: int, seed: int, drift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shift = 0.4 if drift else 0.0
    smooth = rng.normal(size=rows)
    frame = pd.DataFrame({
        "smooth": smooth,
        "shifted": rng.normal(loc=shift, size=rows),
        "few_values": rng.choice([0.0, 1.0, 2.0], p=[0.6, 0.3, 0.1] if not drift else [0.3, 0.3, 0.4], size=rows),
        "hours": rng.integers(5, 23 if not drift else 12, size=rows).astype(float),
        "with_nans": np.where(rng.random(rows) < 0.2, np.nan, rng.gamma(2.0 + shift, size=rows)),
        "carrier": rng.choice(["UA", "B6", "EV", "DL"], p=[0.4, 0.3, 0.2, 0.1] if not drift else [0.1, 0.2, 0.3, 0.4],
                              size=rows),
        "new_category": rng.choice(["a", "b"] + (["c"] if drift else []), size=rows),
    })
    return frame


def evidently_verdicts(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[float, bool]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition))
    result = json.loads(snapshot.json())
    scores = {m["config"]["column"]: m["value"] for m in result["metrics"]
              if m["config"]["type"].endswith(":ValueDrift")}
    verdicts = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in result["tests"]
                if "column" in t.get("metric_config", {}).get("params", {})}
    return {c: (scores[c], verdicts[c]) for c in scores}


@pytest.mark.parametrize(("reference_rows", "current_rows", "drift"), [
    (20_000, 3_000, False), (20_000, 3_000, True), (5_000, 800, True), (600, 400, True)])
def test_scores_and_verdicts_equal_evidently(reference_rows, current_rows, drift):
    reference, current = frames(reference_rows, 1, False), frames(current_rows, 2, drift)
    ours = dataset_drift(profile_reference(reference, NUMERIC, CATEGORICAL), current)
    theirs = evidently_verdicts(reference, current)
    assert {c.column for c in ours.columns} == set(theirs)
    for column in ours.columns:
        score, drifted = theirs[column.column]
        assert column.score == pytest.approx(score, rel=1e-6, abs=1e-9), column
        assert column.drifted is drifted, column
    if drift:
        assert {"shifted", "carrier", "new_category"} <= set(ours.drifted())


def test_profile_round_trips_through_parquet(tmp_path):
    reference = frames(5_000, 3, False)
    profile = profile_reference(reference, NUMERIC, CATEGORICAL)
    loaded = ReferenceProfile.load(profile.save(tmp_path / "profile.parquet"))
    current = frames(2_000, 4, True)
    assert dataset_drift(loaded, current) == dataset_drift(profile, current)
    assert loaded.rows == 5_000 and loaded.columns["with_nans"].rows == profile.columns["with_nans"].rows


def test_an_empty_window_column_is_reported_not_scored():
    reference = frames(5_000, 3, False)
    current = frames(100, 4, False).assign(with_nans=np.nan)
    summary = dataset_drift(profile_reference(reference, NUMERIC, CATEGORICAL), current)
    [empty] = [c for c in summary.columns if c.column == "with_nans"]
    assert empty.method == "empty" and not empty.drifted and empty.current_rows == 0


def test_a_window_counted_in_chunks_scores_like_the_whole_window():
    from pipelines.drift import combine

    reference, current = frames(20_000, 1, False), frames(6_000, 2, True)
    profile = profile_reference(reference, NUMERIC, CATEGORICAL)
    parts = [profile_reference(current.iloc[i:i + 1_000], NUMERIC, CATEGORICAL) for i in range(0, 6_000, 1_000)]
    merged = {c: parts[0].columns[c] for c in NUMERIC + CATEGORICAL}
    for part in parts[1:]:
        merged = {c: combine(merged[c], part.columns[c]) for c in merged}
    chunked = dataset_drift(profile, ReferenceProfile(merged, len(current)))
    whole = dataset_drift(profile, current)
    assert [(c.column, c.drifted) for c in chunked.columns] == [(c.column, c.drifted) for c in whole.columns]
    for a, b in zip(chunked.columns, whole.columns, strict=True):
        assert a.score == pytest.approx(b.score, rel=1e-9, abs=1e-12)


def test_categories_compare_as_text_whatever_their_type(tmp_path):
    """A reference read from Parquet may hold ints (a month); the service logs every category as text."""
    reference = pd.DataFrame({"month": np.tile([1, 2, 3], 2000)})
    logged = pd.DataFrame({"month": np.tile(["1", "2", "3"], 500)})
    profile = ReferenceProfile.load(profile_reference(reference, [], ["month"]).save(tmp_path / "p.parquet"))
    [month] = dataset_drift(profile, logged).columns
    assert month.score == pytest.approx(0.0, abs=1e-12) and not month.drifted


def test_a_window_read_in_many_chunks_is_counted_as_one():
    """``scan_chunks`` merges chunk profiles level by level (eight into one): across three levels the counts
    are those of the whole window, value by value."""
    from pipelines.config import load_model_config
    from pipelines.monitoring import PREDICTION, scan_chunks

    cfg = load_model_config("flights_delay")
    rng = np.random.default_rng(3)
    rows = 300 * 50
    window = pd.DataFrame({**{c: rng.integers(0, 40, rows).astype(float) for c in cfg.features.numeric},
                           **{c: rng.choice(["a", "b", "c", None], rows) for c in cfg.features.categorical},
                           PREDICTION: rng.random(rows), "month": rng.choice(["4", "5"], rows),
                           "request_id": [f"r{i}" for i in range(rows)], "row_index": np.zeros(rows, dtype=int)})
    scan = scan_chunks(cfg, (window.iloc[i:i + 50] for i in range(0, rows, 50)), 100)
    whole = profile_reference(window, [*cfg.features.numeric, PREDICTION], cfg.features.categorical)
    assert scan.rows == rows and set(scan.profile.columns) == set(whole.columns)
    for column, expected in whole.columns.items():
        got = scan.profile.columns[column]
        assert dict(zip(got.values.tolist(), got.counts.tolist(), strict=True)) == \
            dict(zip(expected.values.tolist(), expected.counts.tolist(), strict=True)), column
