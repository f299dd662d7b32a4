from __future__ import annotations

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from .models import Cluster


@shared_task(name="clusters.tick", ignore_result=True)
def tick() -> list[int]:
    """Enqueue a collection for every enabled cluster whose poll interval is due. Returns the cluster ids."""
    from apps.mesh.tasks import collect_cluster

    now = timezone.now()
    due = Cluster.objects.filter(enabled=True).filter(Q(next_collect_at__isnull=True) | Q(next_collect_at__lte=now))
    enqueued = []
    for cluster in due.only("id", "poll_interval_seconds", "next_collect_at"):
        # Compare-and-set, so two beats (or a manual tick) racing cannot both enqueue the same cluster.
        claimed = Cluster.objects.filter(pk=cluster.pk, next_collect_at=cluster.next_collect_at).update(
            next_collect_at=now + cluster.poll_interval
        )
        if claimed:
            collect_cluster.delay_on_commit(cluster.pk)
            enqueued.append(cluster.pk)
    return enqueued
