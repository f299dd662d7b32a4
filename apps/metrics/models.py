"""KPI snapshots from Prometheus, written by the metrics collector, read by pages.

A value of None means "unknown" (no series, or the metric is not kept by this Prometheus); 0 means "measured: zero".
Pages must keep the two apart. Rates are per second; ratios are 0..1; latencies are milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models

from apps.clusters.models import Cluster
from apps.clusters.scope import EdgeScoped, NamespaceScoped

# The per-service KPIs pages list and charts draw, in that order (a subset of Traffic's fields).
KPI_FIELDS = (
    "request_rate",
    "rate_2xx",
    "rate_4xx",
    "rate_5xx",
    "success_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "tcp_bytes_sent_rate",
    "tcp_bytes_received_rate",
)


def success_ratio(requests: float | None, errors_5xx: float | None) -> float | None:
    """Non-5xx / all, 0..1; None when there was no request (unknown, not 100 %)."""
    if requests is None or requests <= 0:
        return None
    return min(1.0, max(0.0, (requests - (errors_5xx or 0.0)) / requests))


def tcp_bytes_total(kpi: dict) -> float | None:
    """Bytes/s both ways on a KPI row's connections; None when neither direction is known."""
    sent, received = kpi.get("tcp_bytes_sent_rate"), kpi.get("tcp_bytes_received_rate")
    if sent is None and received is None:
        return None
    return (sent or 0) + (received or 0)


def error_ratio(requests: float | None, errors_5xx: float | None) -> float | None:
    """5xx / all; 0 for a measured zero rate, None when either is unknown."""
    if requests == 0:
        return 0.0
    return errors_5xx / requests if requests and errors_5xx is not None else None


class Traffic(models.Model):
    """The KPIs shared by a service and an edge."""

    request_rate = models.FloatField(null=True, blank=True)  # requests/s, all response classes
    rate_2xx = models.FloatField(null=True, blank=True)
    rate_4xx = models.FloatField(null=True, blank=True)
    rate_5xx = models.FloatField(null=True, blank=True)
    success_rate = models.FloatField(null=True, blank=True)  # non-5xx / all; None when there was no request
    p50_ms = models.FloatField(null=True, blank=True)
    p95_ms = models.FloatField(null=True, blank=True)
    p99_ms = models.FloatField(null=True, blank=True)
    tcp_bytes_sent_rate = models.FloatField(null=True, blank=True)  # bytes/s from the caller side (cx_tx_bytes)
    tcp_bytes_received_rate = models.FloatField(null=True, blank=True)  # bytes/s (cx_rx_bytes)
    tcp_active_connections = models.FloatField(null=True, blank=True)

    class Meta:
        abstract = True


