import os
import subprocess
import sys
import time

import pytest

from pipelines.storage import _HOST, fresh_temp_dir, write_atomic, write_bytes_atomic, write_text_atomic


def test_a_killed_writers_temp_is_removed_by_the_next_writer_of_the_same_target(tmp_path):
    """A writer killed mid-write (SIGKILL) leaves its temp behind; the next writer of that target removes it
    when its process is gone from this host, or when it is over a day old; a live writer's temp, another
    target's temp and a young one from another host are left alone."""
    target = tmp_path / "entry"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    killed = tmp_path / f".entry.{dead}@{_HOST}.abc123.tmp"
    killed.mkdir()
    (killed / "model.skops").write_bytes(b"half")
    live = tmp_path / f".entry.{os.getpid()}@{_HOST}.def456.tmp"
    live.mkdir()
    elsewhere_young = tmp_path / ".entry.123@0123abcd.ghi789.tmp"
    elsewhere_young.write_text("x")
    elsewhere_old = tmp_path / ".entry.123@0123abcd.jkl012.tmp"
    elsewhere_old.write_text("x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(elsewhere_old, (two_days_ago, two_days_ago))
    other_target = tmp_path / f".other.{dead}@{_HOST}.mno345.tmp"
    other_target.write_text("x")

    scratch = fresh_temp_dir(target)

    assert not killed.exists() and not elsewhere_old.exists()
    assert live.exists() and elsewhere_young.exists() and other_target.exists() and scratch.is_dir()
    assert scratch.name.startswith(f".entry.{os.getpid()}@{_HOST}.")
    write_text_atomic("done", tmp_path / "other")  # a file target sweeps its own temps the same way
    assert not other_target.exists() and (tmp_path / "other").read_text() == "done"


def test_a_write_that_fails_leaves_the_target_as_it_was_and_no_temp(tmp_path):
    target = write_bytes_atomic(b"the old report", tmp_path / "report.html")

    def half_then_fail(tmp):
        tmp.write_bytes(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"the old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    write_text_atomic("the new report", target)
    assert target.read_text() == "the new report" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
