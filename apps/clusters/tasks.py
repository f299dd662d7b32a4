"""The beat tick: which cluster is due for which collection, and which worker collects it.

Many workers, on any number of machines sharing the PostgreSQL and the Redis, consume each kind's queue
(settings.CELERY_TASK_ROUTES). The tick claims each due cluster in the database (compare-and-set, so ticks racing on
two workers cannot both send it) and sends one message for it: to the next worker in turn that has caught up (its own
queue, Celery's worker_direct), so the collections spread evenly over the workers; to the kind's shared queue, which
every worker also takes from when free, when no worker has caught up or none can be seen. The lock in
`runs.run_collection` keeps two runs of one cluster from overlapping even if a message were ever doubled.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from celery import Task, shared_task
from celery.utils.nodenames import worker_direct
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from kombu import Queue

from apps.core import heartbeats
from apps.core.locks import break_lock, holders, redis_client

from .models import Cluster
from .runs import DUE_FIELDS, collection_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Collection:
    """A kind of collection the tick schedules: its task (called with a cluster id), the Cluster field that says when
    it is next due, and whether it needs the cluster's Prometheus URL."""

    task: Task
    due_field: str
    needs_prometheus: bool = False

    @property
    def kind(self) -> str:
        """The CollectionRun kind this collection records."""
        return next(kind for kind, field in DUE_FIELDS.items() if field == self.due_field)

    @property
    def queue(self) -> str:
        """The queue its task is routed to (settings.CELERY_TASK_ROUTES); a worker must consume it."""
        return settings.CELERY_TASK_ROUTES.get(self.task.name, {}).get("queue", "celery")


# Filled by the collecting apps when Django starts (their AppConfig.ready), so this app imports none of them.
COLLECTIONS: list[Collection] = []


def register_collection(collection: Collection) -> None:
    if collection not in COLLECTIONS:
        COLLECTIONS.append(collection)


# Each cluster is collected on its own grid of slots, `phase + k x interval` seconds after the Unix epoch. A claim
# moves the due time from one slot to the next rather than to "now + interval", so the tick's lateness (up to a tick
# period, more while workers are busy) never accumulates: each cluster is collected once in every interval, run after
# run. The phase is the cluster's id times the golden ratio, modulo 1, times the interval: clusters added one after
# another land far apart within the interval, so a fleet's collections spread over it instead of all starting on the
# same tick and queueing behind each other.
_GOLDEN = (math.sqrt(5) - 1) / 2
# A due time within this of a slot is on the grid (the database keeps microseconds; floats lose less than that).
_ON_GRID = 0.001


def slot_phase(cluster_id: int, poll_seconds: float) -> float:
    """Seconds into each interval at which the cluster's collections are due."""
    return (cluster_id * _GOLDEN) % 1.0 * poll_seconds


def first_slot(cluster_id: int, poll_seconds: float, not_before: datetime) -> datetime:
    """The cluster's first slot at or after `not_before`."""
    phase = slot_phase(cluster_id, poll_seconds)
    k = math.ceil((not_before.timestamp() - phase) / poll_seconds)
    return datetime.fromtimestamp(k * poll_seconds + phase, tz=UTC)


def _on_grid(cluster_id: int, poll_seconds: float, moment: datetime) -> bool:
    offset = (moment.timestamp() - slot_phase(cluster_id, poll_seconds)) % poll_seconds
    return min(offset, poll_seconds - offset) < _ON_GRID


def next_due(cluster_id: int, poll_seconds: float, due: datetime | None, now: datetime) -> datetime:
    """When the collection claimed now, at due time `due`, is next due.

    A due time on the cluster's grid, claimed within its interval: the next slot, whatever the tick's lateness.
    Otherwise (the first claim, a retry after a failure, an interval changed, or a claim more than an interval late,
    as when beat was down) the schedule rejoins the grid at the first slot at least half an interval away (a whole
    one after the first claim, which collects a new cluster at once), so two collections never come close together.
    """
    interval = timedelta(seconds=poll_seconds)
    if due is not None and _on_grid(cluster_id, poll_seconds, due) and due + interval > now:
        return due + interval
    return first_slot(cluster_id, poll_seconds, now + (interval if due is None else interval / 2))