class ServiceKPI(Traffic):
    """Inbound KPIs of one destination service, summed over all its callers."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    namespace = models.CharField(max_length=253)
    service = models.CharField(max_length=253)
    collected_at = models.DateTimeField()
    # Short history for sparklines: [[unix_ts, request_rate, success_rate, p99_ms], ...], oldest first, bounded.
    history = models.JSONField(default=list, blank=True)
    # A TrafficSplit root: its callers' sidecars route to the backends' clusters, so its KPIs are the backends' sums
    # (rates, and latency buckets, whose quantiles are those of all the traffic addressed to it).
    # The backend services, in the split's order; empty for any other service.
    routed_backends = models.JSONField(default=list, blank=True)
    # Resilience, requests/s (issue 21 item 4): refused by its own sidecars' local rate limit, retried by its callers'
    # sidecars, refused by its callers' sidecars for a full pending queue. None: not available (MetricsState's
    # `<name>_unavailable_reason` says why) or not meshed.
    rate_limited_rate = models.FloatField(null=True, blank=True)
    retried_rate = models.FloatField(null=True, blank=True)
    overflow_rate = models.FloatField(null=True, blank=True)
    objects = NamespaceScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cluster", "namespace", "service"], name="uniq_service_kpi"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service}"


# What identifies an edge: the source workload (as OSM's relabeling names it) and the destination service.
EDGE_KEY = (
    "source_namespace",
    "source_service",
    "source_workload_kind",
    "source_workload_name",
    "destination_namespace",
    "destination_service",
)


class EdgeKPI(Traffic):
    """Traffic from one source workload to one destination service.

    The source is what OSM's Prometheus relabeling names: the namespace, the pod's `app` label (`source_service`,
    shared by a canary's v1 and v2) and its controller (`source_workload_kind`/`_name`, a ReplicaSet's Deployment).
    The workload fields are blank where the Prometheus does not keep those labels: then only the app is known."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    source_namespace = models.CharField(max_length=253)
    source_service = models.CharField(max_length=253)  # the source pod's `app` label (OSM's `source_service`)
    source_workload_kind = models.CharField(max_length=32, blank=True)
    source_workload_name = models.CharField(max_length=253, blank=True)
    destination_namespace = models.CharField(max_length=253)
    destination_service = models.CharField(max_length=253)
    collected_at = models.DateTimeField()
    tls_handshake_rate = models.FloatField(null=True, blank=True)  # handshakes/s from the caller's cluster stats
    tls_error_rate = models.FloatField(null=True, blank=True)  # TLS failures/s (connection errors, bad certs)
    certificate_expires_at = models.DateTimeField(null=True, blank=True)  # earlier of the two sidecars' certificates
    denied_rate = models.FloatField(null=True, blank=True)  # requests/s refused by the caller sidecar (policy)
    # Istio: the share of the edge's requests the destination's sidecar received over mutual TLS
    # (connection_security_policy="mutual_tls"); None on OSM, whose metrics do not say.
    mtls_request_share = models.FloatField(null=True, blank=True)
    objects = EdgeScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", *EDGE_KEY],
                name="uniq_edge_kpi",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_namespace}/{self.source_label} → {self.destination_namespace}/{self.destination_service}"

    @property
    def source_label(self) -> str:
        """The caller as people name it: its workload where known, else its app label."""
        return self.source_workload_name or self.source_service

    @property
    def carries_traffic(self) -> bool:
        """Something crosses this edge now: requests, TCP bytes either way, or requests its caller's sidecar denied.
        An edge with none of these is a pair that does not talk (a series with zero rates, or TLS stats only)."""
        measured = (self.request_rate, self.tcp_bytes_sent_rate, self.tcp_bytes_received_rate, self.denied_rate)
        return any(v for v in measured)


class Refusal(models.Model):
    """Connections or requests per second one workload's sidecar refused, or sent outside its routes.

    OSM v1.2 sidecars count a refusal on one side only (metrics.catalog.REFUSAL_SIDES): the caller's for "no-route"
    (and "passthrough": connections it sent to the egress passthrough, which with egress on is where a call SMI does
    not allow goes, as does any call to outside the mesh); the destination's for "no-mtls", "identity" and "route".
    The workload fields are blank where the Prometheus does not keep OSM's source_workload_* labels."""

    class Side(models.TextChoices):
        CALLER = "caller"
        DESTINATION = "destination"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    side = models.CharField(max_length=16, choices=Side.choices)
    kind = models.CharField(max_length=16)  # no-route, passthrough, no-mtls, identity, route
    namespace = models.CharField(max_length=253)
    app = models.CharField(max_length=253, blank=True)  # the counting pod's `app` label (OSM's source_service)
    workload_kind = models.CharField(max_length=32, blank=True)
    workload_name = models.CharField(max_length=253, blank=True)
    rate = models.FloatField()  # per second over the short window
    collected_at = models.DateTimeField()

    objects = NamespaceScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "side", "kind", "namespace", "app", "workload_kind", "workload_name"],
                name="uniq_refusal",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.label}: {self.kind} {self.rate:.3g}/s"

    @property
    def label(self) -> str:
        return self.workload_name or self.app


