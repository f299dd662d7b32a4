"""A collection whose pool process died: killed by the kernel (out of memory) or by a signal.

The run never reaches its own `finally`: its record would stay "running" and its lock held until the lock's TTL (the
time limit + 30 s, 150 s by default), while the worker's heartbeat, from the main process, goes on, so the tick could
not tell it from a long run and the cluster would go uncollected that long. Celery's main process reaps the dead
child and sends `task_failure` there with WorkerLostError; this receiver then frees the run's lock and records the
run as failed, saying why, so the tick collects the cluster at its next due time.

- Only a lock this worker holds (its name and boot, `runs.lock_holder`), and only when no other run of the same
  collection for the cluster is reserved by this worker: a lock another worker or another of this worker's processes
  holds is theirs. The records failed are those still "running" for the cluster and kind, started before the lock
  was freed (a run started after it has its own record): with the lock ours, none of them can be a live run, except
  one on a worker the tick already took for gone (`tasks._still_running`), whose own end rewrites its record.
- In Celery's main process, in its event loop's thread: a slow Redis or database holds the loop up to their timeouts
  (5 s, SQLite's 20 s), a risk taken over a thread's (a fork while it holds a lock hangs the child). The lock goes
  first, so a database that cannot be written does not keep the cluster waiting for the TTL.
- The hard time limit is left to the run itself: Celery reports it before the child is stopped (SIGTERM, then
  SIGKILL 0.1 s later), and the run's `finally` records and releases what it can meanwhile.
- A deployment that sets `task_reject_on_worker_lost` (with `acks_late`) gets no `task_failure` for a lost task (Celery
  requeues it instead), so nothing here runs; the lock's TTL frees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import redis
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.signals import celeryd_after_setup, task_failure
from celery.worker import state as worker_state
from django.db import DatabaseError, connections
from django.utils import timezone

from apps.core.locks import break_lock, holders

from .models import CollectionRun
from .runs import collection_lock, worker_lock_holder

log = logging.getLogger(__name__)

# This worker's name, from `celery worker` at its start.
_this_worker = {"hostname": ""}


@celeryd_after_setup.connect
def _remember_worker_name(sender: str = "", **_kwargs: Any) -> None:
    _this_worker["hostname"] = str(sender or "")


def _kind_of(task: Task) -> str | None:
    from .tasks import COLLECTIONS

    return next((c.kind for c in COLLECTIONS if c.task.name == task.name), None)


def _same_collection_reserved(task: Task, cluster_id: int) -> bool:
    """Whether another run of `task` for the cluster is reserved by this worker, running or about to (Celery has
    already taken the lost one out)."""
    return any(
        request.name == task.name and list(request.args or ())[:1] == [cluster_id]
        for request in list(worker_state.reserved_requests)
    )


def lost_reason(exception: BaseException) -> str:
    """What a lost run's record says (freshness.py reads it): Celery's words without its job number ("Worker exited
    prematurely: signal 9 (SIGKILL) Job: 3.")."""
    said = re.sub(r"\s*Job: \d+\.?$", "", str(exception)).strip() or exception.__class__.__name__
    return f"stopped: the worker process running it ended ({said})"


def record_lost_run(hostname: str, kind: str, cluster_id: int, why: str) -> bool:
    """Free the lock of the lost run of `kind` for the cluster, if the worker `hostname` holds it, and fail the
    cluster's runs of that kind still "running" from before. True when it freed the lock."""
    holder = worker_lock_holder(hostname)
    lock = collection_lock(kind, cluster_id)
    if not holder or holders([lock]) != [holder]:
        return False
    freed_at = timezone.now()
    if not break_lock(lock, holder):
        return False
    try:
        lost = CollectionRun.objects.filter(
            cluster_id=cluster_id, kind=kind, status=CollectionRun.Status.RUNNING, started_at__lte=freed_at
        )
        for run in lost.only("pk", "started_at"):
            CollectionRun.objects.filter(pk=run.pk, status=CollectionRun.Status.RUNNING).update(
                status=CollectionRun.Status.FAILED,
                error=why,
                finished_at=freed_at,
                duration_ms=max(0, int((freed_at - run.started_at).total_seconds() * 1000)),
            )
    finally:
        connections.close_all()
    return True


def _record(hostname: str, kind: str, cluster_id: int, why: str) -> None:
    try:
        if record_lost_run(hostname, kind, cluster_id, why):
            log.warning("the %s collection of cluster %s: %s; its lock freed", kind, cluster_id, why)
    except (redis.RedisError, OSError, DatabaseError) as exc:
        # The lock's TTL frees it if it is still held; the run's record may stay "running".
        log.warning("the %s collection of cluster %s (%s): could not record it: %s", kind, cluster_id, why, exc)


@task_failure.connect
def _on_task_failure(
    sender: Task | None = None, exception: BaseException | None = None, args: Any = None, **_kwargs: Any
) -> None:
    if sender is None or not isinstance(exception, WorkerLostError) or not args:
        return
    kind = _kind_of(sender)
    hostname = _this_worker["hostname"] or getattr(sender.request, "hostname", None) or ""
    try:
        cluster_id = int(args[0])
    except (TypeError, ValueError):
        return
    if kind is None or not hostname or _same_collection_reserved(sender, cluster_id):
        return
    # In this thread, not one of its own: the pool forks its next process right after, and a fork taken while another
    # thread holds a lock (logging's, a connection pool's) leaves the child stuck on it for good (a fault-suite run saw
    # the cluster worker collect nothing more after its pool was killed).
    _record(hostname, kind, cluster_id, lost_reason(exception))
