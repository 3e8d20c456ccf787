"""Waiting in tests: on the event itself (a condition polled until it holds), never on the clock alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], seconds: float = 30.0, what: str | Callable[[], str] = "",
             poll: float = 0.02) -> T:
    """Poll ``condition`` until it returns something true and return that; after ``seconds`` fail the test
    with ``what`` (a text, or a callable that says the state at the time)."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {seconds:g} s waiting for {said or condition.__qualname__}")
        time.sleep(poll)


def wait_until_started(server, seconds: float = 60.0) -> None:
    """A uvicorn server run in a thread of the test, until it accepts connections."""
    wait_for(lambda: server.started, seconds, "the server to start", poll=0.05)
