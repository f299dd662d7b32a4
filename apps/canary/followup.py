"""What the collections after a write tell about it: the outcome of an uncertain write, and writes that other
controllers (Flagger, Argo CD, Flux, a person with kubectl) undid soon after. Runs after every cluster collection."""

from __future__ import annotations

from datetime import datetime, timedelta

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
# How long an API server may still store a write it held past the client's timeout. kube-apiserver answers a
# request it holds with 504 after --request-timeout (1 minute by default) but does not cancel the storage write,
# so only after this is an unchanged split proof that an uncertain write was not stored. Within it, an unchanged
# split leaves the record pending. (A changed split settles it at once: the write carried the old resourceVersion,
# so it can no longer be stored.)
UNSTORED_GRACE = timedelta(minutes=2)


def _writer_text(split: TrafficSplit) -> str:
    writer = split.last_writer
    if not writer:
        return ""
    return f", written by {writer['manager'] or 'an unnamed manager'}" + (
        f" at {writer['time']}" if writer["time"] else ""
    )


def _written_by_us_since(split: TrafficSplit, since: datetime) -> bool:
    """A managedFields entry of Meshboard's stamped at or after `since` (managedFields times have whole seconds)."""
    since = since.replace(microsecond=0)
    return any(
        m.get("manager") == FIELD_MANAGER and (stamped := k8s_time(m.get("time", ""))) is not None and stamped >= since
        for m in split.managers or []
    )


def resolve_unknown(cluster: Cluster) -> int:
    """Say what the cluster holds for every write whose outcome was unknown. Returns how many were resolved; a
    write whose split is still unchanged within UNSTORED_GRACE stays pending."""
    pending = list(WeightChange.objects.filter(cluster=cluster, result=WeightChange.Result.UNKNOWN, resolved_at=None))
    splits = {(s.namespace, s.name): s for s in TrafficSplit.objects.filter(cluster=cluster)}
    now = timezone.now()
    resolved = 0
    for record in pending:
        split = splits.get((record.namespace, record.split))
        fields = ["resolution", "resolved_at"]
        if split is None:
            record.resolution = "The next collection found no such TrafficSplit: it was deleted."
        elif split.resource_version == record.resource_version_sent:
            if now - record.created_at < UNSTORED_GRACE:
                continue  # the API server may still store it
            record.resolution = (
                f"The collections up to {UNSTORED_GRACE.total_seconds() / 60:g} minutes after the attempt found the "
                f"split unchanged ({weights_text(split.backends)}): the write was not stored."
            )
        elif split.backends == record.weights_after and _written_by_us_since(
            split, record.started_at or record.created_at
        ):
            record.resolution = (
                f"The next collection found these weights in the cluster ({weights_text(split.backends)}, "
                f"resourceVersion {split.resource_version}{_writer_text(split)}): the write was applied."
            )
            record.resolved_applied = True
            record.resource_version_after = split.resource_version
            fields += ["resolved_applied", "resource_version_after"]
        elif split.backends == record.weights_after:
            record.resolution = (
                f"The next collection found the weights asked for in the cluster ({weights_text(split.backends)}, "
                f"resourceVersion {split.resource_version}{_writer_text(split)}), but not written by Meshboard "
                "since the attempt: another writer set them."
            )
        else:
            record.resolution = (
                f"The next collection found other weights in the cluster ({weights_text(split.backends)}, "
                f"resourceVersion {split.resource_version}{_writer_text(split)})."
            )
        record.resolved_at = now
        record.save(update_fields=fields)
        resolved += 1
    return resolved


def detect_set_back(cluster: Cluster) -> int:
    """Mark recent writes whose weights another manager has since replaced. Returns how many were marked."""
    since = timezone.now() - SET_BACK_WINDOW
    recent = WeightChange.objects.filter(
        WeightChange.changed(), cluster=cluster, created_at__gte=since, undone_by=""
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
