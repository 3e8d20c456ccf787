"""Where a replay's history comes from (``mlops-loop replay``), and the example data sets' own data: their
tables, landed day by day as their provider would deliver them, and the history a model built on their feeds
replays when it is given no files. One module per example data set (``flights.py``); its feature builder stays
in ``pipelines.features``. A user's own files are read by ``pipelines.replay.TableReplay``.

``HISTORIES`` names, by the module of a model's ``features.builder``, the built-in history of the models
built on that data set's feeds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Protocol

import pandas as pd

from pipelines.sources import flights

if TYPE_CHECKING:
    from pipelines.config import ModelConfig
    from pipelines.shifts import Shift


class ReplaySource(Protocol):
    def days(self) -> list[date]: ...

    def land(self, landing_root, start: date, end: date) -> dict[str, int]: ...

    def examples(self, start: date, end: date) -> pd.DataFrame: ...


HISTORIES: dict[str, Callable[[ModelConfig, Shift | None], ReplaySource]] = {
    "pipelines.features.flights": flights.history,
}


def built_in_history(cfg: ModelConfig, shift: Shift | None = None) -> ReplaySource | None:
    """The built-in history of a model whose feature builder is an example data set's; None for any other."""
    history = HISTORIES.get((cfg.features.builder or "").rpartition(".")[0])
    return history(cfg, shift) if history else None
