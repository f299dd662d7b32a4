from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.runs import run_collection

from .services import collect_and_record


@shared_task(
    name="mesh.collect_cluster",
    bind=True,
    max_retries=0,  # a failed run is not retried here: the tick starts the next attempt after a backoff
    soft_time_limit=settings.MESHBOARD_COLLECT_TIME_LIMIT,
    time_limit=settings.MESHBOARD_COLLECT_TIME_LIMIT + 15,
)
def collect_cluster(self, cluster_id: int) -> str:
    """One collection of a cluster's Kubernetes objects into the snapshot tables."""
    cluster = Cluster.objects.filter(pk=cluster_id, enabled=True).first()
    if cluster is None:
        return "gone"
    return run_collection(self, cluster, CollectionRun.Kind.CLUSTER, collect_and_record)
