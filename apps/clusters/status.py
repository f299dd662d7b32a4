"""What the status page shows per cluster, read from run records and the snapshot (never from the cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from apps.mesh.models import MeshState

from .models import Cluster, CollectionRun


@dataclass(frozen=True)
class ClusterStatus:
    cluster: Cluster
    last_run: CollectionRun | None
    last_good: CollectionRun | None
    state: MeshState | None

    @property
    def age_seconds(self) -> int | None:
        if not self.last_good or not self.last_good.finished_at:
            return None
        return int((timezone.now() - self.last_good.finished_at).total_seconds())

    @property
    def stale_since(self) -> datetime | None:
        """When the data stopped being refreshed, if the latest attempt failed."""
        if self.last_run and self.last_run.status == CollectionRun.Status.FAILED:
            return self.last_good.finished_at if self.last_good else self.last_run.started_at
        return None


def cluster_statuses() -> list[ClusterStatus]:
    clusters = list(Cluster.objects.all())
    states = {s.cluster_id: s for s in MeshState.objects.filter(cluster__in=clusters)}
    statuses = []
    for cluster in clusters:
        runs = CollectionRun.objects.filter(cluster=cluster, kind=CollectionRun.Kind.CLUSTER).exclude(
            status__in=[CollectionRun.Status.RUNNING, CollectionRun.Status.SKIPPED]
        )
        statuses.append(
            ClusterStatus(
                cluster=cluster,
                last_run=runs.order_by("-started_at").first(),
                last_good=runs.filter(status__in=[CollectionRun.Status.OK, CollectionRun.Status.PARTIAL])
                .order_by("-started_at")
                .first(),
                state=states.get(cluster.pk),
            )
        )
    return statuses
