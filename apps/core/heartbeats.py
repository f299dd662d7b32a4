"""Heartbeats of the collection machinery, in Redis with a TTL: beat's, written from inside beat's own scheduling
loop, and each worker's, written by a thread of the worker process for every queue it consumes.

Keys (all expire when their writer stops writing):
- `meshboard:heartbeat:beat`: the time beat last looped (a Unix timestamp, Redis's clock).
- `meshboard:heartbeat:queue:<queue>`: a sorted set of the workers consuming `<queue>`, scored by the time each
  last reported (Redis's clock).

Readers (the page banner, /readyz) call `read()`, which never waits more than its socket timeout and raises
`HeartbeatsUnavailable` when Redis cannot be asked; it goes through the page path's Redis breaker
(`locks.page_redis_breaker`), so after one timeout the banner says "unreachable" at once for a few seconds instead of
waiting again. Nothing here knows what a queue carries.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache

import redis
from celery import bootsteps
from celery.beat import PersistentScheduler
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from .locks import page_redis_breaker

log = logging.getLogger(__name__)

PREFIX = "meshboard:heartbeat"
BEAT_KEY = f"{PREFIX}:beat"
BOOTS_KEY = f"{PREFIX}:boots"  # hash: worker name -> the boot it last wrote


def queue_key(queue: str) -> str:
    return f"{PREFIX}:queue:{queue}"


def interval() -> float:
    return float(settings.MESHBOARD_HEARTBEAT_SECONDS)


def ttl() -> float:
    """A heartbeat older than this (three missed periods) means its writer is not running."""
    return 3 * interval()


@lru_cache(maxsize=8)
def _client(url: str, timeout: float) -> redis.Redis:
    # No client-side retries: a Redis that is down must cost one short timeout, not a backoff of seconds.
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def _writer() -> redis.Redis:
    return _client(settings.REDIS_URL, 2.0)


# Writers stamp heartbeats with Redis's clock, not their own, and readers compare with Redis's clock too, so hosts
# whose clocks disagree never make a live process look dead (or a dead one alive).
_WRITE_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[1], string.format('%.6f', now), 'PX', ARGV[1])
return string.format('%.6f', now)
"""
_WRITE_WORKER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl_ms = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if i == 1 then
    redis.call('HSET', key, ARGV[1], ARGV[3])
  else
    redis.call('ZADD', key, now, ARGV[1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl_ms / 1000)
    redis.call('PEXPIRE', key, ttl_ms)
  end
end
return string.format('%.6f', now)
"""


def write_beat() -> float:
    """Beat's heartbeat; returns the time written (Redis's clock)."""
    return float(_writer().eval(_WRITE_BEAT, 1, BEAT_KEY, int(ttl() * 1000)))


def forget_beat() -> None:
    _writer().delete(BEAT_KEY)


def write_worker(hostname: str, queues: list[str], boot: str = "") -> float:
    """One worker's heartbeat on each queue it consumes (dropping workers whose heartbeat expired), and its `boot`
    (which start of the worker process this is: a worker started again under the same name has another); returns
    the time written (Redis's clock)."""
    keys = [BOOTS_KEY, *(queue_key(queue) for queue in queues)]
    return float(_writer().eval(_WRITE_WORKER, len(keys), *keys, hostname, int(ttl() * 1000), boot))


def worker_boot(hostname: str) -> str:
    """The boot the worker `hostname` last wrote ("" when none): with the name, who runs a task, for `live_boots`."""
    return (_writer().hget(BOOTS_KEY, hostname) or b"").decode()


def live_boots(queue: str) -> dict[str, str]:
    """The workers whose heartbeat on `queue` is younger than the TTL, each with the boot it last wrote."""
    client = _writer()
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.zrange(queue_key(queue), 0, -1, withscores=True)
    pipe.hgetall(BOOTS_KEY)
    (seconds, micros), members, boots = pipe.execute()
    oldest = seconds + micros / 1_000_000 - ttl()
    return {member.decode(): (boots.get(member) or b"").decode() for member, score in members if score >= oldest}


def forget_worker(hostname: str, queues: list[str]) -> None:
    pipe = _writer().pipeline(transaction=False)
    for queue in queues:
        pipe.zrem(queue_key(queue), hostname)
    pipe.hdel(BOOTS_KEY, hostname)
    pipe.execute()


class HeartbeatsUnavailable(Exception):
    """Redis could not be asked (down, unreachable, or slower than the reader's timeout)."""


@dataclass(frozen=True)
class Heartbeats:
    """What Redis says is running: when beat last looped, and per queue the live workers and when each reported
    (all in Redis's clock, as `now` is)."""

    now: float
    beat_at: float | None
    workers: dict[str, dict[str, float]] = field(default_factory=dict)
    ttl: float = 30.0

    def beat_alive(self) -> bool:
        return self.beat_at is not None

    def queue_alive(self, queue: str) -> bool:
        return bool(self.workers.get(queue))


def read(queues: list[str], *, timeout: float) -> Heartbeats:
    """One round trip to Redis; only heartbeats younger than the TTL count. Raises HeartbeatsUnavailable."""
    limit = ttl()
    client = _client(settings.REDIS_URL, timeout)
    try:
        with page_redis_breaker():
            pipe = client.pipeline(transaction=False)
            pipe.time()
            pipe.get(BEAT_KEY)
            for queue in queues:
                pipe.zrange(queue_key(queue), 0, -1, withscores=True)
            (seconds, micros), beat_raw, *per_queue = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        raise HeartbeatsUnavailable(f"{exc.__class__.__name__}: {exc}") from None
    now = seconds + micros / 1_000_000
    beat_at = float(beat_raw) if beat_raw else None  # the key expires with its TTL
    workers = {
        queue: {member.decode(): score for member, score in members if score >= now - limit}
        for queue, members in zip(queues, per_queue, strict=True)
    }
    return Heartbeats(now=now, beat_at=beat_at, workers=workers, ttl=limit)


class HeartbeatScheduler(PersistentScheduler):
    """Beat's scheduler, writing beat's heartbeat from beat's own loop: if the loop stops, the heartbeat expires.

    Beat sleeps between loops until its next entry is due; the sleep is capped at the heartbeat interval so a long
    tick interval cannot make a live beat look dead. A Redis error costs a log line, never the schedule.
    """

    _last_beat = 0.0

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self._heartbeat(force=True)

    def tick(self, *args, **kwargs) -> float:
        delay = super().tick(*args, **kwargs)
        self._heartbeat()
        return min(delay, interval())

    def close(self) -> None:
        with suppress(redis.RedisError, OSError):
            forget_beat()
        super().close()

    def _heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < interval() / 2:
            return
        try:
            write_beat()
            self._last_beat = now
        except (redis.RedisError, OSError) as exc:
            log.warning("beat could not write its heartbeat: %s", exc)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """A consumer bootstep: while the worker consumes, a thread of the worker process writes its heartbeat for each
    queue it consumes. A thread rather than the event loop's timer, because a solo-pool worker runs its task inside
    the event loop, and a collection of a minute must not make its worker look dead. Stopping the worker removes its
    heartbeat at once."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._queues: list[str] = []
        self._hostname = ""
        # One boot for the life of this worker process: the consumer's steps are stopped and started again whenever
        # the broker connection drops, and a task that ran through that must still be its worker's.
        self._boot = f"{os.getpid()}.{time.time_ns()}"

    def start(self, c) -> None:
        self._hostname = c.hostname
        self._queues = sorted(q.name for q in c.task_consumer.queues) if c.task_consumer else []
        # The first beat before the consumer takes any task: a task reads its worker's boot from it (its lock's holder).
        self._beat()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="meshboard-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            write_worker(self._hostname, self._queues, self._boot)
        except (redis.RedisError, OSError) as exc:
            log.warning("worker %s could not write its heartbeat: %s", self._hostname, exc)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(interval()):
            self._beat()

    def stop(self, c) -> None:
        """The consumer stops: at shutdown, or to reconnect after the broker connection dropped (tasks running go on,
        so the heartbeat stays until it expires or the worker shuts down)."""
        if self._stop is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._stop = self._thread = None

    def shutdown(self, c) -> None:
        self.stop(c)
        with suppress(redis.RedisError, OSError):
            forget_worker(self._hostname, self._queues)
