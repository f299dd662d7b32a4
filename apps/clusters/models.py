from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


def _default_poll_seconds() -> int:
    return settings.MESHBOARD_DEFAULT_POLL_SECONDS


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # an RFC 1123 label, as Kubernetes requires


def validate_namespace_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("Give the watched namespaces as a list of names.")
    bad = [name for name in value if not _NAMESPACE_NAME.match(name)]
    if bad:
        raise ValidationError(f"Not a namespace name: {', '.join(repr(name) for name in bad)}.")
    if len(set(value)) != len(value):
        raise ValidationError("A namespace is listed twice.")


class Cluster(models.Model):
    """A Kubernetes cluster running OSM, and where to find its Prometheus."""

    name = models.SlugField(max_length=63, unique=True)
    in_cluster = models.BooleanField(
        default=False, help_text="Use the pod's service account (Meshboard runs inside this cluster)."
    )
    kubeconfig_path = models.CharField(max_length=1024, blank=True, help_text="Path to a kubeconfig file.")
    kube_context = models.CharField(max_length=253, blank=True, help_text="Context in the kubeconfig; blank: current.")
    prometheus_url = models.URLField(blank=True, help_text="Prometheus that scrapes this mesh's sidecars.")
    # How to reach a Prometheus behind TLS and authentication. Secrets stay out of the database: the password and
    # the bearer token are read from a file (or the password from an environment variable) at each collection.
    prometheus_ca_file = models.CharField(
        max_length=1024,
        blank=True,
        help_text="PEM file of the CA(s) that sign Prometheus's certificate; blank: the system's CAs.",
    )
    prometheus_username = models.CharField(max_length=253, blank=True, help_text="Basic-auth user for Prometheus.")
    prometheus_password_file = models.CharField(
        max_length=1024, blank=True, help_text="File holding the basic-auth password (never stored here)."
    )
    prometheus_password_env = models.CharField(
        max_length=253,
        blank=True,
        help_text="Environment variable of the workers holding the basic-auth password (never stored here).",
    )
    prometheus_bearer_token_file = models.CharField(
        max_length=1024,
        blank=True,
        help_text="File holding a bearer token for Prometheus, read again whenever it changes (a projected "
        "service-account token, an Entra ID token for Azure Monitor).",
    )
    control_plane_namespace = models.CharField(
        max_length=63, blank=True, help_text="Blank: detected from the osm-controller Deployment."
    )
    # Namespace-scoped mode, for an identity with Roles in some namespaces only: the collector reads these
    # namespaces one by one and nothing cluster-wide. Empty: the whole cluster (needs the ClusterRole).
    watched_namespaces = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_namespace_list],
        help_text="Namespaces to read, for an identity without cluster-wide rights; empty: every namespace.",
    )
    poll_interval_seconds = models.PositiveIntegerField(
        default=_default_poll_seconds, validators=[MinValueValidator(5), MaxValueValidator(3600)]
    )
    enabled = models.BooleanField(default=True)
    # Set when beat enqueues a collection, so a tick does not enqueue a cluster twice while its task waits.
    next_collect_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The same for the metrics collection (clusters with a prometheus_url only).
    next_metrics_at = models.DateTimeField(null=True, blank=True, editable=False)
    scrape_interval_seconds = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Prometheus's scrape interval for the sidecars; blank: read from Prometheus's configuration.",
    )

    class Meta:
        ordering = ["name"]
        permissions = [("change_trafficsplit_weights", "Can change TrafficSplit weights")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.in_cluster and self.kubeconfig_path:
            raise ValidationError("Choose either in-cluster or a kubeconfig path, not both.")
        if not self.in_cluster and not self.kubeconfig_path:
            raise ValidationError("Give a kubeconfig path, or tick in-cluster.")
        self._clean_prometheus_auth()

    def _clean_prometheus_auth(self) -> None:
        problems: list[tuple[str, str]] = []
        if self.prometheus_password_file and self.prometheus_password_env:
            problems.append(("prometheus_password_env", "Take the password from a file or a variable, not both."))
        has_password = bool(self.prometheus_password_file or self.prometheus_password_env)
        if self.prometheus_username and not has_password:
            problems.append(("prometheus_username", "Give the password's file or environment variable too."))
        if has_password and not self.prometheus_username:
            problems.append(("prometheus_username", "Give the basic-auth user the password belongs to."))
        if self.prometheus_username and self.prometheus_bearer_token_file:
            problems.append(("prometheus_bearer_token_file", "Use basic auth or a bearer token, not both."))
        if self.prometheus_password_env and not _ENV_NAME.match(self.prometheus_password_env):
            problems.append(("prometheus_password_env", "Not an environment variable name."))
        if problems:
            raise ValidationError(dict(problems))

    @property
    def namespace_scoped(self) -> bool:
        return bool(self.watched_namespaces)

    @property
    def poll_interval(self) -> timedelta:
        return timedelta(seconds=self.poll_interval_seconds)


class CollectionRun(models.Model):
    """One collection attempt: what pages use to say how fresh the data is, and why it is stale."""

    class Kind(models.TextChoices):
        CLUSTER = "cluster", "Kubernetes objects"
        METRICS = "metrics", "Prometheus metrics"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        PARTIAL = "partial", "Partial"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (another run was in progress)"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    counts = models.JSONField(default=dict, blank=True)
    api_requests = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True)
    timings = models.JSONField(default=dict, blank=True)  # seconds per phase: fetch, decode, write

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["cluster", "kind", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.cluster} {self.kind} {self.status} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class Access(models.Model):
    """How far a user's role reaches: the namespaces they see and, for operators, where they may change weights.

    The role itself is the user's Django group (apps/clusters/roles.py). Set in the admin, or from the identity
    provider's claims at each single sign-on login, which then overwrite what the admin set (apps/clusters/oidc.py)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="meshboard_access")
    namespaces = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_namespace_list],
        help_text="Namespaces this user sees; empty: every namespace. Pages say that others are hidden.",
    )
    operate_namespaces = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_namespace_list],
        help_text="Operators only: namespaces where they may change TrafficSplit weights; empty: every namespace "
        "they see.",
    )
    # The identity provider's `sub` for a user who signs in through OpenID Connect: the only way such a login finds
    # its account, so a provider's user can never take over a local account that happens to share its name.
    oidc_subject = models.CharField(max_length=255, null=True, blank=True, unique=True, editable=False)
    claims_applied_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "Meshboard access"
        verbose_name_plural = "Meshboard access"

    def __str__(self) -> str:
        return f"access of {self.user}"
