"""Waiting for something to become true, for tests, fixtures and the lab alike: one poll loop, one failure message;
and the free port a server about to start will be waited on."""

from __future__ import annotations

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


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that nothing listens on now, below the ephemeral range where the machine
    allows (else the kernel's choice), none handed out before by this process; free until someone binds them."""
    top = _ephemeral_start()
    chosen: list[int] = []
    held: list[socket.socket] = []
    with _given_lock:
        try:
            if top - _LOWEST >= 1_000:
                start = random.randrange(_LOWEST, top)
                for offset in range(top - _LOWEST):
                    if len(chosen) == n:
                        break
                    port = _LOWEST + (start - _LOWEST + offset) % (top - _LOWEST)
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
