"""Waiting for something to become true, for tests, fixtures and the lab alike: one poll loop, one failure message;
and the free port a server about to start will be waited on."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
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


# Ports are handed out below the kernel's ephemeral range: a port chosen there and released before its server binds
# it can meanwhile become the local port of any outgoing connection on the machine (Prometheus's scrapes, the lab's
# clients), and the server then fails with "address in use". Below the range only listeners take ports, and a bind
# proves there is none. Ports handed out in this process are not handed out again.
_LOWEST = 10_000
_given: set[int] = set()
_given_lock = threading.Lock()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _port_range() -> tuple[int, int]:
    """Where this process hands out ports: below the ephemeral range; under pytest-xdist, the worker's own slice of
    it (gw0 the first of PYTEST_XDIST_WORKER_COUNT), which the servers a test starts inherit with the environment, so
    two test processes never hand out the same port."""
    low, top = _LOWEST, _ephemeral_start()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and worker[2:].isdigit() and count > 1 and (top - low) // count >= 1_000:
        size = (top - low) // count
        low = low + int(worker[2:]) % count * size
        top = low + size
    return low, top


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that nothing listens on now, below the ephemeral range where the machine
    allows (else the kernel's choice), none handed out before by this process; free until someone binds them."""
    low, top = _port_range()
    chosen: list[int] = []
    held: list[socket.socket] = []
    with _given_lock:
        try:
            if top - low >= 1_000:
                start = random.randrange(low, top)
                for offset in range(top - low):
                    if len(chosen) == n:
                        break
                    port = low + (start - low + offset) % (top - low)
                    if port in _given:
                        continue
                    s = socket.socket()
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError:
                        s.close()
                        continue
                    held.append(s)
                    chosen.append(port)
            while len(chosen) < n:  # a machine whose ephemeral range leaves no room below it
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                held.append(s)
                chosen.append(s.getsockname()[1])
        finally:
            for s in held:
                s.close()
        _given.update(chosen)
    return chosen


def free_port() -> int:
    """One port as `free_ports` chooses them."""
    return free_ports(1)[0]
