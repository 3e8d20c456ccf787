"""The scratch folder a benchmark works in: removed at the end unless the run asked to keep it."""

from __future__ import annotations

import shutil
from pathlib import Path


def finish(scratch: Path, keep: bool) -> None:
    if keep:
        print(f"kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
