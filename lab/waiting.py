"""Waiting for something to become true, for tests, fixtures and the lab alike: one poll loop, one failure message;
and the free port a server about to start will be waited on."""

from __future__ import annotations

import socket
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice; free until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
