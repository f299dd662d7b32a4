"""Test-only controls: make chosen requests fail or stall, and log every request.

They live on the server object, not behind an HTTP path, so nothing a real apiserver would 404 becomes reachable.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    verb: str  # Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection, or "" for others


class RequestLog:
    """Every request the server answered, in order, including faulted and malformed ones that parsed as HTTP."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    @property
    def entries(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        with self._lock:
            self._records.clear()

    def count(self, method: str | None = None, path: str | None = None, verb: str | None = None) -> int:
        """Requests matching all given filters; `path` is a regex searched in the path (query excluded)."""
        pattern = re.compile(path) if path else None
        return sum(
            1
            for r in self.entries
            if (method is None or r.method == method.upper())
            and (verb is None or r.verb == verb)
            and (pattern is None or pattern.search(r.path))
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


@dataclass
class Fault:
    path: re.Pattern
    verb: str | None  # Kubernetes verb ("list") or HTTP method ("GET"); None matches all
    status: int | None
    delay: float
    message: str | None
    user: str
    remaining: int | None  # None: until cleared

    def matches(self, method: str, verb: str, path: str) -> bool:
        if self.verb is not None and self.verb not in (method, verb):
            return False
        return bool(self.path.search(path))


class Faults:
    """`server.faults.add(r"/services", status=403)` makes matching requests answer 403 until `clear()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        path: str,
        status: int | None = None,
        *,
        delay: float = 0.0,
        verb: str | None = None,
        message: str | None = None,
        user: str = "system:serviceaccount:meshboard:meshboard",
        times: int | None = None,
    ) -> Fault:
        """Newest rule wins. `delay` seconds are slept before answering (with `status`, or normally if None)."""
        if status is None and not delay:
            raise ValueError("a fault needs a status, a delay, or both")
        fault = Fault(re.compile(path), verb, status, delay, message, user, times)
        with self._lock:
            self._faults.insert(0, fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def match(self, method: str, verb: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, verb, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None
