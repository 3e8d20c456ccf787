"""The embedded stack's process bookkeeping (scripts/stack.py): a component whose leader died while its children
lived on (a SIGKILLed scheduler's LocalExecutor workers) is started again, and `down` stops those children too."""

import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def stack(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("stack_under_test", ROOT / "scripts" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "logs").mkdir()
    monkeypatch.setattr(module, "STATE", tmp_path)
    monkeypatch.setattr(module, "RUN", tmp_path / "run")
    # A leader that starts a worker in its process group, as the scheduler starts LocalExecutor workers.
    parent = [sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '120']); time.sleep(120)"]
    monkeypatch.setattr(module, "components", lambda: {"scheduler": parent})
    # The leaders are this test's children: reaped at once, as init reaps them for `make up`'s detached ones.
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    yield module
    module.down()
    signal.signal(signal.SIGCHLD, previous)


def test_a_killed_leaders_children_are_stopped_by_down(stack):
    stack.start("scheduler", stack.components()["scheduler"], dict(os.environ))
    first = stack._pid("scheduler")
    wait_for(lambda: len(os.popen(f"pgrep -g {first}").read().split()) == 2)  # the leader and its worker
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not stack.process_alive(first))
    assert stack._group_alive(first)  # its worker lives on

    stack.start("scheduler", stack.components()["scheduler"], dict(os.environ))  # started again
    second = stack._pid("scheduler")
    assert second != first and stack._leftover_groups("scheduler") == [first]

    stack.down()
    assert not stack._group_alive(first) and not stack._group_alive(second)
    assert stack._leftover_groups("scheduler") == [] and not list((stack.RUN).glob("scheduler.*"))
