"""How fresh a cluster's data is, read from run records (never from the cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from .models import Cluster, CollectionRun

_GOOD = (CollectionRun.Status.OK, CollectionRun.Status.PARTIAL)


@dataclass(frozen=True)
class Freshness:
    """The latest finished attempt of one kind of collection and the latest that produced data."""

    kind: str
    last_run: CollectionRun | None
    last_good: CollectionRun | None

    @property
    def age_seconds(self) -> int | None:
        if not self.last_good or not self.last_good.finished_at:
            return None
        return max(0, int((timezone.now() - self.last_good.finished_at).total_seconds()))

    @property
    def stale_since(self) -> datetime | None:
        """When the data stopped being refreshed, if the latest attempt failed."""
        if self.last_run and self.last_run.status == CollectionRun.Status.FAILED:
            return self.last_good.finished_at if self.last_good else self.last_run.started_at
        return None

    @property
    def error(self) -> str:
        return self.last_run.error if self.stale_since else ""

    @property
    def label(self) -> str:
        return CollectionRun.Kind(self.kind).label


def freshness(cluster: Cluster, kind: str) -> Freshness:
    runs = CollectionRun.objects.filter(cluster=cluster, kind=kind).exclude(
        status__in=[CollectionRun.Status.RUNNING, CollectionRun.Status.SKIPPED]
    )
    return Freshness(
        kind=kind,
        last_run=runs.order_by("-started_at").first(),
        last_good=runs.filter(status__in=_GOOD).order_by("-started_at").first(),
    )
