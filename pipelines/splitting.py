"""Time-based split: train on the past, select on the following days, hold out the latest days."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipelines.config import SplitConfig


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    validation_start: pd.Timestamp
    holdout_start: pd.Timestamp
    end: pd.Timestamp


class SplitError(ValueError):
    pass


def split_by_time(examples: pd.DataFrame, event_time: str, cfg: SplitConfig) -> TimeSplit:
    if examples.empty:
        raise SplitError("cannot split an empty snapshot")
    times = pd.to_datetime(examples[event_time], utc=True)
    end = times.max().floor("D") + pd.Timedelta(days=1)
    holdout_start = end - pd.Timedelta(days=cfg.holdout_days)
    validation_start = holdout_start - pd.Timedelta(days=cfg.validation_days)
    parts = {
        "train": examples[times < validation_start],
        "validation": examples[(times >= validation_start) & (times < holdout_start)],
        "holdout": examples[times >= holdout_start],
    }
    empty = [name for name, part in parts.items() if part.empty]
    if empty:
        raise SplitError(
            f"time split leaves {empty} empty: the snapshot spans {times.min()} .. {times.max()}, but "
            f"validation_days={cfg.validation_days} and holdout_days={cfg.holdout_days} need more history"
        )
    return TimeSplit(
        **{k: v.reset_index(drop=True) for k, v in parts.items()},
        validation_start=validation_start,
        holdout_start=holdout_start,
        end=end,
    )
