"""Test controls: make chosen requests fail, stall or lose their connection, and log every request.

`server.faults` is the one fault mechanism. Tests use it in-process; a server started with `fault_control=True`
(`--fault-control`) also exposes it over HTTP on `/_lab/faults` (see `faultcontrol.py`). Without that flag no path
reaches it, so nothing a real apiserver would 404 becomes reachable.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass
from typing import Any


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


WHEN = ("before", "after")
DEFAULT_USER = "system:serviceaccount:meshboard:meshboard"


@dataclass
class Fault:
    """One rule. `when="before"`: it strikes instead of handling the request (nothing is stored). `when="after"`: the
    request is handled first (a write IS stored), then the answer is held back: the delay, then the status, a
    dropped connection, or (delay only) the real answer late."""

    id: str
    path: re.Pattern
    verb: str | None  # Kubernetes verb ("list") or HTTP method ("GET"); None matches all
    status: int | None
    delay: float
    message: str | None
    user: str
    remaining: int | None  # None: until cleared
    when: str = "before"
    drop: bool = False
    times: int | None = None  # as added; `remaining` counts down
    skip: int = 0  # matching requests let through before it strikes, as added; `skip_remaining` counts down
    skip_remaining: int = 0

    def matches(self, method: str, verb: str, path: str) -> bool:
        if self.verb is not None and self.verb not in (method, verb):
            return False
        return bool(self.path.search(path))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path.pattern,
            "verb": self.verb,
            "status": self.status,
            "delay": self.delay,
            "when": self.when,
            "drop": self.drop,
            "times": self.times,
            "remaining": self.remaining,
            "skip": self.skip,
            "skip_remaining": self.skip_remaining,
            "message": self.message,
            "user": self.user,
        }


def _check(status: int | None, delay: float, when: str, drop: bool, times: int | None, skip: int) -> None:
    if status is None and not delay and not drop:
        raise ValueError("a fault needs a status, a delay, a drop, or a delay with one of the others")
    if drop and status is not None:
        raise ValueError("a dropped connection answers no status: give `status` or `drop`, not both")
    if status is not None and not 100 <= status <= 599:
        raise ValueError(f"status {status} is not an HTTP status code")
    if delay < 0:
        raise ValueError("delay must be >= 0 seconds")
    if when not in WHEN:
        raise ValueError(f'when must be "before" or "after", not {when!r}')
    if times is not None and times < 1:
        raise ValueError("times must be >= 1 (or null: until removed)")
    if skip < 0:
        raise ValueError("skip must be >= 0")


class Faults:
    """`server.faults.add(r"/services", status=403)` makes matching requests answer 403 until `clear()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(
        self,
        path: str,
        status: int | None = None,
        *,
        delay: float = 0.0,
        verb: str | None = None,
        message: str | None = None,
        user: str = DEFAULT_USER,
        times: int | None = None,
        when: str = "before",
        drop: bool = False,
        skip: int = 0,
    ) -> Fault:
        """Newest rule wins. `path` is a regex searched in the URL path; `verb` a Kubernetes verb or HTTP method.

        `delay` seconds are slept, then the request answers `status`, or loses its connection (`drop`), or (neither)
        is answered normally. `when="after"` does all that after the request was handled, so a write is stored
        although the client sees a timeout, a 5xx or a cut connection. The first `skip` matching requests pass
        untouched (on to older rules); then it strikes `times` times (None: until removed) and removes itself."""
        _check(status, delay, when, drop, times, skip)
        with self._lock:
            fault = Fault(
                id=str(next(self._ids)),
                path=re.compile(path),
                verb=verb,
                status=status,
                delay=delay,
                message=message,
                user=user,
                remaining=times,
                when=when,
                drop=drop,
                times=times,
                skip=skip,
                skip_remaining=skip,
            )
            self._faults.insert(0, fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def remove_id(self, fault_id: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.id == fault_id:
                    self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> list[Fault]:
        with self._lock:
            removed, self._faults = self._faults, []
        return removed

    def snapshot(self) -> list[dict[str, Any]]:
        """The rules as JSON, newest (the one that wins) first."""
        with self._lock:
            return [fault.as_json() for fault in self._faults]

    def match(self, method: str, verb: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, verb, path):
                    if fault.skip_remaining > 0:
                        fault.skip_remaining -= 1
                        continue
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None
