from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.runs import record_skipped
from apps.core.locks import exclusive

from .services import collect_and_record

log = logging.getLogger(__name__)

MAX_RETRIES = 3


def retry_countdown(retries: int) -> float:
    """Backoff between attempts of one run: 2 s, 4 s, 8 s (the next beat tick starts a fresh run anyway)."""
    return float(2 ** (retries + 1))


@shared_task(
    name="mesh.collect_cluster",
    bind=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.MESHBOARD_COLLECT_TIME_LIMIT,
    time_limit=settings.MESHBOARD_COLLECT_TIME_LIMIT + 15,
)
def collect_cluster(self, cluster_id: int) -> str:
    cluster = Cluster.objects.filter(pk=cluster_id, enabled=True).first()
    if cluster is None:
        return "gone"
    retry_reason = None
    with exclusive(f"collect-cluster:{cluster_id}", ttl_seconds=settings.MESHBOARD_COLLECT_TIME_LIMIT + 30) as held:
        if not held:
            record_skipped(cluster, CollectionRun.Kind.CLUSTER, "a collection of this cluster was still running")
            return "skipped"
        try:
            run, error = collect_and_record(cluster, attempt=self.request.retries + 1)
        except SoftTimeLimitExceeded:
            log.warning("collecting %s hit the time limit", cluster.name)
            return "failed"
        except Exception:
            # A bug must not become a crash loop: the run is recorded as failed and the next tick tries again.
            log.exception("collecting %s failed unexpectedly", cluster.name)
            return "failed"
        if error is not None:
            log.warning("collecting %s failed: %s", cluster.name, error.reason)
            if error.transient and self.request.retries < MAX_RETRIES:
                retry_reason = error
    if retry_reason is not None:
        raise self.retry(exc=retry_reason, countdown=retry_countdown(self.request.retries))
    return run.status
