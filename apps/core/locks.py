"""Redis locks that keep two runs of the same job from overlapping, across workers and hosts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=8)
def _client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def redis_client() -> redis.Redis:
    """Redis for workers: locks and anything that may wait a few seconds."""
    return _client(settings.REDIS_URL, 5.0)


def page_redis_client() -> redis.Redis:
    """Redis on the page path (caches, banners): a short deadline, so a Redis that stalls cannot stall a page."""
    return _client(settings.REDIS_URL, settings.MESHBOARD_PAGE_REDIS_TIMEOUT)


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
