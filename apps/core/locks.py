"""Redis for Meshboard's own use: locks that keep two runs of the same job from overlapping (across workers and
hosts), and the page path's client with its short timeout and its circuit breaker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache

import redis
from django.conf import settings

from .breaker import CircuitBreaker

# After a page-path call to a Redis times out or cannot connect, page-path calls to that Redis (by URL) fail at once
# for this many seconds: a stalled Redis costs each web process one short timeout per period, not one per request.
# Short, because Redis is back the moment it answers again.
PAGE_REDIS_BREAKER_SECONDS = 5.0
_PAGE_BREAKER = CircuitBreaker()


class RedisHeldBack(redis.exceptions.ConnectionError):
    """A page-path call not made: the same Redis timed out or refused a connection moments ago. A ConnectionError,
    so whoever already handles an unreachable Redis handles this too."""


@lru_cache(maxsize=8)
def _client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def redis_client() -> redis.Redis:
    """Redis for workers: locks and anything that may wait a few seconds."""
    return _client(settings.REDIS_URL, 5.0)


def page_redis_client() -> redis.Redis:
    """Redis on the page path (caches, banners): a short deadline, so a Redis that stalls cannot stall a page. Call it
    inside `page_redis_breaker()`."""
    return _client(settings.REDIS_URL, settings.MESHBOARD_PAGE_REDIS_TIMEOUT)


@contextmanager
def page_redis_breaker() -> Iterator[None]:
    """Guard page-path calls to settings.REDIS_URL: raises RedisHeldBack at once while the breaker is open; a
    timeout or connection error inside the block opens it (process-local, keyed by the URL) and propagates."""
    url = settings.REDIS_URL
    until = _PAGE_BREAKER.open_until(url)
    if until is not None:
        clock = time.strftime("%H:%M:%S", time.localtime(until))
        raise RedisHeldBack(f"not asked: Redis timed out or refused a connection moments ago; asking again at {clock}")
    try:
        yield
    except RedisHeldBack:
        raise  # an inner guard's refusal is no new failure
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        _PAGE_BREAKER.trip(url, PAGE_REDIS_BREAKER_SECONDS)
        raise


def _lock_key(name: str) -> str:
    return f"meshboard:lock:{name}"


def held(names: list[str]) -> list[bool]:
    """Whether each lock is held now (one round trip for all of them)."""
    if not names:
        return []
    pipe = redis_client().pipeline(transaction=False)
    for name in names:
        pipe.exists(_lock_key(name))
    return [bool(found) for found in pipe.execute()]


@contextmanager
def exclusive(name: str, *, ttl_seconds: float) -> Iterator[bool]:
    """Hold the lock `name` for the block; yields False (and runs nothing of its own) when another holder has it.

    The TTL bounds how long a crashed holder can block others; it must exceed the job's hard time limit.
    """
    lock = redis_client().lock(_lock_key(name), timeout=ttl_seconds, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            # If the TTL ran out first, someone else may hold it now, which is theirs to release.
            with suppress(redis.exceptions.LockNotOwnedError):
                lock.release()
