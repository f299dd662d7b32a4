"""The overview's rows: every service of a cluster with its KPIs, pods, mTLS and health, from the snapshot only.

A fixed number of queries whatever the mesh size (services, KPIs, split roots); joining, health, sorting and
paging happen in Python on plain rows, which for 1,000 services is cheaper than the ORM objects would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from apps.clusters.models import Cluster
from apps.mesh.models import Pod, Service, TrafficSplit, Workload, mtls_state, root_service_name
from apps.metrics.health import Health, assess
from apps.metrics.models import KPI_FIELDS, ServiceKPI, tcp_bytes_total

SORTS = {
    "name": lambda r: (r.name, r.namespace),
    "namespace": lambda r: (r.namespace, r.name),
    "rps": lambda r: r.kpi.get("request_rate"),
    "success": lambda r: r.kpi.get("success_rate"),
    "p50": lambda r: r.kpi.get("p50_ms"),
    "p95": lambda r: r.kpi.get("p95_ms"),
    "p99": lambda r: r.kpi.get("p99_ms"),
    "tcp": lambda r: r.tcp_bytes_rate,
    "health": lambda r: r.health.rank,
    "coverage": lambda r: r.coverage,
}


@dataclass
class ServiceRow:
    namespace: str
    name: str
    pods_total: int
    pods_ready: int
    pods_meshed: int
    is_split_root: bool
    kpi: dict[str, Any]
    health: Health
    # A split root's KPIs are its backends' as routed (ServiceKPI.routed_backends): the backends, else empty.
    routed_backends: list[str] = field(default_factory=list)

    @property
    def mtls(self) -> str:
        return mtls_state(self.pods_total, self.pods_meshed)

    @property
    def coverage(self) -> float | None:
        return self.pods_meshed / self.pods_total if self.pods_total else None

    @property
    def tcp_bytes_rate(self) -> float | None:
        return tcp_bytes_total(self.kpi)


def split_roots(cluster: Cluster) -> set[tuple[str, str]]:
    """(namespace, service) of every TrafficSplit apex; spec.service may be an FQDN-ish `svc.ns...`."""
    return {
        (namespace, root_service_name(root))
        for namespace, root in TrafficSplit.objects.filter(cluster=cluster).values_list("namespace", "root_service")
    }


def overview_rows(
    cluster: Cluster, *, namespace: str = "", search: str = "", sort: str = "name", descending: bool = False
) -> list[ServiceRow]:
    services = Service.objects.filter(cluster=cluster)
    kpis = ServiceKPI.objects.filter(cluster=cluster)
    if namespace:
        services, kpis = services.filter(namespace=namespace), kpis.filter(namespace=namespace)
    if search:
        services = services.filter(name__icontains=search)
    kpi_by_key = {
        (k["namespace"], k["service"]): k for k in kpis.values("namespace", "service", "routed_backends", *KPI_FIELDS)
    }
    roots = split_roots(cluster)
    tolerances = settings.MESHBOARD_HEALTH
    rows = []
    for s in services.values("namespace", "name", "pods_total", "pods_ready", "pods_meshed"):
        key = (s["namespace"], s["name"])
        kpi = kpi_by_key.get(key, {})
        rows.append(
            ServiceRow(
                **s,
                is_split_root=key in roots,
                kpi=kpi,
                routed_backends=[b for b in kpi.get("routed_backends") or [] if isinstance(b, str)],
                health=assess(
                    request_rate=kpi.get("request_rate"),
                    rate_4xx=kpi.get("rate_4xx"),
                    rate_5xx=kpi.get("rate_5xx"),
                    pods_total=s["pods_total"],
                    pods_ready=s["pods_ready"],
                    tolerances=tolerances,
                ),
            )
        )
    key_fn = SORTS.get(sort, SORTS["name"])
    # Unknown values sort last in either direction, as a person scanning for the worst expects.
    known = [r for r in rows if key_fn(r) is not None]
    unknown = [r for r in rows if key_fn(r) is None]
    known.sort(key=key_fn, reverse=descending)
    unknown.sort(key=SORTS["name"])
    return known + unknown


def namespaces(cluster: Cluster) -> list[str]:
    """Every namespace holding a service or a workload (bookbuyer holds only a client), in one query."""
    services = Service.objects.filter(cluster=cluster).order_by().values_list("namespace")
    workloads = Workload.objects.filter(cluster=cluster).order_by().values_list("namespace")
    bare_pods = Pod.objects.filter(cluster=cluster, workload_kind="").order_by().values_list("namespace")
    return sorted({ns for (ns,) in services.union(workloads, bare_pods)})
