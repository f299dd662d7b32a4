"""The overview's rows: every service of a cluster with its KPIs, pods, mTLS and health, from the snapshot only; and
the fleet's rows, one per cluster with its services' health, its freshness and its worst services.

A fixed number of queries whatever the mesh size (services, KPIs, split roots) or the number of clusters; joining,
health, sorting and paging happen in Python on plain rows, which for 1,000 services is cheaper than the ORM objects
would be.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.conf import settings

from apps.clusters.freshness import summarize
from apps.clusters.models import Cluster
from apps.clusters.status import KindState, cluster_states
from apps.core.windows import TimeRange
from apps.mesh.istio_splits import virtual_service_splits
from apps.mesh.models import Pod, Service, TrafficSplit, Workload, mtls_state, root_service_name, weight_percents
from apps.metrics.health import DEGRADED, FAILING, HEALTHY, UNKNOWN, Health, assess
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
    # A split root's configured weights, (backend, percent or None), of its first TrafficSplit by name.
    weights: list[tuple[str, float | None]] = field(default_factory=list)

    @property
    def mtls(self) -> str:
        return mtls_state(self.pods_total, self.pods_meshed)

    @property
    def coverage(self) -> float | None:
        return self.pods_meshed / self.pods_total if self.pods_total else None

    @property
    def tcp_bytes_rate(self) -> float | None:
        return tcp_bytes_total(self.kpi)


def split_weights(splits: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[str, float | None]]]:
    """(namespace, root service) of every TrafficSplit apex (spec.service may be an FQDN-ish `svc.ns...`) → its
    backends' configured weights in percent; two splits on one root: the first by name, as the metrics cycle."""
    roots: dict[tuple[str, str], list[tuple[str, float | None]]] = {}
    for s in sorted(splits, key=lambda s: (s["namespace"], s["name"])):
        backends = [b for b in s["backends"] or [] if isinstance(b, dict) and b.get("service")]
        weights = list(zip([str(b["service"]) for b in backends], weight_percents(backends), strict=True))
        roots.setdefault((s["namespace"], root_service_name(s["root_service"])), weights)
    return roots


def snapshot_splits(cluster: Cluster) -> list[dict[str, Any]]:
    """The TrafficSplits, and on Istio the VirtualServices that split a root (apps.mesh.istio_splits), as rows."""
    rows = list(TrafficSplit.objects.filter(cluster=cluster).values("namespace", "name", "root_service", "backends"))
    rows += [
        {"namespace": s.namespace, "name": s.name, "root_service": s.root_service, "backends": s.backends}
        for s in virtual_service_splits(cluster)
    ]
    return rows


