"""The table of recent request ids: an id is taken once within its window, by any worker on the host."""

import subprocess
import sys

import pytest

from pipelines.serving.request_ids import RecentRequestIds, file_for


def test_an_id_is_taken_once_until_given_back_or_forgotten(monkeypatch):
    import pipelines.serving.request_ids as module

    clock = [1000.0]
    monkeypatch.setattr(module.time, "time", lambda: clock[0])
    ids = RecentRequestIds(None, window_seconds=60, slots=1024)
    assert ids.claim("a") and not ids.claim("a") and ids.claim("b")
    ids.release("a")
    assert ids.claim("a") and not ids.claim("a")
    clock[0] += 61
    assert ids.claim("a") and ids.claim("b")


def test_a_full_table_forgets_the_ids_nearest_their_end_and_counts_them(monkeypatch, caplog):
    import pipelines.serving.request_ids as module

    clock = [1000.0]
    monkeypatch.setattr(module.time, "time", lambda: clock[0])
    ids = RecentRequestIds(None, window_seconds=60, slots=1024)
    for n in range(3000):
        assert ids.claim(f"r{n}")
        clock[0] += 0.001
    assert ids.forgotten_early >= 3000 - 1024 and "give it more slots" in caplog.text
    assert not any(ids.claim(f"r{n}") for n in range(2990, 3000))  # the latest are kept


def test_every_worker_on_the_host_shares_the_table_and_it_outlives_a_restart(tmp_path):
    path = file_for(f"sqlite:///{tmp_path / 'predictions.db'}", 4096)
    assert path == tmp_path / "predictions.db.request-ids-4096"
    RecentRequestIds(path, 60, 4096).claim("shared")
    other_worker = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; from pipelines.serving.request_ids import "
         f"RecentRequestIds as T; t = T(Path({str(path)!r}), 60, 4096); "
         "sys.exit(0 if not t.claim('shared') and t.claim('new') else 1)"], capture_output=True, text=True)
    assert other_worker.returncode == 0, other_worker.stderr
    assert not RecentRequestIds(path, 60, 4096).claim("new")  # taken by the other process, kept in the file


@pytest.mark.parametrize("url,named", [
    ("sqlite://", None),
    ("postgresql+psycopg2://serving:secret@db:5432/mlops_monitoring", "request-ids-"),
])
def test_the_table_of_a_log_without_a_file_of_its_own(url, named):
    path = file_for(url, 4096)
    assert (path is None) if named is None else (path.name.startswith(named) and "secret" not in str(path))
