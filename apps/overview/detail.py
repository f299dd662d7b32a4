"""Everything the service page shows besides its charts, read from the snapshot tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from apps.mesh.models import Pod, Service, TrafficSplit, selects
from apps.metrics.models import EdgeKPI, MetricsState, ServiceKPI


@dataclass(frozen=True)
class ServiceDetail:
    service: Service
    kpi: ServiceKPI | None
    pods: list[Pod]
    inbound: list[EdgeKPI]
    outbound: list[EdgeKPI]
    splits: list[TrafficSplit]
    metrics_state: MetricsState | None
    # The `app` labels of this service's pods (OSM's source_service), and other services whose pods share them:
    # Envoy's stats cannot tell their outbound calls apart.
    source_apps: list[str]
    sharing_services: list[str]

    @property
    def certificate_expires_at(self) -> datetime | None:
        dates = [e.certificate_expires_at for e in self.inbound if e.certificate_expires_at]
        return min(dates) if dates else None

    @property
    def latency_source(self) -> str:
        state = self.metrics_state
        if state is None:
            return "not available: no metrics collected yet"
        if state.latency_source == MetricsState.LatencySource.NONE:
            return f"not available: {state.latency_unavailable_reason or 'no latency series on this Prometheus'}"
        return state.get_latency_source_display()


def service_detail(service: Service) -> ServiceDetail:
    cluster, namespace = service.cluster, service.namespace
    pods = [p for p in Pod.objects.filter(cluster=cluster, namespace=namespace) if selects(service.selector, p.labels)]
    # OSM's relabeling names a caller by its pod's `app` label (source_service), not by a Service name.
    apps = {p.labels["app"] for p in pods if "app" in p.labels}
    splits = [
        s
        for s in TrafficSplit.objects.filter(cluster=cluster, namespace=namespace)
        if s.root_service_name == service.name or any(b.get("service") == service.name for b in s.backends)
    ]
    return ServiceDetail(
        service=service,
        kpi=ServiceKPI.objects.filter(cluster=cluster, namespace=namespace, service=service.name).first(),
        pods=sorted(pods, key=lambda p: p.name),
        inbound=list(
            EdgeKPI.objects.filter(
                cluster=cluster, destination_namespace=namespace, destination_service=service.name
            ).order_by("source_namespace", "source_service")
        ),
        outbound=list(
            EdgeKPI.objects.filter(cluster=cluster, source_namespace=namespace, source_service__in=apps).order_by(
                "destination_namespace", "destination_service"
            )
        ),
        splits=splits,
        metrics_state=MetricsState.objects.filter(cluster=cluster).first(),
        source_apps=sorted(apps),
        sharing_services=sorted(
            s.name
            for s in Service.objects.filter(cluster=cluster, namespace=namespace).exclude(pk=service.pk)
            if s.selector.get("app") in apps and s.name != service.name
        ),
    )
