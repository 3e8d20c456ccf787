import pandas as pd
import pytest

from pipelines.config import SplitConfig
from pipelines.splitting import SplitError, split_by_time, split_randomly


def frame(days: int) -> pd.DataFrame:
    times = pd.date_range("2013-01-01", periods=days * 24, freq="h", tz="UTC")
    return pd.DataFrame({"t": times, "y": range(len(times))})


def test_holdout_is_the_latest_days_and_parts_do_not_overlap():
    parts = split_by_time(frame(40), "t", SplitConfig(holdout_days=10, validation_days=5))
    assert parts.holdout["t"].min() == pd.Timestamp("2013-01-31", tz="UTC")
    assert parts.validation["t"].min() == pd.Timestamp("2013-01-26", tz="UTC")
    assert parts.train["t"].max() < parts.validation["t"].min()
    assert parts.validation["t"].max() < parts.holdout["t"].min()
    assert len(parts.train) + len(parts.validation) + len(parts.holdout) == 40 * 24


def test_too_little_history_names_the_empty_part():
    with pytest.raises(SplitError, match=r"\['train'\] empty"):
        split_by_time(frame(10), "t", SplitConfig(holdout_days=7, validation_days=3))


def test_empty_snapshot_is_refused():
    with pytest.raises(SplitError, match="empty snapshot"):
        split_by_time(frame(1).iloc[:0], "t", SplitConfig())


def examples(n: int, seed: int = 0, positive_share: float = 0.1) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"c{seed}-{i}" for i in range(n)], "x": rng.normal(size=n),
                         "y": (rng.random(n) < positive_share).astype(int)})


def test_random_split_keeps_the_fractions_and_each_class_share():
    data = examples(2000)
    parts = split_randomly(data, SplitConfig(holdout_fraction=0.2, validation_fraction=0.1), strata=data["y"])
    assert parts.method == "random" and parts.holdout_start is None
    assert (len(parts.holdout), len(parts.validation), len(parts.train)) == (400, 200, 1400)
    share = data["y"].mean()
    for part in (parts.train, parts.validation, parts.holdout):
        assert abs(part["y"].mean() - share) < 0.005  # stratified: every part has the positives' share
    assert not set(parts.holdout["id"]) & set(parts.train["id"]) and not set(parts.validation["id"]) & set(
        parts.train["id"])


def test_random_split_is_seeded_and_an_example_stays_in_its_part_as_data_grows():
    first = examples(1000)
    grown = pd.concat([first, examples(1000, seed=1)], ignore_index=True)
    config = SplitConfig(holdout_fraction=0.15, validation_fraction=0.15)
    before = split_randomly(first, config, id_column="id")
    after = split_randomly(grown, config, id_column="id")
    assert split_randomly(first, config, id_column="id").holdout["id"].tolist() == before.holdout["id"].tolist()
    # Held out once, never trained on later: the champion's holdout rows stay out of a later candidate's training.
    assert not set(before.holdout["id"]) & set(after.train["id"])
    other_seed = split_randomly(first, SplitConfig(seed=7), id_column="id")
    assert set(other_seed.holdout["id"]) != set(before.holdout["id"])


def test_random_split_of_too_few_rows_names_the_empty_part():
    with pytest.raises(SplitError, match="validation"):
        split_randomly(examples(3), SplitConfig(holdout_fraction=0.3, validation_fraction=0.1))
