"""Waiting for something to become true, for tests, fixtures and the lab alike: one poll loop, one failure message."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Call `predicate()` every `interval` s until it returns something truthy, and return that; AssertionError
    (naming the last value) once `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s; last: {last!r}")
