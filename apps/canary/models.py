from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.clusters.models import Cluster


class WeightChange(models.Model):
    """Every attempt to change a TrafficSplit's weights, whatever came of it: the audit trail and rollback source."""

    class Result(models.TextChoices):
        APPLIED = "applied", "Applied"
        CONFLICT = "conflict", "Conflict (the split changed since it was opened)"
        REJECTED = "rejected", "Rejected by the API server"
        FAILED = "failed", "Failed"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="weight_changes")
    namespace = models.CharField(max_length=253)
    split = models.CharField(max_length=253)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150)  # kept when the user is deleted
    created_at = models.DateTimeField(auto_now_add=True)
    weights_before = models.JSONField(default=list)  # [{service, weight}] in the cluster when the write was tried
    weights_after = models.JSONField(default=list)  # what the user asked for
    resource_version_sent = models.CharField(max_length=64, blank=True)
    resource_version_after = models.CharField(max_length=64, blank=True)
    result = models.CharField(max_length=16, choices=Result.choices)
    reason = models.TextField(blank=True)
    flagger_confirmed = models.BooleanField(default=False)
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["cluster", "namespace", "split", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.username} {self.namespace}/{self.split} {self.result} at {self.created_at:%Y-%m-%d %H:%M:%S}"
