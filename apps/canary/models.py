from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.clusters.models import Cluster
from apps.clusters.scope import NamespaceScoped


def weights_text(backends: list[dict]) -> str:
    """Weights as operators say them: "100/0"."""
    return "/".join(str(b.get("weight")) for b in backends) or "(none)"


class WeightChange(models.Model):
    """Every authenticated attempt to change a TrafficSplit's weights, whatever came of it: the audit trail and the
    rollback source. The result says what is known of the cluster afterwards (see apps/canary/services.py)."""

    class Result(models.TextChoices):
        APPLIED = "applied", "Applied"
        CONFIRMED = "confirmed", "Applied (confirmed by reading back)"
        CONFLICT = "conflict", "Conflict: nothing written"
        REJECTED = "rejected", "Rejected by the API server: nothing changed"
        # Older records only: an unchanged read-back is no proof (the server may store the write later), so such
        # attempts are now "unknown" until a collection settles them.
        NOT_CHANGED = "not_changed", "Nothing changed (confirmed)"
        FAILED = "failed", "Failed: nothing changed"
        UNKNOWN = "unknown", "Outcome unknown: check the cluster"
        INVALID = "invalid", "Refused by the form: nothing sent"
        FORBIDDEN = "forbidden", "Forbidden: nothing sent"

    CHANGED = (Result.APPLIED, Result.CONFIRMED)  # results after which the cluster holds the new weights

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="weight_changes")
    namespace = models.CharField(max_length=253)
    split = models.CharField(max_length=253)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150)  # kept when the user is deleted
    created_at = models.DateTimeField(auto_now_add=True)  # when the outcome was known (after any read-back)
    started_at = models.DateTimeField(null=True, blank=True)  # when the attempt began; null on older records
    weights_before = models.JSONField(default=list)  # [{service, weight}] in the cluster when the write was tried
    weights_after = models.JSONField(default=list)  # what the user asked for
    resource_version_sent = models.CharField(max_length=64, blank=True)
    resource_version_after = models.CharField(max_length=64, blank=True)
    result = models.CharField(max_length=16, choices=Result.choices)
    reason = models.TextField(blank=True)
    flagger_confirmed = models.BooleanField(default=False)
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # For an unknown outcome: what the next collection found in the cluster, and when; `resolved_applied` when it
    # found the write stored (the weights asked for, written by Meshboard since the attempt), at
    # `resource_version_after`. The result stays "unknown": that is what the operator was told at the time.
    resolution = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_applied = models.BooleanField(default=False)
    # For a change that another writer (Flagger, a GitOps controller, a person) undid soon after.
    undone_by = models.CharField(max_length=128, blank=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_weights = models.JSONField(default=list, blank=True)
    objects = NamespaceScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["cluster", "namespace", "split", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.username} {self.namespace}/{self.split} {self.result} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def changed(cls) -> Q:
        """The records after which the cluster held the new weights: applied, confirmed by reading back, or of
        unknown outcome until a later collection found them stored. These can be rolled back and be set back."""
        return Q(result__in=cls.CHANGED) | Q(result=cls.Result.UNKNOWN, resolved_applied=True)

    @property
    def changed_cluster(self) -> bool:
        return self.result in self.CHANGED or (self.result == self.Result.UNKNOWN and self.resolved_applied)

    @property
    def undone_notice(self) -> str:
        """ "bookstore-split was set back to 100/0 by flagger 12 s after the change by alice"."""
        if not self.undone_by:
            return ""
        verb = "set back to" if self.undone_weights == self.weights_before else "changed to"
        after = ""
        if self.undone_at:
            seconds = max(0, round((self.undone_at - self.created_at).total_seconds()))
            after = f" {seconds} s after the change by {self.username}"
        return f"{self.split} was {verb} {weights_text(self.undone_weights)} by {self.undone_by}{after}"
