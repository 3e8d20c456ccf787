"""File writes that never leave a half-written file behind: write beside the target, then rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd


def write_parquet_atomic(frame: pd.DataFrame, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def write_text_atomic(text: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, dest)
    return dest


def move_into(paths: list[Path], folder: Path) -> list[Path]:
    """Move files into ``folder`` (replacing same-named files there); returns the new paths."""
    folder.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in paths:
        if path.exists():
            target = folder / path.name
            shutil.move(str(path), target)
            moved.append(target)
    return moved


def replace_dir(source: Path, dest: Path) -> Path:
    """Put folder ``source`` at ``dest``, replacing what was there. The old folder is renamed aside
    before the new one moves in, so a crash leaves either the old or the new folder in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    aside = dest.with_name(f".{dest.name}.old")
    if aside.exists():
        shutil.rmtree(aside)
    if dest.exists():
        os.replace(dest, aside)
    os.replace(source, dest)
    if aside.exists():
        shutil.rmtree(aside)
    return dest


def fresh_temp_dir(beside: Path) -> Path:
    beside.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{beside.name}.", suffix=".tmp", dir=beside.parent))
