from __future__ import annotations

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from .models import Cluster


def _claim_due(clusters, field: str, now) -> list[Cluster]:
    """Clusters whose `field` is due, each claimed by moving `field` one poll interval ahead (compare-and-set)."""
    due = clusters.filter(Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lte": now}))
    claimed = []
    for cluster in due.only("id", "poll_interval_seconds", field):
        # Compare-and-set, so two beats (or a manual tick) racing cannot both enqueue the same cluster.
        if Cluster.objects.filter(pk=cluster.pk, **{field: getattr(cluster, field)}).update(
            **{field: now + cluster.poll_interval}
        ):
            claimed.append(cluster)
    return claimed


@shared_task(name="clusters.tick", ignore_result=True)
def tick() -> list[int]:
    """Enqueue a collection for every enabled cluster whose poll interval is due, and a metrics collection for those
    with a Prometheus URL whose own due time has come. Returns the ids of the clusters whose collection was enqueued.
    """
    from apps.mesh.tasks import collect_cluster
    from apps.metrics.tasks import collect_metrics

    now = timezone.now()
    enabled = Cluster.objects.filter(enabled=True)
    enqueued = []
    for cluster in _claim_due(enabled, "next_collect_at", now):
        collect_cluster.delay_on_commit(cluster.pk)
        enqueued.append(cluster.pk)
    for cluster in _claim_due(enabled.exclude(prometheus_url=""), "next_metrics_at", now):
        collect_metrics.delay_on_commit(cluster.pk)
    return enqueued
