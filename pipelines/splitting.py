"""Split the training snapshot into train, validation (selects the candidate) and holdout (judges it).

With an event time the split follows time: train on the past, select on the following days, hold out the
latest days. Without one it is random but stable: each example's part depends only on its content (or its
``example_id``) and the seed, so an example held out today is held out in every later snapshot too, and
classes keep their shares in each part (stratified).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.config import SplitConfig
from pipelines.errors import DataError


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    method: str  # "time" or "random"
    validation_start: pd.Timestamp | None = None  # time split only
    holdout_start: pd.Timestamp | None = None

    def describe(self) -> dict[str, str | int]:
        return {"split_method": self.method, "rows_train": len(self.train), "rows_validation": len(self.validation),
                "rows_holdout": len(self.holdout),
                **({"validation_start": self.validation_start.isoformat(),
                    "holdout_start": self.holdout_start.isoformat()} if self.method == "time" else {})}


class SplitError(DataError):
    pass


def split_by_time(examples: pd.DataFrame, event_time: str, cfg: SplitConfig) -> Split:
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
    return Split(**{k: v.reset_index(drop=True) for k, v in parts.items()}, method="time",
                 validation_start=validation_start, holdout_start=holdout_start)


def split_randomly(examples: pd.DataFrame, cfg: SplitConfig, strata: np.ndarray | None = None,
                   id_column: str | None = None) -> Split:
    """Within each stratum (class), rows ordered by a seeded hash of their id (or content): the first
    ``holdout_fraction`` are held out, the next ``validation_fraction`` validate, the rest train."""
    if examples.empty:
        raise SplitError("cannot split an empty snapshot")
    key = examples[[id_column]] if id_column else examples
    draw = pd.util.hash_pandas_object(key, index=False, hash_key=f"{cfg.seed:016d}"[-16:]).to_numpy()
    groups = np.zeros(len(examples), dtype=int) if strata is None else pd.factorize(strata)[0]
    part = np.full(len(examples), 2)  # 0 holdout, 1 validation, 2 train
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        ordered = members[np.argsort(draw[members], kind="stable")]
        holdout = int(round(cfg.holdout_fraction * len(ordered)))
        validation = int(round(cfg.validation_fraction * len(ordered)))
        part[ordered[:holdout]] = 0
        part[ordered[holdout:holdout + validation]] = 1
    parts = {"holdout": examples[part == 0], "validation": examples[part == 1], "train": examples[part == 2]}
    empty = [name for name, rows in parts.items() if rows.empty]
    if empty:
        raise SplitError(f"random split of {len(examples)} rows leaves {empty} empty: validation_fraction="
                         f"{cfg.validation_fraction} and holdout_fraction={cfg.holdout_fraction} need more rows")
    return Split(**{k: v.reset_index(drop=True) for k, v in parts.items()}, method="random")
