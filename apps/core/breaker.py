"""A circuit breaker for calls made on the page path: after a dependency times out, fail at once for a while
instead of making every page wait for the same timeout again. Process-local on purpose: it needs no shared store
(which may be the thing that is down), and each web process learns of an outage from its own first timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable


class CircuitBreaker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_until: dict[Hashable, float] = {}

    def open_until(self, key: Hashable) -> float | None:
        """The unix time until which calls for `key` should fail at once, or None when they may go ahead."""
        with self._lock:
            until = self._open_until.get(key)
            if until is not None and until <= time.time():
                del self._open_until[key]
                return None
            return until

    def trip(self, key: Hashable, seconds: float) -> float:
        """Fail calls for `key` at once for `seconds`; returns until when."""
        with self._lock:
            until = time.time() + seconds
            self._open_until[key] = until
            return until

    def reset(self, key: Hashable) -> None:
        with self._lock:
            self._open_until.pop(key, None)
