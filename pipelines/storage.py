"""File writes that never leave a half-written file behind: write beside the target, then rename."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# A temp file or folder is named after its target and its writer: `.<target>.<pid>@<host>.<random>.tmp`. A
# writer killed before it could clean up (SIGKILL, the OOM killer) leaves it behind; the next writer of the
# same target removes it: at once when its process is gone from this host, else after a day.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_STALE_SECONDS = 24 * 3600


def _temp_prefix(dest: Path) -> str:
    sweep_orphaned_temps(dest)
    return f".{dest.name}.{os.getpid()}@{_HOST}."


def sweep_orphaned_temps(dest: Path) -> list[Path]:
    """Remove the temp files and folders of ``dest`` whose writer died; returns what was removed."""
    removed = []
    if not dest.parent.is_dir():
        return removed
    for path in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
        owner = path.name[len(dest.name) + 2:-len(".tmp")].rpartition(".")[0]
        pid, _, host = owner.partition("@")
        try:
            orphaned = (host == _HOST and pid.isdigit() and not process_alive(int(pid))) or \
                time.time() - path.lstat().st_mtime > _STALE_SECONDS
            if not orphaned:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except FileNotFoundError:  # another writer swept it first
            continue
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def write_atomic(dest: Path, write: Callable[[Path], object]) -> Path:
    """``write(path)`` fills a temp file beside ``dest``, which then replaces ``dest`` in one rename; a write
    that fails removes its temp file and leaves ``dest`` as it was."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def write_parquet_atomic(frame: pd.DataFrame, dest: Path) -> Path:
    return write_atomic(dest, lambda tmp: frame.to_parquet(tmp, index=False))


def write_text_atomic(text: str, dest: Path) -> Path:
    return write_atomic(dest, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(data: bytes, dest: Path) -> Path:
    return write_atomic(dest, lambda tmp: tmp.write_bytes(data))


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
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(beside), suffix=".tmp", dir=beside.parent))
