"""The service graph as plain node and edge dicts, built from the snapshot in a fixed number of queries.

Nodes
- `service`: a Service in the snapshot. Split roots and backends are marked (`split: "root" | "backend"`).
- `workload`: a caller with no Service of its own name: OSM's `source_service` is the caller pod's `app` label
  (reference osm.md §4.2), so a client such as bookbuyer is drawn by that label, with the sidecars its pods carry.
- `ingress`: an ingress controller (the Service an IngressBackend admits traffic from; an IP range or an
  authenticated principal when no Service is named); `external`: an Egress policy's destinations.
- `unknown`: a peer the metrics name but the snapshot does not hold (a deleted service, a source from outside the
  mesh, a mislabelled series). Its strings come from Prometheus and are shown as text only.
- `namespace`: a box holding the rest (each node's `parent`). The page draws a namespace either as that box around
  its nodes or collapsed into one node, with its members counted by kind and health and their KPIs summed
  (`_namespace_summary`); above a node count it starts with every namespace collapsed.

Edges
- `traffic`: observed traffic from EdgeKPI, labelled with what was denied (`denied 2 rps`), rps, 5xx % and p99.
  Envoy reports a split root's traffic under its backends' clusters (osm.md §4.3), so caller → backend rows are drawn
  caller → root. An edge with nothing measured (no request, byte or refusal: a sidecar configured, by policy, for a
  destination it does not call) is `idle`; so is a caller or unknown peer seen only on idle edges. The page hides them
  unless its "policy-only edges" box is ticked.
- `split`: root → backend, one per TrafficSplit and backend, with the configured weight beside the observed share
  (SplitShare) and the backend's traffic. Several splits on one root are each drawn, named in their labels, with a
  warning on the root, on their edges and in the response's `warnings` (OSM uses only one: policies MB-SPLIT-001).
- `ingress`: an ingress controller (an IngressBackend's source) → a backend it admits, with the requests the
  backend's pods admitted from outside; `egress`: a caller → an Egress policy's `external` node, with the requests
  its sidecars sent on the policy's clusters (apps.graph.boundary). Traffic edges a Retry or a local rate limit
  shapes carry `retry` / `ratelimit` and say which policy in their `details`.
- `lock`: "mtls" when every pod at both ends has the sidecar (OSM encrypts all in-mesh traffic, osm.md §3.3),
  "partial" when some lack it, "plain" when an end has none, "unknown" when an end is not in the snapshot.
- `policy` of a traffic edge: what the access policy says of it (smi_access.pair_policy between the service accounts
  of the caller's pods, by their `app` label, and of the destination's pods): "allowed", "denied", "partly" or ""
  (unknown); a denied one carries the class `policy-denied` and says so in its label.

"As of" a past time (`past`, apps.overview.as_of): the TrafficSplits, the policy and the KPIs (services, edges, split
shares) are those of then; the Services, pods and service accounts the latest snapshot's (the history keeps no pods).

Health is the overview's (apps.overview.overview, apps.metrics.health): the same rule, in the same words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q
from django.db.models.fields.json import KT
from django.urls import reverse

from apps.clusters import scope
from apps.clusters.models import Cluster
from apps.mesh.kept import KeptPerSnapshot, snapshot_version
from apps.mesh.models import (
    MeshNamespace,
    Pod,
    Service,
    Workload,
    edge_lock,
    root_service_name,
    selects,
    sidecar_coverage,
    weight_percents,
)
from apps.mesh.names import SERVICE, name_problem
from apps.metrics.health import UNKNOWN, Health, assess
from apps.metrics.models import EdgeKPI, SplitShare, error_ratio
from apps.overview.as_of import PastView
from apps.overview.overview import ServiceRow, overview_rows, snapshot_splits
from apps.overview.workloads import POD, workload_url
from apps.policies.istio_access import ISTIO, IstioAccess, current_policy
from apps.policies.smi_access import SMI, Identity, Policy, pair_policy

from . import boundary as mesh_edge
from .query import parse

EDGE_FIELDS = (
    "source_namespace",
    "source_service",
    "destination_namespace",
    "destination_service",
    "request_rate",
    "rate_5xx",
    "success_rate",
    "p99_ms",
    "tcp_bytes_sent_rate",
    "tcp_bytes_received_rate",
    "tls_error_rate",
    "denied_rate",
)


def _rate(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _pct(ratio: float) -> str:
    pct = ratio * 100
    if pct == 0:
        return "0%"
    return f"{pct:.2g}%" if pct < 10 else f"{pct:.0f}%"


def _bytes(value: float) -> str:
    for unit in ("B/s", "kB/s", "MB/s"):
        if value < 1000:
            return f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} GB/s"


def traffic_label(
    rps: float | None, error: float | None, p99: float | None, tcp: float | None, denied: float | None = None
) -> str:
    """An edge's label: what was refused first (`denied 2 rps`, `denied 3 of 5 rps`), then rps, 5xx and p99, or the
    TCP bytes; "no traffic measured" when none is."""
    parts = []
    if denied:
        of = f"of {_rate(rps)} " if rps is not None and rps >= denied else ""
        parts.append(f"denied {_rate(denied)} {of}rps")
        if rps and not of:  # more refused than requested: the two counts come from different stats
            parts.append(f"{_rate(rps)} rps")
    elif rps is not None:
        parts.append(f"{_rate(rps)} rps")
    if rps is not None:
        if error is not None:
            parts.append(f"{_pct(error)} 5xx")
        if p99 is not None:
            parts.append(f"p99 {p99:.3g} ms")
    elif tcp is not None:
        parts.append(f"TCP {_bytes(tcp)}")
    return " · ".join(parts) or "no traffic measured"


class _Acc:
    """Traffic summed over the EdgeKPI rows folded into one drawn edge."""

    __slots__ = ("denied", "known", "p99", "policies", "rate5", "rps", "tcp", "tls_errors")

    def __init__(self) -> None:
        self.rps: float | None = None
        self.rate5: float | None = None
        self.p99: float | None = None
        self.tcp: float | None = None
        self.denied: float | None = None
        self.tls_errors: float | None = None
        self.policies: set[str] = set()  # what policy says of each row folded in

    @staticmethod
    def _sum(a: float | None, b: float | None) -> float | None:
        return b if a is None else a if b is None else a + b

    def add(self, row: dict[str, Any]) -> None:
        self.rps = self._sum(self.rps, row["request_rate"])
        self.rate5 = self._sum(self.rate5, row["rate_5xx"])
        if row["p99_ms"] is not None:  # the worst of the parts: a p99 cannot be added
            self.p99 = row["p99_ms"] if self.p99 is None else max(self.p99, row["p99_ms"])
        sent, received = row["tcp_bytes_sent_rate"], row["tcp_bytes_received_rate"]
        if sent is not None or received is not None:
            self.tcp = self._sum(self.tcp, (sent or 0.0) + (received or 0.0))
        self.denied = self._sum(self.denied, row["denied_rate"])
        self.tls_errors = self._sum(self.tls_errors, row["tls_error_rate"])

    @property
    def policy(self) -> str:
        """The rows' verdicts as one: all allowed, all denied, some of each ("partly"), or "" when none is known."""
        known = self.policies - {""}
        if not known:
            return ""
        return known.pop() if len(known) == 1 else "partly"

    def data(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "rps": self.rps,
            "error": error_ratio(self.rps, self.rate5),
            "p99_ms": self.p99,
            "tcp_bytes_rate": self.tcp,
            "denied_rps": self.denied,
            "tls_error_rps": self.tls_errors,
        }


