from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.runs import record_skipped
from apps.core.locks import exclusive
from apps.mesh.tasks import MAX_RETRIES, retry_countdown

from .services import collect_and_record

log = logging.getLogger(__name__)


@shared_task(
    name="metrics.collect_metrics",
    bind=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=settings.MESHBOARD_COLLECT_TIME_LIMIT,
    time_limit=settings.MESHBOARD_COLLECT_TIME_LIMIT + 15,
)
def collect_metrics(self, cluster_id: int) -> str:
    """One metrics cycle of a cluster: lock, recorded run, retries on transient Prometheus errors only."""
    cluster = Cluster.objects.filter(pk=cluster_id, enabled=True).exclude(prometheus_url="").first()
    if cluster is None:
        return "gone"
    retry_reason = None
    with exclusive(f"collect-metrics:{cluster_id}", ttl_seconds=settings.MESHBOARD_COLLECT_TIME_LIMIT + 30) as held:
        if not held:
            record_skipped(
                cluster, CollectionRun.Kind.METRICS, "a metrics collection of this cluster was still running"
            )
            return "skipped"
        try:
            run, error = collect_and_record(cluster, attempt=self.request.retries + 1)
        except SoftTimeLimitExceeded:
            log.warning("collecting metrics of %s hit the time limit", cluster.name)
            return "failed"
        except Exception:
            # A bug must not become a crash loop: the run is recorded as failed and the next tick tries again.
            log.exception("collecting metrics of %s failed unexpectedly", cluster.name)
            return "failed"
        if error is not None:
            log.warning("collecting metrics of %s failed: %s", cluster.name, error.reason)
            if error.transient and self.request.retries < MAX_RETRIES:
                retry_reason = error
    if retry_reason is not None:
        raise self.retry(exc=retry_reason, countdown=retry_countdown(self.request.retries))
    return run.status
