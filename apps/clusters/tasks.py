from __future__ import annotations

from dataclasses import dataclass

from celery import Task, shared_task
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import Cluster
from .runs import DUE_FIELDS


@dataclass(frozen=True)
class Collection:
    """A kind of collection the tick schedules: its task (called with a cluster id), the Cluster field that says when
    it is next due, and whether it needs the cluster's Prometheus URL."""

    task: Task
    due_field: str
    needs_prometheus: bool = False

    @property
    def kind(self) -> str:
        """The CollectionRun kind this collection records."""
        return next(kind for kind, field in DUE_FIELDS.items() if field == self.due_field)

    @property
    def queue(self) -> str:
        """The queue its task is routed to (settings.CELERY_TASK_ROUTES); a worker must consume it."""
        return settings.CELERY_TASK_ROUTES.get(self.task.name, {}).get("queue", "celery")


# Filled by the collecting apps when Django starts (their AppConfig.ready), so this app imports none of them.
COLLECTIONS: list[Collection] = []


def register_collection(collection: Collection) -> None:
    if collection not in COLLECTIONS:
        COLLECTIONS.append(collection)


def _claim_due(clusters: QuerySet[Cluster], field: str, now) -> list[Cluster]:
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
def tick() -> list[tuple[str, int]]:
    """Enqueue each registered collection for every enabled cluster whose due time for it has come (a metrics
    collection only where the cluster has a Prometheus URL), on its task's queue (settings.CELERY_TASK_ROUTES).
    Returns what it enqueued: (task name, cluster id)."""
    now = timezone.now()
    enabled = Cluster.objects.filter(enabled=True)
    enqueued = []
    for collection in COLLECTIONS:
        candidates = enabled.exclude(prometheus_url="") if collection.needs_prometheus else enabled
        for cluster in _claim_due(candidates, collection.due_field, now):
            # A message nobody took within a poll interval is dropped: the next claim sends a fresh one, so a worker
            # that was down does not come back to a pile of stale collections.
            collection.task.apply_async_on_commit((cluster.pk,), expires=cluster.poll_interval_seconds)
            enqueued.append((collection.task.name, cluster.pk))
    return enqueued