@dataclass
class _Snapshot:
    """What the graph reads, in a fixed number of queries: the overview's rows, splits, split shares, pods by `app`
    label, edges, and the monitored namespaces."""

    rows: list[ServiceRow]
    splits: list[dict[str, Any]]
    shares: dict[tuple[str, str, str], dict[str, Any]]
    groups: dict[tuple[str, str], dict[str, Any]]
    edge_rows: list[dict[str, Any]]
    monitored: dict[str, str]
    policy: Policy | IstioAccess
    accounts: _Accounts

    @classmethod
    def load(cls, cluster: Cluster, past: PastView | None = None) -> _Snapshot:
        version = snapshot_version(cluster)  # before the pods the kept accounts are made from (apps.mesh.kept)
        groups = (
            Pod.objects.filter(cluster=cluster)
            .annotate(app=KT("labels__app"))
            # By service account too: the callers' identities (_Accounts), at no extra query.
            .values("namespace", "app", "workload_kind", "workload_name", "service_account")
            .annotate(
                total=Count("id"),
                meshed=Count("id", filter=Q(has_sidecar=True)),
                ready=Count("id", filter=Q(ready=True)),
                some_pod=Max("name"),
            )
            .order_by()
        )
        groups = list(groups)
        if past is not None:
            policy, accounts = past.policy, _Accounts.for_policy(past.policy, cluster, groups)
        else:
            # Kept per namespace scope until the snapshot changes, with the verdicts said so far: the policy, the
            # accounts and the verdicts were a third of a 1,000-service graph's server time.
            policy, accounts = _judged.get(
                cluster,
                scope.current_namespaces(),
                lambda: _judge(current_policy(cluster), cluster, groups),
                version=version,
            )
        monitored = dict(MeshNamespace.objects.filter(cluster=cluster).values_list("name", "monitored_by"))
        if past is not None:
            return cls(
                rows=overview_rows(cluster, splits=past.splits, kpis=past.kpis.services),
                splits=past.splits,
                shares=past.kpis.shares,
                groups=_app_groups(groups),
                edge_rows=_past_rows(past.kpis.edges),
                monitored=monitored,
                policy=policy,
                accounts=accounts,
            )
        shares = SplitShare.objects.filter(cluster=cluster).values(
            "namespace", "split", "backend", "share_short", "share_5m", "short_window_seconds"
        )
        return cls(
            rows=overview_rows(cluster),  # services + KPIs + split roots, with the overview's health
            splits=snapshot_splits(cluster),
            shares={(s["namespace"], s["split"], s["backend"]): s for s in shares},
            groups=_app_groups(groups),
            edge_rows=[
                dict(zip(EDGE_FIELDS, r, strict=True))
                for r in EdgeKPI.objects.filter(cluster=cluster).values_list(*EDGE_FIELDS)
            ]
            + _crossing_rows(cluster),
            monitored=monitored,
            policy=policy,
            accounts=accounts,
        )


