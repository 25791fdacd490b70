"""Waiting in tests for what threads do: poll a condition until it holds or time is up."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once ``check()`` holds; fail the test when it still does not after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
