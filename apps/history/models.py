"""Configuration history: every collected version of the mesh's configuration objects, changes only.

- `Version`: one change of one object (created, changed, deleted) as a collection saw it: the content after the
  change and the content before it (each version carries both, so its diff survives the trimming of older ones),
  when (the collection's time, and the object's own managedFields time when the row knows it) and who (the
  managedFields manager, for TrafficSplits).
- `Tracked`: the last content seen of each object, so a collection compares digests instead of reading versions.
- `HistoryState`: per cluster, since when the history is complete (raised when retention trims versions).
"""

from __future__ import annotations

from django.db import models

from apps.clusters.models import Cluster
from apps.clusters.scope import NamespaceScoped


class Kind(models.TextChoices):
    TRAFFIC_SPLIT = "TrafficSplit"
    TRAFFIC_TARGET = "TrafficTarget"
    HTTP_ROUTE_GROUP = "HTTPRouteGroup"
    TCP_ROUTE = "TCPRoute"
    MESH_CONFIG = "MeshConfig"


# The kinds whose versions make up the access policy at a time.
POLICY_KINDS = (Kind.TRAFFIC_TARGET, Kind.HTTP_ROUTE_GROUP, Kind.TCP_ROUTE, Kind.MESH_CONFIG)


class Change(models.TextChoices):
    CREATED = "created"
    CHANGED = "changed"
    DELETED = "deleted"


class Version(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    namespace = models.CharField(max_length=253, blank=True)
    name = models.CharField(max_length=253)
    change = models.CharField(max_length=16, choices=Change.choices)
    # A "created" version of the first collection the history saw: the object existed before, since when is unknown.
    baseline = models.BooleanField(default=False)
    recorded_at = models.DateTimeField()  # the collection that saw the change
    changed_at = models.DateTimeField(null=True, blank=True)  # the object's managedFields time, when known
    changed_by = models.CharField(max_length=128, blank=True)  # the managedFields manager, when known
    content = models.JSONField(null=True, blank=True)  # after the change; None for a deletion
    previous = models.JSONField(null=True, blank=True)  # before the change; None for a creation
    # " svc:<ns>/<name> sa:<ns>/<name> ... ": the services and service accounts it names, for the per-service page.
    mentions = models.TextField(blank=True)

    objects = NamespaceScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        indexes = [
            models.Index(fields=["cluster", "recorded_at"], name="history_version_time"),
            models.Index(fields=["cluster", "kind", "namespace", "name", "recorded_at"], name="history_version_object"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} {self.change} at {self.recorded_at:%Y-%m-%d %H:%M:%S}"


class Tracked(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    namespace = models.CharField(max_length=253, blank=True)
    name = models.CharField(max_length=253)
    present = models.BooleanField(default=True)
    row_digest = models.CharField(max_length=32, blank=True)  # the snapshot row's digest when last compared
    content_digest = models.CharField(max_length=32, blank=True)
    content = models.JSONField(null=True, blank=True)  # the latest content (None once deleted)
    versions = models.PositiveIntegerField(default=0)  # how many versions of it are kept
    last_recorded_at = models.DateTimeField()
    # Set when its oldest versions were trimmed by count: its state before this time is no longer known.
    complete_from = models.DateTimeField(null=True, blank=True)
    objects = NamespaceScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cluster", "kind", "namespace", "name"], name="uniq_tracked_object")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class HistoryState(models.Model):
    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="history_state")
    started_at = models.DateTimeField()  # the first collection recorded
    # From here on the configuration at any time can be rebuilt (raised by trims by age; an object trimmed by count
    # carries its own `Tracked.complete_from`).
    complete_from = models.DateTimeField()
    trimmed_at = models.DateTimeField(null=True, blank=True)  # the last retention trim by age

    def __str__(self) -> str:
        return f"{self.cluster}: complete from {self.complete_from:%Y-%m-%d %H:%M:%S}"