# The one peer that stands for every namespace hidden from a namespace-limited user (apps/clusters/scope.py). Not a
# Kubernetes name, so nothing links it to a page, and no real namespace or service can be mistaken for it.
HIDDEN_NAMESPACE, HIDDEN_PEER = "(hidden)", "(other namespaces)"


def _crossing_rows(cluster: Cluster) -> list[dict[str, Any]]:
    """For a namespace-limited user: the traffic between their namespaces and the others (which the scoped EdgeKPI
    rows leave out), with the hidden end replaced by HIDDEN_PEER, so a team sees its calls in and out, summed per
    edge, and never another namespace's name."""
    allowed = scope.current_namespaces()
    if allowed is None:
        return []
    with scope.unscoped():
        crossing = list(
            EdgeKPI.objects.filter(cluster=cluster)
            .filter(Q(source_namespace__in=allowed) ^ Q(destination_namespace__in=allowed))
            .values_list(*EDGE_FIELDS)
        )
    return [_hide_other_end(dict(zip(EDGE_FIELDS, values, strict=True)), allowed) for values in crossing]


def _hide_other_end(row: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    end = "source" if row["source_namespace"] not in allowed else "destination"
    row[f"{end}_namespace"], row[f"{end}_service"] = HIDDEN_NAMESPACE, HIDDEN_PEER
    return row


def _past_rows(edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A past view's edges, from Prometheus (which knows no namespace scope), as the present's are for a
    namespace-limited user: those inside their namespaces, and those crossing with the hidden end as HIDDEN_PEER;
    the rest are left out."""
    rows = [{f: e.get(f) for f in EDGE_FIELDS} for e in edges]
    allowed = scope.current_namespaces()
    if allowed is None:
        return rows
    out = []
    for row in rows:
        inside = (row["source_namespace"] in allowed, row["destination_namespace"] in allowed)
        if all(inside):
            out.append(row)
        elif any(inside):
            out.append(_hide_other_end(row, allowed))
    return out


@dataclass
class _Accounts:
    """The service accounts of the snapshot's pods, by (namespace, `app` label) (a caller, as OSM's metrics name it)
    and by (namespace, Service) (a destination: the pods its selector picks)."""

    by_app: dict[tuple[str, str], set[Identity]]
    by_service: dict[tuple[str, str], set[Identity]]
    said: dict[tuple[tuple[str, str], tuple[str, str]], str] = field(default_factory=dict)

    @classmethod
    def for_policy(cls, policy: Policy | IstioAccess, cluster: Cluster, groups: list[dict[str, Any]]) -> _Accounts:
        """Only SMI mode and Istio ask whose pods run as whom: permissive allows all, an unknown mode says nothing."""
        return cls.load(cluster, groups) if policy.mode in (SMI, ISTIO) else cls({}, {})

    @classmethod
    def load(cls, cluster: Cluster, groups: list[dict[str, Any]]) -> _Accounts:
        """From the pod groups (_Snapshot: by namespace, app label and service account) and three queries: the
        Services' selectors, and, for a selector other than a lone `app` term, the pod templates and bare pods of
        the namespaces of such Services."""
        by_app: dict[tuple[str, str], set[Identity]] = {}
        for g in groups:
            if isinstance(g["app"], str):
                who = Identity(g["namespace"], g["service_account"] or "default")
                by_app.setdefault((g["namespace"], g["app"]), set()).add(who)
        by_service: dict[tuple[str, str], set[Identity]] = {}
        others: list[tuple[str, str, dict, str, str]] = []  # selectors that need the pods' labels
        for ns, name, selector in Service.objects.filter(cluster=cluster).values_list("namespace", "name", "selector"):
            if not selector or not isinstance(selector, dict):
                continue
            if set(selector) == {"app"} and isinstance(selector["app"], str):  # OSM's usual Service: one app
                if found := by_app.get((ns, selector["app"])):
                    by_service[(ns, name)] = found
                continue
            key, value = min(selector.items())  # a Service's pods: those carrying one term, then the rest
            if isinstance(value, str):
                others.append((ns, name, selector, key, value))
        keys = {key for *_rest, key, _value in others}
        by_term: dict[tuple[str, str, str], list[tuple[dict, Identity]]] = {}
        namespaces = sorted({ns for ns, *_rest in others}) or [""]  # "" names no namespace: the queries find none
        # What those selectors pick: the workloads' pod templates (a pod runs as its template says, and there are
        # fewer templates than pods) and the pods no controller owns; asked even when none is needed, so the number
        # of queries does not depend on the mesh.
        templates = Workload.objects.filter(cluster=cluster, namespace__in=namespaces).values_list(
            "namespace", "template_labels", "service_account"
        )
        bare = Pod.objects.filter(cluster=cluster, namespace__in=namespaces, workload_kind="").values_list(
            "namespace", "labels", "service_account"
        )
        for ns, labels, sa in (*templates, *bare):
            labels = labels if isinstance(labels, dict) else {}
            for key in keys & labels.keys():
                if isinstance(labels[key], str):  # a label value is a string; a hostile row's may not be
                    by_term.setdefault((ns, key, labels[key]), []).append((labels, Identity(ns, sa or "default")))
        for ns, name, selector, key, value in others:
            found = {who for labels, who in by_term.get((ns, key, value), ()) if selects(selector, labels)}
            if found:
                by_service[(ns, name)] = found
        return cls(by_app, by_service)

    def policy(self, policy: Policy | IstioAccess, row: dict[str, Any]) -> str:
        """What `policy` says of one EdgeKPI row (caller's `app` label → destination Service)."""
        if policy.mode not in (SMI, ISTIO):
            return pair_policy(policy, (), ())
        source = (row["source_namespace"], row["source_service"])
        destination = (row["destination_namespace"], row["destination_service"])
        if (source, destination) not in self.said:  # rows of several workloads with one app label share it
            sources, destinations = self.by_app.get(source, ()), self.by_service.get(destination, ())
            self.said[(source, destination)] = (
                policy.pair(sources, destinations)
                if isinstance(policy, IstioAccess)
                else pair_policy(policy, sources, destinations)
            )
        return self.said[(source, destination)]


def _judge(
    policy: Policy | IstioAccess, cluster: Cluster, groups: list[dict[str, Any]]
) -> tuple[Policy | IstioAccess, _Accounts]:
    return policy, _Accounts.for_policy(policy, cluster, groups)


def _judged_weight(judged: tuple[Policy | IstioAccess, _Accounts]) -> int:
    """About how much a kept policy and its accounts hold: grants or workload groups, identities, verdicts said."""
    policy, accounts = judged
    held = len(policy.grants) if isinstance(policy, Policy) else len(policy.groups) + policy.verdicts_said
    return 1 + held + len(accounts.by_app) + len(accounts.by_service) + len(accounts.said)


# The present policy and accounts by (cluster, namespace scope): the verdicts they say depend on nothing else.
KEPT_JUDGED = 200_000
_judged: KeptPerSnapshot[tuple[Policy | IstioAccess, _Accounts]] = KeptPerSnapshot(KEPT_JUDGED, _judged_weight)


def _app_groups(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Pods by (namespace, app label) with their counts, and the page of the one workload running them ("" when
    several do: the label alone cannot say whose calls they are). A pod no controller owns is its own workload."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if row["app"] is None:
            continue
        group = groups.setdefault(
            (row["namespace"], row["app"]), {"total": 0, "meshed": 0, "ready": 0, "workloads": set()}
        )
        for count in ("total", "meshed", "ready"):
            group[count] += row[count]
        if row["workload_kind"]:
            group["workloads"].add((row["workload_kind"], row["workload_name"]))
        else:  # bare pods: each its own workload, so several of them are several workloads
            group["workloads"].update([(POD, row["some_pod"])] if row["total"] == 1 else [(POD, ""), (POD, None)])
    for (ns, _app), group in groups.items():
        workloads = group.pop("workloads")
        group["url"] = workload_url(ns, *next(iter(workloads))) if len(workloads) == 1 else ""
    return groups


class _Nodes(dict):
    """The graph's nodes by id; callers and unknown peers are created on first sight."""

    def __init__(self, groups: dict[tuple[str, str], dict[str, Any]]) -> None:
        super().__init__()
        self.groups = groups

    def add(self, data: dict[str, Any], health: Health) -> None:
        data["health"] = health.status
        data["reasons"] = health.reasons
        self[data["id"]] = data

    def coverage(self, node_id: str) -> str:
        node = self.get(node_id)
        return node["sidecars"] if node else "unknown"

    def peer(self, ns: str, name: str, *, caller: bool) -> str:
        """The node a metrics name stands for: a service, else (callers only) the workload of that `app` label,
        else an unknown peer."""
        service_id = f"svc:{ns}/{name}"
        if service_id in self:
            return service_id
        group = self.groups.get((ns, name)) if caller else None
        node_id = f"wl:{ns}/{name}" if group else service_id
        if node_id not in self:
            data, health = _workload_node(name, group) if group else _unknown_node(hidden=ns == HIDDEN_NAMESPACE)
            data.update(id=node_id, namespace=ns, name=name, split="", rps=None, error=None, success=None, p99_ms=None)
            data["url"] = group["url"] if group else ""  # the workload page, when one workload has that app label
            self.add(data, health)
        return node_id


def _workload_node(app: str, group: dict[str, Any]) -> tuple[dict[str, Any], Health]:
    health = assess(
        request_rate=None,
        rate_4xx=None,
        rate_5xx=None,
        pods_total=group["total"],
        pods_ready=group["ready"],
        tolerances=settings.MESHBOARD_HEALTH,
    )
    data = {
        "kind": "workload",
        "sidecars": sidecar_coverage(group["total"], group["meshed"]),
        "pods": f"{group['meshed']}/{group['total']} with sidecar, {group['ready']} ready (app={app})",
    }
    return data, health


def _unknown_node(*, hidden: bool = False) -> tuple[dict[str, Any], Health]:
    why = "namespaces hidden from you: their traffic with yours, summed" if hidden else None
    health = Health(UNKNOWN, [why or "not in the latest snapshot: named only by the metrics"])
    return {"kind": "unknown", "sidecars": "unknown", "pods": ""}, health


def _service_nodes(rows: list[ServiceRow], nodes: _Nodes, past: PastView | None = None) -> None:
    detail = reverse("overview:detail", args=["NS", "NAME"])
    then = f"?{past.chart_range}" if past else ""  # a past view opens the service's charts ending then
    for r in rows:
        rps, rate5 = r.kpi.get("request_rate"), r.kpi.get("rate_5xx")
        nodes.add(
            {
                "id": f"svc:{r.namespace}/{r.name}",
                "kind": "service",
                "namespace": r.namespace,
                "name": r.name,
                "split": "root" if r.is_split_root else "",
                "sidecars": sidecar_coverage(r.pods_total, r.pods_meshed),
                "pods": f"{r.pods_meshed}/{r.pods_total} with sidecar, {r.pods_ready} ready",
                "rps": rps,
                "error": error_ratio(rps, rate5),
                "success": r.kpi.get("success_rate"),
                "p99_ms": r.kpi.get("p99_ms"),
                "url": (url + then) if (url := _service_url(detail, r.namespace, r.name)) else "",
            },
            r.health,
        )


def _service_url(detail: str, namespace: str, name: str) -> str:
    """The service page's URL, from the pattern reversed once with the placeholders NS and NAME (one reverse() per
    node would cost more than the rest of a node); valid names are lowercase, so they never hold a placeholder.
    "" for names no Service can have (apps.mesh.names)."""
    if name_problem(SERVICE, namespace, name):
        return ""
    return detail.replace("NS", namespace, 1).replace("NAME", name, 1)


def _split_edges(
    snap: _Snapshot, nodes: _Nodes
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str], list[dict[str, Any]]]:
    """The root → backend edges with configured weight and observed share, by edge id (one per split and backend:
    two splits on one root are both drawn), each backend's root node id by (namespace, backend service), and a warning
    per root that several splits name (policies check MB-SPLIT-001: OSM uses only one of them). Marks backend nodes."""
    root_of: dict[tuple[str, str], str] = {}
    split_edges: dict[str, dict[str, Any]] = {}
    by_root: dict[str, list[str]] = {}
    for s in snap.splits:
        by_root.setdefault(f"svc:{s['namespace']}/{root_service_name(s['root_service'])}", []).append(s["name"])
    warnings = []
    for root_id, names in sorted(by_root.items()):
        if len(names) < 2:
            continue
        names.sort()
        text = (
            f"{len(names)} TrafficSplits for root {root_id.removeprefix('svc:')}: {', '.join(names)}; OSM uses only "
            "one of them, so each is drawn apart and the weights of the others are not applied (MB-SPLIT-001)"
        )
        warnings.append({"node": root_id, "splits": names, "text": text})
        if root_id in nodes:
            nodes[root_id].setdefault("warnings", []).append(text)
    conflicted = {w["node"]: w["text"] for w in warnings}
    for s in snap.splits:
        ns = s["namespace"]
        root_id = f"svc:{ns}/{root_service_name(s['root_service'])}"
        backends = [b for b in (s["backends"] or []) if isinstance(b, dict) and b.get("service")]
        for b, pct in zip(backends, weight_percents(backends), strict=True):
            backend_id = f"svc:{ns}/{b['service']}"
            if backend_id in nodes and nodes[backend_id]["split"] != "root":
                nodes[backend_id]["split"] = "backend"
            root_of.setdefault((ns, b["service"]), root_id)
            share = snap.shares.get((ns, s["name"], b["service"]), {})
            edge_id = f"split:{ns}/{s['name']}>{b['service']}"
            split_edges[edge_id] = {
                "id": edge_id,
                "source": root_id,
                "target": backend_id,
                "kind": "split",
                "split": s["name"],
                "weight": b.get("weight"),
                "weight_pct": pct,
                "observed_pct": share["share_short"] * 100 if share.get("share_short") is not None else None,
                "observed_5m_pct": share["share_5m"] * 100 if share.get("share_5m") is not None else None,
                "observed_window_s": share.get("short_window_seconds"),
                "warnings": [conflicted[root_id]] if root_id in conflicted else [],
            }
    return split_edges, root_of, warnings


def _fold_traffic(
    snap: _Snapshot, nodes: _Nodes, root_of: dict[tuple[str, str], str]
) -> tuple[dict[tuple[str, str], _Acc], dict[str, _Acc]]:
    """EdgeKPI rows summed per drawn edge (caller → backend drawn caller → root), and each backend's own traffic."""
    traffic: dict[tuple[str, str], _Acc] = {}
    backend_traffic: dict[str, _Acc] = {}
    for e in snap.edge_rows:
        source = nodes.peer(e["source_namespace"], e["source_service"], caller=True)
        dest_key = (e["destination_namespace"], e["destination_service"])
        target = nodes.peer(*dest_key, caller=False)
        root = root_of.get(dest_key)
        # A root that is no Service of the snapshot (deleted, misspelt) has no node: the edge stays on the backend.
        if root is not None and root != source and root in nodes:
            backend_traffic.setdefault(target, _Acc()).add(e)
            target = root
        acc = traffic.setdefault((source, target), _Acc())
        acc.add(e)
        acc.policies.add(snap.accounts.policy(snap.policy, e))
    return traffic, backend_traffic


def _edges(
    nodes: _Nodes,
    traffic: dict[tuple[str, str], _Acc],
    split_edges: dict[str, dict[str, Any]],
    backend_traffic: dict[str, _Acc],
) -> dict[str, dict[str, Any]]:
    """Traffic edges (idle when nothing is measured on them: known from the sidecars' configuration, which OSM derives
    from policy, with no request, byte or refusal counted) and split edges (never idle: they are configuration)."""
    edges: dict[str, dict[str, Any]] = {}
    for (source, target), acc in traffic.items():
        data = acc.data()
        idle = not data["rps"] and not data["tcp_bytes_rate"] and not data["denied_rps"]
        if idle:  # "0% 5xx" of no request says nothing; a measured zero and nothing measured differ
            measured = data["rps"] == 0 or data["tcp_bytes_rate"] == 0
            label = "policy-only · " + ("0 rps" if measured else "nothing measured")
        else:
            label = traffic_label(
                data["rps"], data["error"], data["p99_ms"], data["tcp_bytes_rate"], data["denied_rps"]
            )
            if data["policy"] == "denied" and not data["denied_rps"]:  # measured refusals say it already
                label = f"denied by policy · {label}"
        data.update(
            id=f"e:{source}>{target}",
            source=source,
            target=target,
            kind="traffic",
            lock=edge_lock(nodes.coverage(source), nodes.coverage(target)),
            label=label,
            idle=idle,
            warnings=[],
        )
        edges[data["id"]] = data
    for edge_id, data in split_edges.items():
        if data["source"] not in nodes or data["target"] not in nodes:
            continue
        data.update(backend_traffic.get(data["target"], _Acc()).data())
        data["lock"] = edge_lock(nodes.coverage(data["source"]), nodes.coverage(data["target"]))
        data["idle"] = False
        weight = f"{data['weight_pct']:.0f}%" if data["weight_pct"] is not None else f"{data['weight']!r} (invalid)"
        observed = f"{data['observed_pct']:.0f}%" if data["observed_pct"] is not None else "unknown"
        data["label"] = f"weight {weight} · observed {observed}"
        if data["warnings"]:  # several splits on this root: say whose weight this is
            data["label"] = f"⚠ {data['split']}: {data['label']}"
        edges[edge_id] = data
    return edges


def _mark_idle_peers(nodes: dict, edges: dict) -> None:
    """A caller or unknown peer seen only on idle edges is idle too (hidden with them); services never are."""
    busy = set()
    for e in edges.values():
        if not e["idle"]:
            busy.update((e["source"], e["target"]))
    for node_id, n in nodes.items():
        n["idle"] = n["kind"] != "service" and node_id not in busy


def _in_namespaces(nodes: dict, edges: dict, wanted: set[str]) -> tuple[set[str], set[str]]:
    """The ids of the chosen namespaces' nodes and the peers they talk to, and of the edges between them (everything
    when none is chosen). A peer reached only by idle edges is marked idle: it goes with them."""
    if not wanted:
        return set(nodes), set(edges)
    inside = {i for i, n in nodes.items() if n["namespace"] in wanted}
    keep, busy = set(inside), set(inside)
    for e in edges.values():
        if e["source"] in inside or e["target"] in inside:
            keep.update((e["source"], e["target"]))
            if not e["idle"]:
                busy.update((e["source"], e["target"]))
    for node_id in keep - busy:
        nodes[node_id]["idle"] = True
    return keep, {i for i, e in edges.items() if e["source"] in keep and e["target"] in keep}


def _name_ends(nodes: dict, edges: dict) -> None:
    """Give each edge its ends' names and kinds, so find/hide expressions can match on them."""
    for e in edges.values():
        s, t = nodes[e["source"]], nodes[e["target"]]
        e.update(
            group="edges",
            source_namespace=s["namespace"],
            source_name=s["name"],
            source_kind=s["kind"],
            target_namespace=t["namespace"],
            target_name=t["name"],
            target_kind=t["kind"],
        )
    for n in nodes.values():
        n["group"] = "nodes"
        n.setdefault("warnings", [])


HEALTH_ORDER = ("failing", "degraded", "healthy", "unknown")  # the worst first: a namespace shows its worst member


def _namespace_summary(members: list[dict[str, Any]]) -> dict[str, Any]:
    """A namespace drawn collapsed, as one node: its members counted by kind and by health, and their KPIs summed
    (inbound requests and 5xx of its services, so the error ratio is the namespace's; p99 the worst member's: a p99
    cannot be added). All members count, whatever the filters: the filters hide, they do not change a namespace."""
    kinds = dict.fromkeys(("service", "workload", "unknown"), 0)
    health = dict.fromkeys(HEALTH_ORDER, 0)
    rps = rate5 = p99 = None
    for n in members:
        kinds[n["kind"]] = kinds.get(n["kind"], 0) + 1
        health[n["health"]] = health.get(n["health"], 0) + 1
        if n["rps"] is not None:
            rps = (rps or 0.0) + n["rps"]
            if n["error"] is not None:
                rate5 = (rate5 or 0.0) + n["rps"] * n["error"]
        if n["p99_ms"] is not None:
            p99 = n["p99_ms"] if p99 is None else max(p99, n["p99_ms"])
    worst = next((h for h in HEALTH_ORDER if health[h]), "unknown")
    total = len(members) or 1
    return {
        "members": len(members),
        "services": kinds["service"],
        "workloads": kinds["workload"],
        "unknown_peers": kinds["unknown"],
        "health": worst,
        "health_counts": health,
        # The collapsed node's pie: each health's share of the members, in percent.
        **{f"pie_{h}": round(100 * health[h] / total, 1) for h in HEALTH_ORDER},
        "rps": rps,
        "error": error_ratio(rps, rate5),
        "p99_ms": p99,
    }


def _namespace_boxes(nodes: dict, monitored: dict[str, str], shown: set[str]) -> list[dict[str, Any]]:
    """A box per namespace, with what the page shows when it draws the namespace collapsed (`_namespace_summary`):
    `filtered` when the filters leave none of its nodes, `idle` when all they leave are idle (the page hides it with
    them)."""
    busy: set[str] = set()
    for node_id in shown:
        if not nodes[node_id]["idle"]:
            busy.add(nodes[node_id]["namespace"])
    left = {nodes[i]["namespace"] for i in shown}
    members: dict[str, list[dict[str, Any]]] = {}
    for n in nodes.values():
        n["parent"] = f"ns:{n['namespace']}"
        members.setdefault(n["namespace"], []).append(n)
    boxes = []
    for ns in sorted(members):
        classes = ["namespace"]
        if not monitored.get(ns):
            classes.append("unmonitored")
        if ns not in left:
            classes.append("filtered")
        elif ns not in busy:
            classes.append("idle")
        data = {
            "id": f"ns:{ns}",
            "group": "nodes",
            "kind": "namespace",
            "name": ns,
            "namespace": ns,
            "label": ns,
            "monitored": bool(monitored.get(ns)),
            "idle": ns in left and ns not in busy,
            **_namespace_summary(members[ns]),
        }
        boxes.append({"data": data, "classes": " ".join(classes)})
    return boxes


def build_graph(
    cluster: Cluster,
    *,
    namespaces: Iterable[str] = (),
    find: str = "",
    hide: str = "",
    past: PastView | None = None,
) -> dict[str, Any]:
    """Nodes and edges for Cytoscape (`{"data": ..., "classes": ...}`), all of them whatever the filters, sorted by id.

    The page lays out the whole graph once and keeps the positions, so a filter only hides: elements outside the
    chosen `namespaces` (those namespaces' nodes and the peers they talk to stay) or matched by `hide` carry the class
    `filtered`; `find` marks `found` among the rest. Idle edges (nothing measured) and the peers seen only on them
    carry `idle`: the page hides them unless asked to show policy-only edges. `past`: the graph as of that time
    (`as_of` in the answer says when, and why its KPIs are missing if they are). Raises QueryError for a bad find or
    hide expression, before touching the database.
    """
    find_p, hide_p = parse(find), parse(hide)
    wanted = {ns for ns in namespaces if ns}
    snap = _Snapshot.load(cluster, past)

    all_nodes = _Nodes(snap.groups)
    _service_nodes(snap.rows, all_nodes, past)
    split_edges, root_of, warnings = _split_edges(snap, all_nodes)
    traffic, backend_traffic = _fold_traffic(snap, all_nodes, root_of)
    edges = _edges(all_nodes, traffic, split_edges, backend_traffic)
    if past is None:  # the history keeps no IngressBackend, Egress, Retry or rate limit, and their traffic is now's
        outside = mesh_edge.Boundary.load(cluster)
        edges.update(mesh_edge.ingress(outside, all_nodes, traffic_label))
        edges.update(mesh_edge.egress(outside, all_nodes, all_nodes.peer, traffic_label))
        mesh_edge.mark(outside, edges, root_of)
    nodes = dict(sorted(all_nodes.items()))
    edges = dict(sorted(edges.items()))
    _mark_idle_peers(nodes, edges)
    _name_ends(nodes, edges)

    shown_nodes, shown_edges = _in_namespaces(nodes, edges, wanted)
    hidden = 0
    if hide_p is not None:
        kept = {i for i in shown_nodes if not hide_p(nodes[i])}
        kept_edges = {
            i for i in shown_edges if edges[i]["source"] in kept and edges[i]["target"] in kept and not hide_p(edges[i])
        }
        hidden = len(shown_nodes) - len(kept) + len(shown_edges) - len(kept_edges)
        shown_nodes, shown_edges = kept, kept_edges
    found = 0
    if find_p is not None:
        for shown, elements in ((shown_nodes, nodes), (shown_edges, edges)):
            for i in shown:
                elements[i]["found"] = find_p(elements[i])
                found += elements[i]["found"]

    boxes = _namespace_boxes(nodes, snap.monitored, shown_nodes)
    idle_nodes = sum(nodes[i]["idle"] for i in shown_nodes)
    idle_edges = sum(edges[i]["idle"] for i in shown_edges)
    return {
        "cluster": cluster.name,
        "namespaces": sorted({r.namespace for r in snap.rows} | set(snap.monitored)),
        "selected": sorted(wanted),
        "find": find,
        "hide": hide,
        "counts": {
            "nodes": len(shown_nodes) - idle_nodes,
            "edges": len(shown_edges) - idle_edges,
            "idle_nodes": idle_nodes,
            "idle_edges": idle_edges,
            "hidden": hidden,
            "found": found if find_p is not None else None,
        },
        "warnings": warnings,
        "policy_mode": snap.policy.mode,
        "as_of": _as_of(past),
        "elements": {
            "nodes": boxes + [{"data": n, "classes": _node_classes(n, i in shown_nodes)} for i, n in nodes.items()],
            "edges": [{"data": e, "classes": _edge_classes(e, i in shown_edges)} for i, e in edges.items()],
        },
    }


def _as_of(past: PastView | None) -> dict[str, Any] | None:
    if past is None:
        return None
    return {
        "time": past.value,
        "kpis": past.kpis.unavailable,  # "" when Prometheus answered for then
        "no_data": past.kpis.no_data,
        "present": "Services, pods, sidecars and service accounts: the latest snapshot's (the history keeps no pods)",
        # Not drawn then: the history keeps none of the objects behind them, and their traffic is counted now.
        "left_out": "the mesh's edge (ingress controllers, Egress policies) and the Retry and rate-limit marks",
    }


def _node_classes(n: dict[str, Any], shown: bool) -> str:
    classes = [n["kind"], n["health"], f"sidecars-{n['sidecars']}"]
    if n["split"]:
        classes.append(n["split"])
    if n["idle"]:
        classes.append("idle")
    if n["warnings"]:
        classes.append("warning")
    if not shown:
        classes.append("filtered")
    elif n.get("found"):
        classes.append("found")
    return " ".join(classes)


def _edge_classes(e: dict[str, Any], shown: bool) -> str:
    classes = [e["kind"], e["lock"]]
    if e.get("error"):
        classes.append("errors")
    if e.get("denied_rps"):
        classes.append("denied")
    if e.get("retry"):
        classes.append("retry")
    if e.get("ratelimit"):
        classes.append("ratelimit")
    if e.get("policy") == "denied":
        classes.append("policy-denied")
    if e["idle"]:
        classes.append("idle")  # known to exist (policy, configuration), nothing measured: hidden unless asked for
    if e.get("warnings"):
        classes.append("warning")
    if not shown:
        classes.append("filtered")
    elif e.get("found"):
        classes.append("found")
    return " ".join(classes)
