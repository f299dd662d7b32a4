"""Run records: every collection attempt leaves one, so pages can say how fresh data is and why it is stale."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

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


MAX_RETRIES = 3


def retry_countdown(retries: int) -> float:
    """Backoff between attempts of one run: 2 s, 4 s, 8 s (the next beat tick starts a fresh run anyway)."""
    return float(2 ** (retries + 1))


def run_collection(
    task: Task,
    cluster: Cluster,
    kind: str,
    collect: Callable[..., tuple[CollectionRun, GatewayError | None]],
) -> str:
    """The body every collection task shares: a Redis lock so runs of one cluster never overlap, one recorded
    run, a retry with backoff for transient errors only, and nothing raised into a crash loop."""
    what = f"{CollectionRun.Kind(kind).label.lower()} of {cluster.name}"
    retry_reason = None
    with exclusive(f"collect-{kind}:{cluster.pk}", ttl_seconds=settings.MESHBOARD_COLLECT_TIME_LIMIT + 30) as held:
        if not held:
            record_skipped(cluster, kind, f"a collection of {what} was still running")
            return "skipped"
        try:
            run, error = collect(cluster, attempt=task.request.retries + 1)
        except SoftTimeLimitExceeded:
            log.warning("collecting %s hit the time limit", what)
            return "failed"
        except Exception:
            # A bug must not become a crash loop: the run is recorded as failed and the next tick tries again.
            log.exception("collecting %s failed unexpectedly", what)
            return "failed"
        if error is not None:
            log.warning("collecting %s failed: %s", what, error.reason)
            if error.transient and task.request.retries < MAX_RETRIES:
                retry_reason = error
    if retry_reason is not None:
        raise task.retry(exc=retry_reason, countdown=retry_countdown(task.request.retries))
    return run.status
