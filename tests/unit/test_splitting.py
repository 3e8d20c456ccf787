import pandas as pd
import pytest

from pipelines.config import SplitConfig
from pipelines.splitting import SplitError, split_by_time


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
