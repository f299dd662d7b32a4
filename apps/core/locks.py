"""Redis locks that keep two runs of the same job from overlapping, across workers and hosts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def redis_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


@contextmanager
def exclusive(name: str, *, ttl_seconds: float) -> Iterator[bool]:
    """Hold the lock `name` for the block; yields False (and runs nothing of its own) when another holder has it.

    The TTL bounds how long a crashed holder can block others; it must exceed the job's hard time limit.
    """
    lock = redis_client().lock(f"meshboard:lock:{name}", timeout=ttl_seconds, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            # If the TTL ran out first, someone else may hold it now, which is theirs to release.
            with suppress(redis.exceptions.LockNotOwnedError):
                lock.release()
