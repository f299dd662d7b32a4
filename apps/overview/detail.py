"""Everything the service page shows besides its charts, read from the snapshot tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from apps.clusters import scope
from apps.clusters.models import Cluster
from apps.mesh.models import Pod, Service, TrafficSplit, selects
from apps.mesh.protocols import serves_http
from apps.metrics.models import BoundaryTraffic, EdgeKPI, MetricsState, ServiceKPI, ingress_rate
from apps.metrics.refused import refused_by_service
from apps.policies.osm_policy import ServicePolicies, service_policies
from apps.policies.smi_access import REFUSAL_WORDS

from .workloads import WorkloadIndex, WorkloadRef


@dataclass(frozen=True)
class Caller:
    """An edge with the workload page its caller links to (None: no single workload of the snapshot is it)."""

    edge: EdgeKPI
    workload: WorkloadRef | None


@dataclass(frozen=True)
class RoutedBackend:
    """One backend of a split root: what it received, and its share of what reached all of them."""

    service: str
    kpi: ServiceKPI | None
    share: float | None  # 0..1 of the backends' summed request rate; None when unknown


@dataclass(frozen=True)
class ServiceDetail:
    service: Service
    kpi: ServiceKPI | None
    pods: list[Pod]
    inbound: list[Caller]
    outbound: list[Caller]
    splits: list[TrafficSplit]
    metrics_state: MetricsState | None
    # The `app` labels of this service's pods (OSM's source_service), and other services whose pods share them:
    # Envoy's stats cannot tell their outbound calls apart.
    source_apps: list[str]
    sharing_services: list[str]
    routed: list[RoutedBackend]  # a split root's backends as its traffic was routed to them; else empty
    # What its pods' sidecars refused, per second, as (what happened, rate): callers without a route or an admitted
    # identity (bookthief's calls to bookstore in the demo). Shown apart from its request rate, never in it.
    refused: list[tuple[str, float]]
    # Edges whose pair does not talk now (kept out of the tables unless all pairs were asked for): how many.
    quiet_inbound: int = 0
    quiet_outbound: int = 0
    certificate_expires_at: datetime | None = None  # the earliest over every inbound edge, quiet ones included
    # OSM's policy API about it: reached from outside or not, upstream traffic settings, retries.
    osm: ServicePolicies | None = None
    # (requests/s, 5xx/s) its pods' sidecars admitted from outside the mesh (IngressBackends); None: none counted.
    # Not in its request rate, which counts the mesh's callers.
    ingress: tuple[float, float] | None = None
    # For a namespace-limited user: requests/s with the namespaces hidden from them, (inbound, outbound), summed so
    # that no name shows; None for everyone else.
    hidden_traffic: tuple[float, float] | None = None

    @property
    def ingress_text(self) -> str:
        """The measured ingress in words ("" when there is nothing to say)."""
        state = self.metrics_state
        if self.ingress is not None:
            rps, errors = self.ingress
            error = f", {100 * errors / rps:.2g}% 5xx" if rps else ""
            return (
                f"Measured from outside: {rps:.3g} req/s{error}, admitted by its pods' sidecars through "
                "IngressBackends (counted per pod, so a pod that also backs another Service counts for both), "
                "apart from the request rate above."
            )
        if self.osm is None or not self.osm.reachable:
            return ""
        if state is not None and state.ingress_unavailable_reason:
            return f"Measured from outside: {state.ingress_unavailable_reason}."
        return "Measured from outside: no request counted."

    @property
    def meshed(self) -> bool:
        """Some pod has a sidecar, or the service is a split root (its backends' sidecars measure what it gets)."""
        return self.service.pods_meshed > 0 or bool(self.routed)

    @property
    def chart_kinds(self) -> list[str]:
        """The charts there can be data for: none without a sidecar, TCP only where OSM applies no HTTP filters."""
        if not self.meshed:
            return []
        if serves_http(self.service.ports) or self.routed:
            return ["requests", "success", "latency", "tcp"]
        return ["tcp"]

    @property
    def no_chart_reason(self) -> str:
        """Why some chart is left out ("" when all are drawn)."""
        if not self.meshed:
            return "No charts: none of its pods has a sidecar, so no Envoy measures its traffic. Inject one to see it."
        if self.chart_kinds == ["tcp"]:
            return (
                "TCP only: every port has appProtocol tcp, so OSM's sidecars see bytes and connections, "
                "not requests (no request, success or latency charts)."
            )
        return ""

    @property
    def latency_source(self) -> str:
        state = self.metrics_state
        if state is None:
            return "not available: no metrics collected yet"
        if state.latency_source == MetricsState.LatencySource.NONE:
            return f"not available: {state.latency_unavailable_reason or 'no latency series on this Prometheus'}"
        return state.get_latency_source_display()


def _routed(service: Service, kpi: ServiceKPI | None) -> list[RoutedBackend]:
    backends = [b for b in (kpi.routed_backends if kpi else []) or [] if isinstance(b, str)]
    if not backends:
        return []
    kpis = {
        k.service: k
        for k in ServiceKPI.objects.filter(cluster=service.cluster, namespace=service.namespace, service__in=backends)
    }
    rates = {b: kpis[b].request_rate for b in backends if b in kpis and kpis[b].request_rate is not None}
    total = sum(rates.values())
    return [RoutedBackend(b, kpis.get(b), rates[b] / total if total and b in rates else None) for b in backends]


def _talking(callers: list[Caller], all_pairs: bool) -> tuple[list[Caller], int]:
    """The rows to show, and how many were left out as pairs that do not talk now."""
    if all_pairs:
        return callers, 0
    shown = [c for c in callers if c.edge.carries_traffic]
    return shown, len(callers) - len(shown)


def service_detail(service: Service, *, all_pairs: bool = False) -> ServiceDetail:
    """`all_pairs`: also the edges that carry nothing now (by default the tables list pairs that talk)."""
    cluster, namespace = service.cluster, service.namespace
    pods = [p for p in Pod.objects.filter(cluster=cluster, namespace=namespace) if selects(service.selector, p.labels)]
    # OSM's relabeling names a caller by its pod's `app` label (source_service), not by a Service name.
    apps = {p.labels["app"] for p in pods if "app" in p.labels}
    splits = [
        s
        for s in TrafficSplit.objects.filter(cluster=cluster, namespace=namespace)
        if s.root_service_name == service.name or any(b.get("service") == service.name for b in s.backends)
    ]
    kpi = ServiceKPI.objects.filter(cluster=cluster, namespace=namespace, service=service.name).first()
    # A split root's callers reach it through its backends' clusters (no series names the root): its inbound rows
    # are those edges, each saying which backend it reached.
    reached = [service.name, *[b for b in (kpi.routed_backends if kpi else []) or [] if isinstance(b, str)]]
    inbound = list(
        EdgeKPI.objects.filter(
            cluster=cluster, destination_namespace=namespace, destination_service__in=reached
        ).order_by("source_namespace", "source_service", "source_workload_name", "destination_service")
    )
    outbound = list(
        EdgeKPI.objects.filter(cluster=cluster, source_namespace=namespace, source_service__in=apps).order_by(
            "destination_namespace", "destination_service", "source_workload_name"
        )
    )
    index = WorkloadIndex.load(cluster, {namespace, *(e.source_namespace for e in inbound)})
    hidden_traffic = _hidden_traffic(cluster, namespace, reached, apps)

    def caller(e: EdgeKPI) -> Caller:
        return Caller(
            e, index.caller(e.source_namespace, e.source_service, e.source_workload_kind, e.source_workload_name)
        )

    expiries = [e.certificate_expires_at for e in inbound if e.certificate_expires_at]
    inbound_rows, quiet_inbound = _talking([caller(e) for e in inbound], all_pairs)
    outbound_rows, quiet_outbound = _talking([caller(e) for e in outbound], all_pairs)
    return ServiceDetail(
        service=service,
        kpi=kpi,
        pods=sorted(pods, key=lambda p: p.name),
        inbound=inbound_rows,
        outbound=outbound_rows,
        quiet_inbound=quiet_inbound,
        quiet_outbound=quiet_outbound,
        certificate_expires_at=min(expiries) if expiries else None,
        splits=splits,
        metrics_state=MetricsState.objects.filter(cluster=cluster).first(),
        source_apps=sorted(apps),
        sharing_services=sorted(
            s.name
            for s in Service.objects.filter(cluster=cluster, namespace=namespace).exclude(pk=service.pk)
            if s.selector.get("app") in apps and s.name != service.name
        ),
        routed=_routed(service, kpi),
        refused=[
            (REFUSAL_WORDS.get(kind, kind), rate)
            for kind, rate in sorted(refused_by_service(cluster, namespace).get((namespace, service.name), {}).items())
        ],
        osm=service_policies(cluster, service),
        hidden_traffic=hidden_traffic,
        ingress=ingress_rate(
            BoundaryTraffic.objects.filter(cluster=cluster, direction=BoundaryTraffic.Direction.INGRESS),
            {(p.namespace, p.labels.get("app", ""), p.workload_kind, p.workload_name) for p in pods},
        ),
    )


def _hidden_traffic(cluster: Cluster, namespace: str, reached: list[str], apps: set[str]) -> tuple[float, float] | None:
    """Requests/s between this service and the namespaces hidden from the user, (inbound, outbound): the scoped
    EdgeKPI rows leave that traffic out, so the page says how much there is without naming where."""
    allowed = scope.current_namespaces()
    if allowed is None:
        return None
    with scope.unscoped():
        edges = EdgeKPI.objects.filter(cluster=cluster)
        inbound = edges.filter(destination_namespace=namespace, destination_service__in=reached).exclude(
            source_namespace__in=allowed
        )
        outbound = edges.filter(source_namespace=namespace, source_service__in=apps).exclude(
            destination_namespace__in=allowed
        )
        return (sum(e.request_rate or 0.0 for e in inbound), sum(e.request_rate or 0.0 for e in outbound))
