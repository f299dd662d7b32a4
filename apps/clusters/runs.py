"""Run records: every collection attempt leaves one, so pages can say how fresh data is and why it is stale."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from apps.core import heartbeats
from apps.core.errors import GatewayError
from apps.core.locks import exclusive

from .models import Cluster, CollectionRun

log = logging.getLogger(__name__)


@contextmanager
def recorded_run(cluster: Cluster, kind: str, *, attempt: int = 1) -> Iterator[CollectionRun]:
    """Create a run record, yield it for the body to fill in, and close it whatever happens.

    An exception leaves the run FAILED with the exception's text (or `reason`) and propagates; the body decides
    OK or PARTIAL by setting `run.status`.
    """
    run = CollectionRun.objects.create(cluster=cluster, kind=kind, attempt=attempt)
    started = time.monotonic()
    try:
        yield run
    except BaseException as exc:
        run.status = CollectionRun.Status.FAILED
        if isinstance(exc, SoftTimeLimitExceeded):
            run.error = f"stopped: the run took longer than its limit of {settings.MESHBOARD_COLLECT_TIME_LIMIT} s"
        else:
            run.error = getattr(exc, "reason", None) or f"{exc.__class__.__name__}: {exc}"
        raise
    else:
        if run.status == CollectionRun.Status.RUNNING:
            run.status = CollectionRun.Status.OK
    finally:
        run.finished_at = timezone.now()
        run.duration_ms = int((time.monotonic() - started) * 1000)
        run.save()
        prune_runs(cluster, kind)


def record_skipped(cluster: Cluster, kind: str, reason: str) -> CollectionRun:
    now = timezone.now()
    return CollectionRun.objects.create(
        cluster=cluster,
        kind=kind,
        status=CollectionRun.Status.SKIPPED,
        started_at=now,
        finished_at=now,
        duration_ms=0,
        error=reason,
    )


def prune_runs(cluster: Cluster, kind: str) -> None:
    keep = settings.MESHBOARD_RUNS_KEPT
    cutoff = (
        CollectionRun.objects.filter(cluster=cluster, kind=kind)
        .order_by("-started_at")
        .values_list("started_at", flat=True)[keep : keep + 1]
    )
    if cutoff:
        CollectionRun.objects.filter(cluster=cluster, kind=kind, started_at__lte=cutoff[0]).delete()


# The Cluster field that says when each kind of collection is next due: the tick claims it (moving it one poll
# interval ahead), and a failed run moves it to the backed-off time of the next attempt.
DUE_FIELDS = {CollectionRun.Kind.CLUSTER: "next_collect_at", CollectionRun.Kind.METRICS: "next_metrics_at"}

# Enough history to reach any cap: 2^(n-1) x 0.5 s passes 3600 s before n = 15.
_STREAK_LOOKBACK = 16


def backoff_seconds(failures: int, poll_seconds: float, *, transient: bool = True) -> float:
    """How long to wait after `failures` (>= 1) consecutive failed attempts: 2^(failures-1) x the base retry (2 s,
    4 s, 8 s, ...), capped at the poll interval. A permanent error waits the full poll interval: retrying sooner
    cannot help until a person acts."""
    if not transient:
        return float(poll_seconds)
    exponent = min(max(failures, 1) - 1, _STREAK_LOOKBACK)
    return float(min(settings.MESHBOARD_RETRY_BASE_SECONDS * 2**exponent, poll_seconds))


def consecutive_failures(cluster: Cluster, kind: str) -> int:
    """Finished attempts of `kind` that failed since the last one that produced data (skipped runs do not count)."""
    statuses = (
        CollectionRun.objects.filter(cluster=cluster, kind=kind)
        .exclude(status__in=[CollectionRun.Status.RUNNING, CollectionRun.Status.SKIPPED])
        .order_by("-started_at")
        .values_list("status", flat=True)[:_STREAK_LOOKBACK]
    )
    streak = 0
    for status in statuses:
        if status != CollectionRun.Status.FAILED:
            break
        streak += 1
    return streak


def schedule_after_failure(cluster: Cluster, kind: str, failures: int, *, transient: bool) -> None:
    """Record when the next attempt is due (pages say "next attempt at HH:MM:SS"; the tick starts it then)."""
    delay = backoff_seconds(failures, cluster.poll_interval_seconds, transient=transient)
    due = timezone.now() + timedelta(seconds=delay)
    Cluster.objects.filter(pk=cluster.pk).update(**{DUE_FIELDS[kind]: due})


def collection_lock(kind: str, cluster_id: int) -> str:
    """The lock one collection of `kind` for a cluster holds while it runs."""
    return f"collect-{kind}:{cluster_id}"


def lock_holder(task: Task) -> str:
    """Who runs `task`, for its collection lock: the worker's name and boot ("name boot"), so the tick can tell a
    lock whose worker is gone (killed mid-collection) from one whose worker still runs, and free the first at once
    instead of after its TTL. "" (unknown: the TTL alone frees it) outside a worker or when Redis cannot say."""
    return worker_lock_holder(getattr(task.request, "hostname", None) or "")


def worker_lock_holder(hostname: str) -> str:
    """`lock_holder` for the worker named `hostname`."""
    if not hostname:
        return ""
    try:
        boot = heartbeats.worker_boot(hostname)
    except (redis.RedisError, OSError):
        return ""
    return f"{hostname} {boot}" if boot else ""


def run_collection(
    task: Task,
    cluster: Cluster,
    kind: str,
    collect: Callable[..., tuple[CollectionRun, GatewayError | None]],
) -> str:
    """The body every collection task shares: a Redis lock so runs of one cluster never overlap, one recorded
    run, and nothing raised into a crash loop. A failed run does not retry inside the task: it moves the cluster's
    due time for this kind to the backed-off time of the next attempt (transient errors: 2 s, 4 s, 8 s, ... capped
    at the poll interval, counted across runs; permanent errors: one poll interval), and the tick starts it then.
    `task` is the calling Celery task (bound), kept so every collection calls this the same way."""
    what = f"{CollectionRun.Kind(kind).label.lower()} of {cluster.name}"
    lock = collection_lock(kind, cluster.pk)
    with exclusive(lock, ttl_seconds=settings.MESHBOARD_COLLECT_TIME_LIMIT + 30, holder=lock_holder(task)) as held:
        if not held:
            record_skipped(cluster, kind, f"a collection of {what} was still running")
            return "skipped"
        attempt = consecutive_failures(cluster, kind) + 1
        try:
            run, error = collect(cluster, attempt=attempt)
        except SoftTimeLimitExceeded:
            log.warning("collecting %s hit the time limit", what)
            schedule_after_failure(cluster, kind, attempt, transient=False)
            return "failed"
        except Exception:
            # A bug must not become a crash loop: the run is recorded as failed and the next tick tries again.
            log.exception("collecting %s failed unexpectedly", what)
            schedule_after_failure(cluster, kind, attempt, transient=False)
            return "failed"
        if error is not None:
            log.warning("collecting %s failed (attempt %d): %s", what, attempt, error.reason)
            schedule_after_failure(cluster, kind, attempt, transient=error.transient)
    return run.status
