"""A collection whose pool process died: killed by the kernel (out of memory), by a signal, or by its hard time limit.

The run never reaches its own `finally`: its record would stay "running" and its lock held until the lock's TTL (the
time limit + 30 s, 150 s by default), while the worker's heartbeat, from the main process, goes on, so the tick could
not tell it from a long run and the cluster would go uncollected that long. Celery's main process sees the child go
(WorkerLostError, or TimeLimitExceeded at the hard limit) and sends `task_failure` there; this receiver records the run
as failed, saying why, and frees its lock, so the tick collects the cluster at its next due time.

It acts only on a lock this worker holds (its name and boot, `runs.lock_holder`) with no other run of the same
collection still active in this worker: a lock another worker or another of this worker's processes holds is theirs.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task
from celery.signals import celeryd_after_setup, task_failure
from celery.worker import state as worker_state
from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from apps.core.locks import break_lock, holders

from .models import CollectionRun
from .runs import collection_lock, worker_lock_holder

log = logging.getLogger(__name__)

# This worker's name, from `celery worker` at its start: the hard time limit's failure comes without the task's
# request (and so without the worker's name) in Celery's main process.
_this_worker = {"hostname": ""}


@celeryd_after_setup.connect
def _remember_worker_name(sender: str = "", **_kwargs: Any) -> None:
    _this_worker["hostname"] = str(sender or "")


def _kind_of(task: Task) -> str | None:
    from .tasks import COLLECTIONS

    return next((c.kind for c in COLLECTIONS if c.task.name == task.name), None)


def _same_collection_active(task: Task, cluster_id: int) -> bool:
    """Whether another run of `task` for the cluster is still active in this worker (the lost one is no longer)."""
    return any(
        request.name == task.name and list(request.args or ())[:1] == [cluster_id]
        for request in list(worker_state.active_requests)
    )


def _why(exception: BaseException) -> str:
    if isinstance(exception, TimeLimitExceeded):
        # The words freshness.py reads as "took longer than its limit", with the hard limit's seconds.
        return f"stopped: the run took longer than its limit of {settings.MESHBOARD_COLLECT_TIME_LIMIT} s"
    return f"stopped: the worker process running it ended ({exception})"


def record_lost_run(task: Task, cluster_id: int, exception: BaseException) -> bool:
    """Close the lost run of `task` for the cluster and free its lock, if this worker holds it. True when it did."""
    kind = _kind_of(task)
    holder = worker_lock_holder(_this_worker["hostname"] or getattr(task.request, "hostname", None) or "")
    if kind is None or not holder or _same_collection_active(task, cluster_id):
        return False
    lock = collection_lock(kind, cluster_id)
    try:
        if holders([lock]) != [holder]:
            return False
        now = timezone.now()
        for run in CollectionRun.objects.filter(
            cluster_id=cluster_id, kind=kind, status=CollectionRun.Status.RUNNING
        ).only("pk", "started_at"):
            CollectionRun.objects.filter(pk=run.pk, status=CollectionRun.Status.RUNNING).update(
                status=CollectionRun.Status.FAILED,
                error=_why(exception),
                finished_at=now,
                duration_ms=max(0, int((now - run.started_at).total_seconds() * 1000)),
            )
        freed = break_lock(lock, holder)
    finally:
        # The main process forks the pool's next process soon: no database connection is to be carried across it.
        connections.close_all()
    log.warning(
        "%s for cluster %s: its process ended (%s); run recorded failed, lock freed", task.name, cluster_id, exception
    )
    return freed


@task_failure.connect
def _on_task_failure(
    sender: Task | None = None, exception: BaseException | None = None, args: Any = None, **_kwargs: Any
) -> None:
    if sender is None or not isinstance(exception, (WorkerLostError, TimeLimitExceeded)) or not args:
        return
    try:
        record_lost_run(sender, int(args[0]), exception)
    except (redis.RedisError, OSError, DatabaseError, ValueError, TypeError) as exc:
        # The lock's TTL still frees it; the run's record stays "running".
        log.warning("could not record the lost run of %s: %s", sender.name, exc)