class BoundaryTraffic(models.Model):
    """Requests per second crossing the mesh's edge at one workload's sidecar (issue 21).

    - "ingress": what the pod's sidecar admitted through its ingress connection manager (an IngressBackend's
      `mesh-http-conn-manager.rds-ingress`): requests from outside the mesh, whoever sent them (the stat does not name
      the ingress controller; the IngressBackends say who may).
    - "egress": what the caller's sidecar sent to an Egress policy's cluster, `peer` its stat name (`<host>:<port>`
      with `.` and `:` made `_`, as OSM names egress clusters' stats)."""

    class Direction(models.TextChoices):
        INGRESS = "ingress"
        EGRESS = "egress"

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    direction = models.CharField(max_length=16, choices=Direction.choices)
    namespace = models.CharField(max_length=253)
    app = models.CharField(max_length=253, blank=True)  # the counting pod's `app` label (OSM's source_service)
    workload_kind = models.CharField(max_length=32, blank=True)
    workload_name = models.CharField(max_length=253, blank=True)
    peer = models.CharField(max_length=512, blank=True)  # egress: the cluster's stat name; ingress: ""
    request_rate = models.FloatField()
    rate_5xx = models.FloatField(default=0.0)
    collected_at = models.DateTimeField()

    objects = NamespaceScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "direction", "namespace", "app", "workload_kind", "workload_name", "peer"],
                name="uniq_boundary_traffic",
            ),
        ]

    def __str__(self) -> str:
        who = self.workload_name or self.app
        return f"{self.direction} {self.namespace}/{who} {self.peer}: {self.request_rate:.3g}/s"


def ingress_rate(
    rows: Iterable[BoundaryTraffic], workloads: set[tuple[str, str, str, str]]
) -> tuple[float, float] | None:
    """(requests/s, 5xx/s) the pods of `workloads` ((namespace, app, workload kind, workload name)) admitted from
    outside the mesh, each pod's row once; None when no row names them. A row without OSM's source_workload_*
    labels is matched by its app label alone."""
    apps = {w[:2] for w in workloads}
    total: tuple[float, float] | None = None
    for row in rows:
        if row.direction != BoundaryTraffic.Direction.INGRESS:
            continue
        key = (row.namespace, row.app, row.workload_kind, row.workload_name)
        if key in workloads or (not row.workload_name and key[:2] in apps):
            total = total or (0.0, 0.0)
            total = (total[0] + row.request_rate, total[1] + row.rate_5xx)
    return total


class SplitShare(models.Model):
    """Observed share of one TrafficSplit backend, next to the configured weight."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    namespace = models.CharField(max_length=253)
    split = models.CharField(max_length=253)
    backend = models.CharField(max_length=253)
    share_short = models.FloatField(null=True, blank=True)  # 0..1 over `short_window_seconds`; None: no traffic
    share_5m = models.FloatField(null=True, blank=True)
    request_rate = models.FloatField(null=True, blank=True)
    short_window_seconds = models.PositiveIntegerField(default=60)
    collected_at = models.DateTimeField()

    objects = NamespaceScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cluster", "namespace", "split", "backend"], name="uniq_split_share"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.split}: {self.backend}"


class MetricsState(models.Model):
    """What this cluster's Prometheus can tell us, and how, as of the last metrics run."""

    class LatencySource(models.TextChoices):
        ENVOY = "envoy", "Envoy histogram"
        OSM_WASM = "osm-wasm", "OSM WASM metric"
        ISTIO = "istio", "Istio's request-duration histogram"
        NONE = "none", "not available"

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="metrics_state")
    collected_at = models.DateTimeField()
    prometheus_version = models.CharField(max_length=64, blank=True)
    scrape_interval_seconds = models.FloatField(default=15)
    latency_source = models.CharField(max_length=16, choices=LatencySource.choices, default=LatencySource.NONE)
    latency_unavailable_reason = models.TextField(blank=True)
    tls_unavailable_reason = models.TextField(blank=True)  # blank: TLS evidence is available
    denials_unavailable_reason = models.TextField(blank=True)  # blank: denial counts are available
    # blank: the resilience counter is kept (catalog.resilience_unavailable says why not)
    rate_limited_unavailable_reason = models.TextField(blank=True)
    retried_unavailable_reason = models.TextField(blank=True)
    overflow_unavailable_reason = models.TextField(blank=True)
    ingress_unavailable_reason = models.TextField(blank=True)  # blank: ingress requests are counted
    queries = models.PositiveIntegerField(default=0)  # PromQL queries issued in the last run
    # The metrics pre-flight: which series and labels Meshboard reads this Prometheus keeps (apps.metrics.preflight).
    preflight = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.cluster}: latency from {self.get_latency_source_display()}"
