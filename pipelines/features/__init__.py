"""Dataset-specific example builders. Everything that knows about one data set lives in its own module."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pandas as pd

ExampleBuilder = Callable[[dict[str, pd.DataFrame]], pd.DataFrame]


def load_builder(dotted_path: str) -> ExampleBuilder:
    module_name, _, attribute = dotted_path.rpartition(".")
    if not module_name:
        raise ValueError(f"features.builder must be a dotted path like 'pkg.module.function', got {dotted_path!r}")
    return getattr(importlib.import_module(module_name), attribute)
