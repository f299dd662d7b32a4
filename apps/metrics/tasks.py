from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.runs import run_collection

from .services import collect_and_record


@shared_task(
    name="metrics.collect_metrics",
    bind=True,
    max_retries=0,  # a failed run is not retried here: the tick starts the next attempt after a backoff
    soft_time_limit=settings.MESHBOARD_COLLECT_TIME_LIMIT,
    time_limit=settings.MESHBOARD_COLLECT_TIME_LIMIT + 15,
)
def collect_metrics(self, cluster_id: int) -> str:
    """One metrics cycle of a cluster: lock, recorded run, retries on transient Prometheus errors only."""
    cluster = Cluster.objects.filter(pk=cluster_id, enabled=True).exclude(prometheus_url="").first()
    if cluster is None:
        return "gone"
    return run_collection(self, cluster, CollectionRun.Kind.METRICS, collect_and_record)
