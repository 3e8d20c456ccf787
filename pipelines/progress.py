"""Progress bars of the long commands (landing, `mlops-loop replay`): on a terminal only, so logs and tests stay
clean."""

from __future__ import annotations


def progress_bar(total: int, description: str, unit: str):
    """A tqdm bar of ``total`` ``unit``s, shown only when stderr is a terminal and cleared when done."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, disable=None, leave=False)