def overview_rows(
    cluster: Cluster,
    *,
    namespace: str = "",
    search: str = "",
    sort: str = "name",
    descending: bool = False,
    splits: list[dict[str, Any]] | None = None,
    kpis: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[ServiceRow]:
    """The services of the latest snapshot with their KPIs and split weights: the snapshot's, or, for a past view,
    the `kpis` (ServiceKPI values by (namespace, service), apps.metrics.as_of) and `splits` (TrafficSplit values,
    the history's) of that time. The services and pods are always the latest snapshot's."""
    services = Service.objects.filter(cluster=cluster)
    if namespace:
        services = services.filter(namespace=namespace)
    if search:
        services = services.filter(name__icontains=search)
    if kpis is None:
        stored = ServiceKPI.objects.filter(cluster=cluster)
        if namespace:
            stored = stored.filter(namespace=namespace)
        kpi_by_key = {
            (k["namespace"], k["service"]): k
            for k in stored.values("namespace", "service", "routed_backends", *KPI_FIELDS)
        }
    else:
        kpi_by_key = kpis
    roots = split_weights(snapshot_splits(cluster) if splits is None else splits)
    tolerances = settings.MESHBOARD_HEALTH
    rows = []
    for s in services.values("namespace", "name", "pods_total", "pods_ready", "pods_meshed"):
        key = (s["namespace"], s["name"])
        kpi = kpi_by_key.get(key, {})
        rows.append(
            ServiceRow(
                **s,
                is_split_root=key in roots,
                weights=roots.get(key, []),
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


# The fleet: how many of a cluster's worst services its row names.
FLEET_WORST = 3
_STATUS_ORDER = (FAILING, DEGRADED, HEALTHY, UNKNOWN)


@dataclass(frozen=True)
class WorstService:
    namespace: str
    name: str
    health: Health


@dataclass(frozen=True)
class FleetFreshness:
    """One kind of collection of a fleet row: its state (last success, stale, failing) and, when its last attempt
    failed, the sentence for everyone saying why (never the raw reason, which may name internal addresses)."""

    state: KindState

    @property
    def summary(self) -> str:
        return summarize(self.state.kind, self.state.last_error) if self.state.failing else ""


@dataclass
class FleetRow:
    """One cluster of the fleet: its services per health status, its worst services, and the freshness of each
    collection."""

    cluster: Cluster
    query: str  # URL parameters opening this cluster in the page's time range
    health: dict[str, int]
    worst: list[WorstService]
    kinds: list[FleetFreshness]

    @property
    def services(self) -> int:
        return sum(self.health.values())

    @property
    def status(self) -> str:
        """The worst status among its services (unknown without any)."""
        return next((s for s in _STATUS_ORDER if self.health.get(s)), UNKNOWN)

    @property
    def counts(self) -> list[tuple[str, int]]:
        return [(s, self.health[s]) for s in _STATUS_ORDER if self.health.get(s)]

    def _rank(self) -> tuple:
        return (-Health(self.status).rank, -self.health.get(FAILING, 0), -self.health.get(DEGRADED, 0))


def _badness(health: Health, kpi: dict[str, Any], pods_total: int, pods_ready: int) -> tuple:
    """How bad a service is, for picking a cluster's worst: status, then its 5xx share, then pods not ready."""
    rate = kpi.get("request_rate") or 0
    share_5xx = (kpi.get("rate_5xx") or 0) / rate if rate else 0
    return (health.rank, share_5xx, pods_total - pods_ready, rate)


def fleet_rows(clusters: list[Cluster], time_range: TimeRange, *, search: str = "") -> list[FleetRow]:
    """A row per cluster whose name contains `search`, worst first (then by name), in three queries whatever the
    number of clusters: every cluster's freshness, every service, every service KPI."""
    wanted = [c for c in clusters if search.lower() in c.name.lower()]
    ids = [c.pk for c in wanted]
    kinds = {state.name: [FleetFreshness(k) for k in state.kinds] for state in cluster_states()}
    kpis = {
        (k["cluster_id"], k["namespace"], k["service"]): k
        for k in ServiceKPI.objects.filter(cluster_id__in=ids).values(
            "cluster_id", "namespace", "service", "request_rate", "rate_4xx", "rate_5xx"
        )
    }
    tolerances = settings.MESHBOARD_HEALTH
    health: dict[int, Counter] = {pk: Counter() for pk in ids}
    worst: dict[int, list] = {pk: [] for pk in ids}
    services = Service.objects.filter(cluster_id__in=ids).values_list(
        "cluster_id", "namespace", "name", "pods_total", "pods_ready"
    )
    for order, (pk, namespace, name, pods_total, pods_ready) in enumerate(services.iterator(chunk_size=5000)):
        kpi = kpis.get((pk, namespace, name), {})
        verdict = assess(
            request_rate=kpi.get("request_rate"),
            rate_4xx=kpi.get("rate_4xx"),
            rate_5xx=kpi.get("rate_5xx"),
            pods_total=pods_total,
            pods_ready=pods_ready,
            tolerances=tolerances,
        )
        health[pk][verdict.status] += 1
        if verdict.status in (FAILING, DEGRADED):
            # A bounded heap per cluster: the worst few, without sorting every service of the fleet.
            entry = (_badness(verdict, kpi, pods_total, pods_ready), -order, WorstService(namespace, name, verdict))
            (heapq.heappush if len(worst[pk]) < FLEET_WORST else heapq.heappushpop)(worst[pk], entry)
    rows = [
        FleetRow(
            cluster=c,
            query=f"cluster={quote(c.name)}&{time_range.query}",
            health=dict(health[c.pk]),
            worst=[entry[2] for entry in sorted(worst[c.pk], reverse=True)],
            kinds=kinds.get(c.name, []),
        )
        for c in wanted
    ]
    rows.sort(key=lambda r: (r._rank(), r.cluster.name))
    return rows
