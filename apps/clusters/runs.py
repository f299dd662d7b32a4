"""Run records: every collection attempt leaves one, so pages can say how fresh data is and why it is stale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from .models import Cluster, CollectionRun


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
