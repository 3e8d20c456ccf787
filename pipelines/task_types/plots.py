"""The plumbing of the evaluation plots: one matplotlib figure per PNG file, closed when written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def figure(path: Path, size: tuple[float, float] = (5, 5)) -> Iterator:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=size)
    try:
        yield ax
        fig.savefig(path, dpi=90, bbox_inches="tight")
    finally:
        plt.close(fig)
