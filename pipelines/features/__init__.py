"""Example builders: turn the feeds of one interval into one row per example.

A data set whose rows already are the examples needs none (``single_table``). Everything that knows
about one data set with several feeds lives in its own module here (``flights.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from pipelines.config import ModelConfig

ExampleBuilder = Callable[[dict[str, pd.DataFrame]], pd.DataFrame]


def load_builder(dotted_path: str) -> ExampleBuilder:
    module_name, _, attribute = dotted_path.rpartition(".")
    if not module_name:
        raise ValueError(f"features.builder must be a dotted path like 'pkg.module.function', got {dotted_path!r}")
    return getattr(importlib.import_module(module_name), attribute)


def single_table(feeds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The one feed's rows are the examples."""
    [frame] = feeds.values()
    return frame.reset_index(drop=True)


def examples_builder(cfg: ModelConfig) -> ExampleBuilder:
    return load_builder(cfg.features.builder) if cfg.features.builder else single_table
