"""Workloads as the pages show them: Deployments, StatefulSets, DaemonSets, ReplicaSets no Deployment owns, and pods
no controller owns. Their page URLs, the names OSM's Prometheus gives their metrics, and the workload list.

OSM's relabeling (reference osm.md §4.2) names the pod a series was scraped from by its namespace, its `app` label
(`source_service`) and its controller (`source_workload_kind`/`_name`), with a ReplicaSet rewritten to
`Deployment` and its name's last `-suffix` (the pod-template hash) cut off. So a Deployment's calls carry
(Deployment, its name); a bare ReplicaSet's carry (Deployment, its name less the last `-part`); a StatefulSet's and a
DaemonSet's their own kind and name; a bare pod's none. Where a Prometheus lacks those labels (or for a bare pod),
only the app label is known: such traffic belongs to every workload whose pods carry that label, and pages say so.

The list is built in a fixed number of queries whatever the cluster size (workloads, pod counts, bare pods, edges,
refusals), joined in Python as the services overview is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.db.models import Count, Q
from django.urls import reverse

from apps.clusters.models import Cluster
from apps.mesh.models import Pod, Workload, mtls_state
from apps.mesh.names import NAMESPACE, is_dns_subdomain, is_valid_name
from apps.metrics.models import EdgeKPI, Refusal, success_ratio, tcp_bytes_total

POD = "Pod"  # a pod no controller owns: its own workload
# The kinds with a page, as their URLs spell them.
PAGE_KINDS = {
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "daemonset": "DaemonSet",
    "replicaset": "ReplicaSet",
    "pod": POD,
}
KIND_LABELS = {"ReplicaSet": "ReplicaSet (no Deployment)", POD: "Pod (no controller)"}
_HASH_SUFFIX = re.compile(r"(.*)-[^-]+", re.S)


def osm_source(kind: str, name: str) -> tuple[str, str]:
    """(source_workload_kind, source_workload_name) OSM's Prometheus gives the calls of this workload's pods;
    ("", "") for a bare pod, which has no controller."""
    if kind == "ReplicaSet":
        match = _HASH_SUFFIX.fullmatch(name)
        return "Deployment", match.group(1) if match else name
    if kind == POD:
        return "", ""
    return kind, name


@cache
def _pattern() -> str:
    return reverse("overview:workload", args=["NS", "KIND", "NAME"])


def workload_url(namespace: object, kind: object, name: object) -> str:
    """The workload page's URL, or "" when no such workload can exist (a kind without a page, a namespace or a name
    that breaks Kubernetes' naming rules): such a name never goes into a path. The pattern is reversed once with
    placeholders; valid names are lowercase, so they never hold one."""
    url_kind = str(kind).lower()
    if url_kind not in PAGE_KINDS or not is_valid_name(NAMESPACE, namespace) or not is_dns_subdomain(name):
        return ""
    return _pattern().replace("NS", str(namespace), 1).replace("KIND", url_kind, 1).replace("NAME", str(name), 1)


@dataclass(frozen=True, order=True)
class WorkloadRef:
    namespace: str
    kind: str  # Deployment, StatefulSet, DaemonSet, ReplicaSet (bare) or Pod (bare)
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def url(self) -> str:
        return workload_url(self.namespace, self.kind, self.name)

    @property
    def source(self) -> tuple[str, str]:
        return osm_source(self.kind, self.name)

    @property
    def endpoint(self) -> str:
        """How the "can A talk to B?" question names it (apps.policies.smi_access)."""
        return f"{'pod' if self.kind == POD else 'workload'} {self.namespace}/{self.name}"


@dataclass
class WorkloadIndex:
    """Every workload of a cluster (or of one namespace) by the names metrics give its calls: its OSM source labels
    and the app label of its pods. Two queries."""

    refs: list[WorkloadRef]
    apps: dict[WorkloadRef, str]
    by_source: dict[tuple[str, str, str], list[WorkloadRef]] = field(default_factory=dict)
    by_app: dict[tuple[str, str], list[WorkloadRef]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for ref in self.refs:
            kind, name = ref.source
            if name:
                self.by_source.setdefault((ref.namespace, kind, name), []).append(ref)
            if app := self.apps.get(ref):
                self.by_app.setdefault((ref.namespace, app), []).append(ref)

    @classmethod
    def load(cls, cluster: Cluster, namespaces: Iterable[str] | None = None) -> WorkloadIndex:
        workloads = Workload.objects.filter(cluster=cluster)
        bare = Pod.objects.filter(cluster=cluster, workload_kind="")
        if namespaces is not None:
            wanted = sorted(set(namespaces))
            workloads, bare = workloads.filter(namespace__in=wanted), bare.filter(namespace__in=wanted)
        apps: dict[WorkloadRef, str] = {}
        for ns, kind, name, labels in workloads.values_list("namespace", "kind", "name", "template_labels"):
            apps[WorkloadRef(ns, kind, name)] = _app(labels)
        for ns, name, labels in bare.values_list("namespace", "name", "labels"):
            apps[WorkloadRef(ns, POD, name)] = _app(labels)
        return cls(sorted(apps), apps)

    def callers(self, namespace: str, app: str, workload_kind: str, workload_name: str) -> list[WorkloadRef]:
        """The workloads a series' source labels may stand for: the one its workload labels name, else (labels
        blank) every workload whose pods carry its app label."""
        if workload_name:
            return self.by_source.get((namespace, workload_kind, workload_name), [])
        return self.by_app.get((namespace, app), []) if app else []

    def caller(self, namespace: str, app: str, workload_kind: str, workload_name: str) -> WorkloadRef | None:
        """The one workload those labels stand for, or None when none or several do."""
        found = self.callers(namespace, app, workload_kind, workload_name)
        return found[0] if len(found) == 1 else None


def _app(labels: object) -> str:
    value = labels.get("app") if isinstance(labels, dict) else None
    return value if isinstance(value, str) else ""


# ---------------------------------------------------------------------------------------------------------------
# The workload list (the overview's "workloads" view)


SUMMED = ("request_rate", "rate_4xx", "rate_5xx", "tcp_bytes_sent_rate", "tcp_bytes_received_rate")
CALLER_REFUSALS = ("passthrough", "no-route")


@dataclass
class WorkloadRow:
    ref: WorkloadRef
    replicas: int
    ready_replicas: int
    service_account: str
    pods_total: int = 0
    pods_ready: int = 0
    pods_meshed: int = 0
    kpi: dict[str, float] = field(default_factory=dict)  # outbound, summed over its edges; absent: unknown
    destinations: set[tuple[str, str]] = field(default_factory=set)
    refused: dict[str, float] = field(default_factory=dict)  # caller-side refusals by kind
    by_app: bool = False  # some of it attributed by app label only

    namespace = property(lambda self: self.ref.namespace)
    name = property(lambda self: self.ref.name)
    kind = property(lambda self: self.ref.kind)
    url = property(lambda self: self.ref.url)

    @property
    def success_rate(self) -> float | None:
        return success_ratio(self.kpi.get("request_rate"), self.kpi.get("rate_5xx"))

    @property
    def tcp_bytes_rate(self) -> float | None:
        return tcp_bytes_total(self.kpi)

    @property
    def outside_routes(self) -> float | None:
        """Connections/s its sidecars sent outside their routes or refused themselves; None when none measured."""
        return sum(self.refused.values()) if self.refused else None

    @property
    def coverage(self) -> float | None:
        return self.pods_meshed / self.pods_total if self.pods_total else None

    @property
    def mtls(self) -> str:
        return mtls_state(self.pods_total, self.pods_meshed)


WORKLOAD_SORTS = {
    "name": lambda r: (r.name, r.namespace),
    "namespace": lambda r: (r.namespace, r.name),
    "kind": lambda r: (r.kind, r.namespace, r.name),
    "ready": lambda r: r.pods_ready / r.pods_total if r.pods_total else None,
    "rps": lambda r: r.kpi.get("request_rate"),
    "success": lambda r: r.success_rate,
    "tcp": lambda r: r.tcp_bytes_rate,
    "refused": lambda r: r.outside_routes,
    "coverage": lambda r: r.coverage,
}


def _add(into: dict[str, float], values: dict[str, Any]) -> None:
    for name in SUMMED:
        if values.get(name) is not None:
            into[name] = into.get(name, 0.0) + values[name]


def workload_rows(
    cluster: Cluster, *, namespace: str = "", search: str = "", sort: str = "name", descending: bool = False
) -> list[WorkloadRow]:
    """Every workload with its outbound KPIs, pods and sidecars: five queries whatever the cluster size."""
    workloads = Workload.objects.filter(cluster=cluster)
    pods = Pod.objects.filter(cluster=cluster)
    edges = EdgeKPI.objects.filter(cluster=cluster)
    refusals = Refusal.objects.filter(cluster=cluster, side=Refusal.Side.CALLER, kind__in=CALLER_REFUSALS)
    if namespace:
        workloads, pods = workloads.filter(namespace=namespace), pods.filter(namespace=namespace)
        edges, refusals = edges.filter(source_namespace=namespace), refusals.filter(namespace=namespace)
    bare = pods.filter(workload_kind="")
    if search:
        workloads, bare = workloads.filter(name__icontains=search), bare.filter(name__icontains=search)
    rows: dict[WorkloadRef, WorkloadRow] = {}
    apps: dict[WorkloadRef, str] = {}
    for w in workloads.values("namespace", "kind", "name", "replicas", "ready_replicas", "service_account",
                              "template_labels"):  # fmt: skip
        ref = WorkloadRef(w["namespace"], w["kind"], w["name"])
        rows[ref] = WorkloadRow(ref, w["replicas"], w["ready_replicas"], w["service_account"] or "default")
        apps[ref] = _app(w["template_labels"])
    counts = (
        pods.exclude(workload_kind="")
        .values("namespace", "workload_kind", "workload_name")
        .annotate(
            total=Count("id"),
            ready=Count("id", filter=Q(ready=True)),
            meshed=Count("id", filter=Q(has_sidecar=True)),
        )
    )
    for c in counts:
        row = rows.get(WorkloadRef(c["namespace"], c["workload_kind"], c["workload_name"]))
        if row is not None:
            row.pods_total, row.pods_ready, row.pods_meshed = c["total"], c["ready"], c["meshed"]
    bare_fields = ("namespace", "name", "labels", "ready", "has_sidecar", "service_account")
    for ns, name, labels, ready, meshed, account in bare.values_list(*bare_fields):
        ref = WorkloadRef(ns, POD, name)
        rows[ref] = WorkloadRow(ref, 1, int(ready), account or "default", 1, int(ready), int(meshed))
        apps[ref] = _app(labels)
    index = WorkloadIndex(sorted(rows), {ref: apps[ref] for ref in rows})

    edge_fields = ("source_namespace", "source_service", "source_workload_kind", "source_workload_name",
                   "destination_namespace", "destination_service", *SUMMED)  # fmt: skip
    for e in edges.values(*edge_fields):
        for ref in index.callers(
            e["source_namespace"], e["source_service"], e["source_workload_kind"], e["source_workload_name"]
        ):
            row = rows[ref]
            _add(row.kpi, e)
            row.destinations.add((e["destination_namespace"], e["destination_service"]))
            row.by_app = row.by_app or not e["source_workload_name"]
    for ns, app, w_kind, w_name, kind, rate in refusals.values_list(
        "namespace", "app", "workload_kind", "workload_name", "kind", "rate"
    ):
        for ref in index.callers(ns, app, w_kind, w_name):
            row = rows[ref]
            row.refused[kind] = row.refused.get(kind, 0.0) + rate
            row.by_app = row.by_app or not w_name

    key_fn = WORKLOAD_SORTS.get(sort, WORKLOAD_SORTS["name"])
    known = [r for r in rows.values() if key_fn(r) is not None]
    unknown = [r for r in rows.values() if key_fn(r) is None]
    known.sort(key=key_fn, reverse=descending)
    unknown.sort(key=WORKLOAD_SORTS["name"])
    return known + unknown
