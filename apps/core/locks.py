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


def _holder_key(name: str) -> str:
    return f"meshboard:lock:{name}:holder"


def holders(names: list[str]) -> list[str | None]:
    """Who holds each lock now (one round trip for all of them): None when it is free, "" when it is held by a
    holder that did not say who it is, else what the holder gave `exclusive`."""
    if not names:
        return []
    pipe = redis_client().pipeline(transaction=False)
    for name in names:
        pipe.exists(_lock_key(name))
        pipe.get(_holder_key(name))
    answers = pipe.execute()
    return [
        (holder.decode() if holder else "") if exists else None
        for exists, holder in zip(answers[::2], answers[1::2], strict=True)
    ]


_BREAK = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""


def break_lock(name: str, holder: str) -> bool:
    """Free the lock `name` if `holder` (as `holders` gave it) still holds it; True when it did. For a holder known
    to be gone: its TTL would free the lock too, only later."""
    return bool(redis_client().eval(_BREAK, 2, _lock_key(name), _holder_key(name), holder))


@contextmanager
def exclusive(name: str, *, ttl_seconds: float, holder: str = "") -> Iterator[bool]:
    """Hold the lock `name` for the block; yields False (and runs nothing of its own) when another holder has it.

    The TTL bounds how long a crashed holder can block others; it must exceed the job's hard time limit. `holder`
    says who holds it (`holders` reads it), so that one who knows the holder is gone can break the lock before then.
    """
    client = redis_client()
    lock = client.lock(_lock_key(name), timeout=ttl_seconds, blocking=False)
    acquired = lock.acquire()
    try:
        if acquired and holder:
            client.set(_holder_key(name), holder, px=int(ttl_seconds * 1000))
        yield acquired
    finally:
        if acquired:
            # If the TTL ran out (or the lock was broken) first, someone else may hold it now: theirs to release.
            with suppress(redis.exceptions.LockNotOwnedError):
                if holder and lock.owned():
                    client.delete(_holder_key(name))
                lock.release()