def _claim_due(clusters: QuerySet[Cluster], field: str, now: datetime) -> list[Cluster]:
    """Clusters whose `field` is due, each claimed by moving `field` to its next slot (compare-and-set)."""
    due = clusters.filter(Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lte": now}))
    claimed = []
    for cluster in due.only("id", "poll_interval_seconds", field):
        was = getattr(cluster, field)
        # Compare-and-set, so two beats (or ticks run by two workers) racing cannot both enqueue the same cluster.
        if Cluster.objects.filter(pk=cluster.pk, **{field: was}).update(
            **{field: next_due(cluster.pk, cluster.poll_interval_seconds, was, now)}
        ):
            claimed.append(cluster)
    return claimed


# The turn counter of each queue, in Redis, so every tick (whichever worker runs it) continues the same rotation.
_TURN_KEY = "meshboard:dispatch:turn:{queue}"


def caught_up_workers(queue: str) -> list[str]:
    """The workers the tick may hand a collection of `queue` to, by name, sorted: those whose heartbeat says they
    consume `queue` and their own direct queue (a worker without worker_direct, as an older Meshboard, never gets a
    message it would not take), and whose direct queue is empty. A message still waiting there from an earlier tick
    means the worker is behind, hung, or gone since its last heartbeat: it gets nothing more until it has caught up
    (a dead worker's message expires there unread), and the others, or the shared queue, take its share."""
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.zrange(heartbeats.queue_key(queue), 0, -1, withscores=True)
    (seconds, micros), members = pipe.execute()
    oldest = seconds + micros / 1_000_000 - heartbeats.ttl()
    live = sorted(member.decode() for member, score in members if score >= oldest)
    if not live:
        return []
    pipe = client.pipeline(transaction=False)
    for name in live:
        direct = worker_direct(name).name
        pipe.zscore(heartbeats.queue_key(direct), name)
        pipe.llen(direct)  # kombu's Redis transport keeps a queue's waiting messages in a list of its name
    answers = pipe.execute()
    return [
        name
        for name, seen, waiting in zip(live, answers[::2], answers[1::2], strict=True)
        if seen is not None and seen >= oldest and not waiting
    ]


def _routes(queue: str, count: int) -> list[Queue | str]:
    """Where to send each of `count` collections of `queue`: the caught-up workers' direct queues in turn, else the
    shared queue. Redis being unreachable here leaves the shared queue (sending will say what is wrong)."""
    try:
        workers = caught_up_workers(queue)
        first = int(redis_client().incrby(_TURN_KEY.format(queue=queue), count)) - count if workers else 0
    except (redis.RedisError, OSError):
        workers = []
    if not workers:
        return [queue] * count
    return [worker_direct(workers[(first + i) % len(workers)]) for i in range(count)]


def _still_running(kind: str, queue: str, clusters: list[Cluster]) -> list[bool]:
    """Whether a collection of `kind` still runs for each cluster: its lock is held, by a worker whose heartbeat on
    `queue` is alive with the boot it took the lock with (`runs.lock_holder`). A lock whose worker is gone (killed
    mid-collection, or started again under the same name) is broken here, so the cluster is collected at its next
    due time rather than after the lock's TTL (the hard time limit + 30 s). A worker whose pool hangs keeps its
    heartbeat, so its lock holds and no second run overlaps it; a worker cut off from Redis for longer than three
    heartbeats is taken for gone, and its run, if it goes on, may overlap the next (before, only the TTL freed a lock).
    Workers must have distinct names (Celery warns of duplicates): two of one name overwrite each other's boot."""
    names = [collection_lock(kind, c.pk) for c in clusters]
    try:
        found = holders(names)
        live = heartbeats.live_boots(queue) if any(found) else {}
    except (redis.RedisError, OSError) as exc:
        # Nothing is known: nothing is freed and nothing sent (sending needs the same Redis); the next tick looks again.
        log.warning("the tick could not read the collection locks: %s", exc)
        return [True] * len(clusters)
    running = []
    for name, holder in zip(names, found, strict=True):
        if not holder:  # free (None), or held by a holder that did not say who it is (""): its TTL decides
            running.append(holder is not None)
            continue
        hostname, _, boot = holder.rpartition(" ")
        if live.get(hostname) == boot:
            running.append(True)
        elif break_lock(name, holder):
            log.warning("%s: its worker %s is gone (no heartbeat from that start of it); lock freed", name, hostname)
            running.append(False)
        else:
            running.append(True)  # freed or taken again meanwhile: the next tick looks again
    return running


@shared_task(name="clusters.tick", ignore_result=True)
def tick() -> list[tuple[str, int]]:
    """Enqueue each registered collection for every enabled cluster whose due time for it has come (a metrics
    collection only where the cluster has a Prometheus URL), each to one worker of its task's queue in turn (see
    `caught_up_workers`) or to that queue (settings.CELERY_TASK_ROUTES). Returns what it enqueued: (task name,
    cluster id)."""
    now = timezone.now()
    enabled = Cluster.objects.filter(enabled=True)
    enqueued = []
    for collection in COLLECTIONS:
        candidates = enabled.exclude(prometheus_url="") if collection.needs_prometheus else enabled
        claimed = _claim_due(candidates, collection.due_field, now)
        # A cluster whose previous collection of this kind still runs (a stalled source outlasting the poll interval)
        # gets nothing: that run covers the slot, and a second message would only be refused by its lock.
        running = _still_running(collection.kind, collection.queue, claimed)
        claimed = [c for c, busy in zip(claimed, running, strict=True) if not busy]
        if not claimed:
            continue
        for cluster, route in zip(claimed, _routes(collection.queue, len(claimed)), strict=True):
            # A message nobody took within a poll interval is dropped: the next claim sends a fresh one, so a worker
            # that was down does not come back to a pile of stale collections.
            collection.task.apply_async_on_commit((cluster.pk,), expires=cluster.poll_interval_seconds, queue=route)
            enqueued.append((collection.task.name, cluster.pk))
    return enqueued
