"""What the collections after a write tell about it: the outcome of an uncertain write, and writes that other
controllers (Flagger, Argo CD, Flux, a person with kubectl) undid soon after. Runs after every cluster collection."""

from __future__ import annotations

from datetime import timedelta

from django.dispatch import receiver
from django.utils import timezone

from apps.clusters.kube import FIELD_MANAGER
from apps.clusters.models import Cluster
from apps.mesh.decode import k8s_time
from apps.mesh.models import TrafficSplit
from apps.mesh.signals import snapshot_stored

from .models import WeightChange, weights_text

# A write undone later than this is a new decision by someone, not a controller fighting the write.
SET_BACK_WINDOW = timedelta(minutes=10)


def _writer_text(split: TrafficSplit) -> str:
    writer = split.last_writer
    if not writer:
        return ""
    return f", written by {writer['manager'] or 'an unnamed manager'}" + (
        f" at {writer['time']}" if writer["time"] else ""
    )


def resolve_unknown(cluster: Cluster) -> int:
    """Say what the cluster holds for every write whose outcome was unknown. Returns how many were resolved."""
    pending = list(WeightChange.objects.filter(cluster=cluster, result=WeightChange.Result.UNKNOWN, resolved_at=None))
    splits = {(s.namespace, s.name): s for s in TrafficSplit.objects.filter(cluster=cluster)}
    now = timezone.now()
    for record in pending:
        split = splits.get((record.namespace, record.split))
        if split is None:
            record.resolution = "The next collection found no such TrafficSplit: it was deleted."
        elif split.resource_version == record.resource_version_sent:
            record.resolution = (
                f"The next collection found the split unchanged ({weights_text(split.backends)}): "
                "the write was not stored."
            )
        elif split.backends == record.weights_after:
            record.resolution = (
                f"The next collection found these weights in the cluster ({weights_text(split.backends)}, "
                f"resourceVersion {split.resource_version}{_writer_text(split)})."
            )
        else:
            record.resolution = (
                f"The next collection found other weights in the cluster ({weights_text(split.backends)}, "
                f"resourceVersion {split.resource_version}{_writer_text(split)})."
            )
        record.resolved_at = now
        record.save(update_fields=["resolution", "resolved_at"])
    return len(pending)


def detect_set_back(cluster: Cluster) -> int:
    """Mark recent writes whose weights another manager has since replaced. Returns how many were marked."""
    since = timezone.now() - SET_BACK_WINDOW
    recent = WeightChange.objects.filter(
        cluster=cluster, result__in=WeightChange.CHANGED, created_at__gte=since, undone_by=""
    ).order_by("namespace", "split", "-created_at")
    splits = {(s.namespace, s.name): s for s in TrafficSplit.objects.filter(cluster=cluster)}
    marked, seen = 0, set()
    for record in recent:
        key = (record.namespace, record.split)
        if key in seen:  # only the latest write of each split can have been undone by what the cluster holds now
            continue
        seen.add(key)
        split = splits.get(key)
        writer = split.last_writer if split else None
        if (
            split is None
            or writer is None
            or writer["manager"] == FIELD_MANAGER  # a later Meshboard write: audited on its own
            or split.resource_version == record.resource_version_after
            or split.backends == record.weights_after
        ):
            continue
        record.undone_by = writer["manager"] or "an unnamed manager"
        record.undone_at = k8s_time(writer["time"]) or timezone.now()
        record.undone_weights = split.backends
        record.save(update_fields=["undone_by", "undone_at", "undone_weights"])
        marked += 1
    return marked


@receiver(snapshot_stored)
def follow_up(sender: object, cluster: Cluster, **_kwargs: object) -> None:
    resolve_unknown(cluster)
    detect_set_back(cluster)
