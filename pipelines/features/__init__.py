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
    from pipelines.config import FeaturesConfig, ModelConfig

ExampleBuilder = Callable[[dict[str, pd.DataFrame]], pd.DataFrame]


def load_builder(dotted_path: str) -> ExampleBuilder:
    module_name, _, attribute = dotted_path.rpartition(".")
    if not module_name:
        raise ValueError(f"features.builder must be a dotted path like 'pkg.module.function', got {dotted_path!r}")
    return getattr(importlib.import_module(module_name), attribute)


def single_table(feeds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The one feed's rows are the examples, in plain numpy types (text as objects, missing as None;
    integers as int64, or float64 where values are missing), as every other step and GX expect them."""
    [frame] = feeds.values()
    plain = {}
    for name, values in frame.items():
        if isinstance(values.dtype, pd.StringDtype):
            plain[name] = values.astype(object).where(values.notna(), None)
        elif pd.api.types.is_integer_dtype(values) and pd.api.types.is_extension_array_dtype(values):
            plain[name] = values.astype("float64" if values.isna().any() else "int64")
        else:
            plain[name] = values
    return pd.DataFrame(plain).reset_index(drop=True)


def example_id_column(features: FeaturesConfig, examples: pd.DataFrame) -> str | None:
    """The column naming one example: ``features.example_id``, else one called example_id, if any."""
    if features.example_id:
        return features.example_id
    return "example_id" if "example_id" in examples.columns else None


def examples_builder(cfg: ModelConfig) -> ExampleBuilder:
    return load_builder(cfg.features.builder) if cfg.features.builder else single_table
