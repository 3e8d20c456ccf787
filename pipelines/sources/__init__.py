"""The example data sets' own data: where their tables come from, how they land day by day as their
provider would deliver them, and the history ``mlops-loop replay`` replays when it is given no files. One
module per data set (``flights.py``); its feature builder stays in ``pipelines.features``.

``HISTORIES`` names, by the module of a model's ``features.builder``, the built-in history of the models
built on that data set's feeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.sources import flights

if TYPE_CHECKING:
    from pipelines.config import ModelConfig
    from pipelines.replay import ReplaySource
    from pipelines.shifts import Shift

HISTORIES: dict[str, Callable[[ModelConfig, Shift | None], ReplaySource]] = {
    "pipelines.features.flights": flights.history,
}


def built_in_history(cfg: ModelConfig, shift: Shift | None = None) -> ReplaySource | None:
    """The built-in history of a model whose feature builder is an example data set's; None for any other."""
    history = HISTORIES.get((cfg.features.builder or "").rpartition(".")[0])
    return history(cfg, shift) if history else None
