"""The mesh's edge on the graph (issue 21): ingress controllers as entry nodes, Egress policies as external
destinations, and the edges a Retry or a local rate limit shapes. Rules of OSM's policy API come from
apps.policies.osm_policy (which IngressBackend admits which Service port, how a Retry or a rate limit reads); the
traffic from the metrics' BoundaryTraffic rows.

What the sidecars can and cannot tell (apps.metrics.catalog.boundary):
- Ingress is counted by each backend pod's sidecar on its one ingress connection manager: per pod, not per
  IngressBackend or per controller. An ingress edge carries the requests of the pods its backend Service selects;
  when those pods also serve another ingress edge, both edges say the count is shared, and the entry node sums each
  pod once.
- Egress is counted by the caller's sidecar on the Egress policy's cluster, `<host>:<port>` with `.` and `:` made `_`:
  HTTP egress by host. TCP egress by IP range has no named cluster: it is drawn from the policy, not measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from apps.clusters.models import Cluster
from apps.mesh.models import Egress, IngressBackend, MeshState, Pod, Retry, Service, UpstreamTrafficSetting, selects
from apps.metrics.catalog import egress_stat_name
from apps.metrics.health import UNKNOWN, Health
from apps.metrics.models import BoundaryTraffic, MetricsState, error_ratio, ingress_rate
from apps.policies.osm_policy import admits, flag, fqdn_service, rate_limits, retry_text, target_port

Workload = tuple[str, str, str, str]  # (namespace, app label, workload kind, workload name)

SOURCE_ORDER = ("Service", "IPRange", "AuthenticatedPrincipal")  # the entry node an IngressBackend is drawn from


@dataclass
class Boundary:
    """What the graph reads about the mesh's edge, in a fixed number of queries."""

    ingress_backends: list[IngressBackend]
    egresses: list[Egress]
    retries: list[Retry]
    settings: list[UpstreamTrafficSetting]
    services: dict[tuple[str, str], Service]  # the IngressBackends' backend and source Services
    pods: list[dict[str, Any]]  # pods of the namespaces the policies name: namespace, labels, SA, workload
    traffic: list[BoundaryTraffic]
    ingress_unavailable: str  # why ingress requests are not counted ("" when they are)
    egress_policy: bool | None  # featureFlags.enableEgressPolicy
    retry_policy: bool | None  # featureFlags.enableRetryPolicy
    _by_sa: dict[tuple[str, str], set[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, cluster: Cluster) -> Boundary:
        ingress_backends = list(IngressBackend.objects.filter(cluster=cluster).order_by("namespace", "name"))
        egresses = list(Egress.objects.filter(cluster=cluster).order_by("namespace", "name"))
        retries = list(Retry.objects.filter(cluster=cluster).order_by("namespace", "name"))
        settings = list(UpstreamTrafficSetting.objects.filter(cluster=cluster).order_by("namespace", "name"))
        namespaces = {p.namespace for p in ingress_backends}
        for policy in egresses:
            namespaces.update(_refs(policy.sources, "ServiceAccount", "namespace"))
        for retry in retries:
            namespaces.update(_refs([retry.source], "ServiceAccount", "namespace"))
        # Only the namespaces the policies name: a handful of rows whatever the mesh's size.
        pods = list(
            Pod.objects.filter(cluster=cluster, namespace__in=namespaces).values(
                "namespace", "labels", "service_account", "workload_kind", "workload_name"
            )
        )
        state = MeshState.objects.filter(cluster=cluster).first()
        meshconfig = state.meshconfig if state else None
        metrics = MetricsState.objects.filter(cluster=cluster).first()
        return cls(
            ingress_backends=ingress_backends,
            egresses=egresses,
            retries=retries,
            settings=settings,
            services={
                (s.namespace, s.name): s
                for s in Service.objects.filter(cluster=cluster, namespace__in=namespaces).only(
                    "namespace", "name", "ports", "selector"
                )
            },
            pods=pods,
            traffic=list(BoundaryTraffic.objects.filter(cluster=cluster)),
            ingress_unavailable=metrics.ingress_unavailable_reason if metrics else "no metrics collected yet",
            egress_policy=flag(meshconfig, "featureFlags", "enableEgressPolicy"),
            retry_policy=flag(meshconfig, "featureFlags", "enableRetryPolicy"),
        )

    def apps_of_service_account(self, namespace: str, name: str) -> set[str]:
        """The `app` labels of the pods running as this service account (what the graph's caller nodes are)."""
        if not self._by_sa:
            for pod in self.pods:
                app = (pod["labels"] or {}).get("app")
                if app:
                    self._by_sa.setdefault((pod["namespace"], pod["service_account"]), set()).add(app)
        return self._by_sa.get((namespace, name), set())

    def workloads_of(self, service: Service) -> set[Workload]:
        """The (namespace, app, workload kind, workload name) of the pods a Service selects."""
        return {
            (p["namespace"], (p["labels"] or {}).get("app", ""), p["workload_kind"], p["workload_name"])
            for p in self.pods
            if p["namespace"] == service.namespace and selects(service.selector or {}, p["labels"] or {})
        }


def _refs(items: Iterable[object], kind: str, key: str) -> set[str]:
    return {str(i.get(key) or "") for i in items if isinstance(i, dict) and i.get("kind") == kind}


class Rates:
    """Requests and 5xx summed over BoundaryTraffic rows."""

    def __init__(self) -> None:
        self.rps: float | None = None
        self.rate5: float | None = None

    def add(self, row: BoundaryTraffic) -> None:
        self.rps = (self.rps or 0.0) + row.request_rate
        self.rate5 = (self.rate5 or 0.0) + row.rate_5xx

    def merge(self, other: Rates | None) -> None:
        """Add another sum (nothing when it measured nothing: unmeasured stays None, not 0)."""
        if other is not None and other.rps is not None:
            self.rps = (self.rps or 0.0) + other.rps
            self.rate5 = (self.rate5 or 0.0) + (other.rate5 or 0.0)

    def data(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "error": error_ratio(self.rps, self.rate5),
            "p99_ms": None,
            "tcp_bytes_rate": None,
            "denied_rps": None,
            "tls_error_rps": None,
        }


def _ingress_rates(boundary: Boundary, workloads: set[Workload]) -> Rates:
    rates = Rates()
    measured = ingress_rate(boundary.traffic, workloads)
    if measured is not None:
        rates.rps, rates.rate5 = measured
    return rates


def _outside_node(node_id: str, kind: str, namespace: str, name: str, health: Health, **extra: Any) -> dict:
    data = {
        "id": node_id,
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "split": "",
        "sidecars": "unknown",
        "pods": "",
        "rps": None,
        "error": None,
        "success": None,
        "p99_ms": None,
        "url": "",
        "health": health.status,
        "reasons": health.reasons,
    }
    data.update(extra)
    return data


def _entry(policy: IngressBackend, nodes: dict[str, dict]) -> list[tuple[str, dict]]:
    """The node(s) an IngressBackend's traffic enters from: each Service source (an ingress controller), else each
    IP range, else each authenticated principal; every source is listed on the edge."""
    sources = [s for s in policy.sources or [] if isinstance(s, dict)]
    for kind in SOURCE_ORDER:
        picked = [s for s in sources if s.get("kind") == kind]
        if picked:
            break
    else:
        return []
    entries = []
    for s in picked:
        name = str(s.get("name") or "")
        if kind == "Service":
            ns = str(s.get("namespace") or policy.namespace)
            node_id = f"svc:{ns}/{name}"
            if node_id in nodes:
                nodes[node_id]["kind"] = "ingress"
            else:
                health = Health(UNKNOWN, ["an IngressBackend's source Service that the snapshot does not hold"])
                nodes[node_id] = _outside_node(node_id, "ingress", ns, name, health)
        else:
            node_id = f"{'iprange' if kind == 'IPRange' else 'principal'}:{policy.namespace}/{name}"
            health = Health(UNKNOWN, [f"outside the mesh: an IngressBackend's {kind} source"])
            nodes.setdefault(node_id, _outside_node(node_id, "ingress", policy.namespace, name, health))
        entries.append((node_id, s))
    return entries


def _source_text(source: dict) -> str:
    kind, name = source.get("kind") or "?", source.get("name") or ""
    return f"{kind} {source['namespace']}/{name}" if source.get("namespace") else f"{kind} {name}"


def ingress(boundary: Boundary, nodes: dict[str, dict], label: Callable[..., str]) -> dict[str, dict]:
    """Edges from each ingress entry node to the backend Services its IngressBackends admit, with the requests their
    pods' sidecars admitted from outside."""
    edges: dict[str, dict] = {}
    shared: dict[frozenset[Workload], list[str]] = {}
    entry_pods: dict[str, set[Workload]] = {}
    for policy in boundary.ingress_backends:
        entries = _entry(policy, nodes)
        for backend in policy.backends or []:
            if not isinstance(backend, dict):
                continue
            service = boundary.services.get((policy.namespace, str(backend.get("name") or "")))
            target = f"svc:{policy.namespace}/{backend.get('name')}"
            if service is None or target not in nodes:
                continue  # the checks say so (MB-INGRESS): nothing to draw an edge to
            ports = [target_port(p) for p in service.ports or [] if isinstance(p, dict)]
            if not any(admits(backend, service.name, t) for t in ports):
                continue
            protocol = str(backend.get("protocol") or "").lower()
            tls = backend.get("tls") if isinstance(backend.get("tls"), dict) else {}
            checked = protocol == "https" and not tls.get("skipClientCertValidation", False)
            workloads = boundary.workloads_of(service)
            for source_id, _source in entries:
                edge_id = f"ingress:{policy.namespace}/{policy.name}:{source_id}>{target}"
                entry_pods.setdefault(source_id, set()).update(workloads)
                shared.setdefault(frozenset(workloads), []).append(edge_id)
                details = [
                    ["IngressBackend", f"{policy.namespace}/{policy.name}"],
                    ["port", f"{backend.get('port')} ({protocol or '?'})"],
                    [
                        "TLS",
                        "HTTPS, client certificate validated"
                        if checked
                        else "HTTPS, client certificate not validated"
                        if protocol == "https"
                        else "none: plain HTTP, admitted by source address",
                    ],
                    ["sources", "; ".join(_source_text(s) for s in policy.sources or [] if isinstance(s, dict))],
                ]
                edges[edge_id] = {
                    "id": edge_id,
                    "source": source_id,
                    "target": target,
                    "kind": "ingress",
                    "protocol": protocol,
                    "lock": "mtls" if checked else "plain" if protocol != "https" else "unknown",
                    "details": details,
                    "warnings": [],
                    "_workloads": workloads,
                }
    pods_of = {edge_id: edge.pop("_workloads") for edge_id, edge in edges.items()}
    for edge_id, edge in edges.items():
        rates = _ingress_rates(boundary, pods_of[edge_id])
        edge.update(rates.data())
        shared = sorted(
            edges[other]["target"].removeprefix("svc:")
            for other, pods in pods_of.items()
            if other != edge_id and pods & pods_of[edge_id]
        )
        if boundary.ingress_unavailable:
            edge["details"].append(["requests", boundary.ingress_unavailable])
            edge["label"] = f"ingress {edge['protocol'] or '?'} · not measured"
        else:
            edge["label"] = f"ingress {edge['protocol'] or '?'} · " + label(edge["rps"], edge["error"], None, None)
            edge["details"].append(
                [
                    "requests",
                    "counted by the backend pods' sidecars, per pod"
                    + (f": shared with the ingress into {', '.join(dict.fromkeys(shared))}" if shared else ""),
                ]
            )
        edge["idle"] = not edge["rps"] and not boundary.ingress_unavailable
    for source_id in {e["source"] for e in edges.values()}:
        pods = set().union(*(pods_of[i] for i, e in edges.items() if e["source"] == source_id))
        rates = _ingress_rates(boundary, pods)  # each pod once, whatever the number of edges into it
        node = nodes[source_id]
        node["ingress_rps"] = rates.rps
        sent = boundary.ingress_unavailable or (
            label(rates.rps, error_ratio(rates.rps, rates.rate5), None, None) + " (counted by the backends' sidecars)"
        )
        node.setdefault("details", []).append(["sends into the mesh", sent])
    return edges


def _port_protocols(policy: Egress) -> list[str]:
    return [str(p.get("protocol") or "").lower() for p in policy.ports or [] if isinstance(p, dict)]


def _egress_targets(policy: Egress) -> tuple[list[str], str]:
    """The stat names of an Egress policy's clusters (HTTP hosts by port), and what it allows in words."""
    hosts = [h for h in policy.hosts or [] if isinstance(h, str) and h]
    ports = [p for p in policy.ports or [] if isinstance(p, dict)]
    names = [egress_stat_name(h, p.get("number")) for h in hosts for p in ports]
    where = ", ".join(hosts + [str(ip) for ip in policy.ip_addresses or []]) or "?"
    on = ", ".join(f"{p.get('number')}/{p.get('protocol') or '?'}" for p in ports) or "no port"
    return names, f"{where} on {on}"


def egress(
    boundary: Boundary, nodes: dict[str, dict], peer: Callable[..., str], label: Callable[..., str]
) -> dict[str, dict]:
    """Each Egress policy as an external node, with an edge from each caller its service accounts run, carrying the
    requests their sidecars sent on the policy's clusters (nothing measured: a policy-only edge)."""
    edges: dict[str, dict] = {}
    measured: dict[tuple[str, str, str], Rates] = {}
    for row in boundary.traffic:
        if row.direction == BoundaryTraffic.Direction.EGRESS:
            measured.setdefault((row.namespace, row.app, row.peer), Rates()).add(row)
    for policy in boundary.egresses:
        names, allows = _egress_targets(policy)
        node_id = f"ext:{policy.namespace}/{policy.name}"
        reasons = [f"outside the mesh: Egress {policy.namespace}/{policy.name} allows {allows}"]
        if boundary.egress_policy is False:
            reasons.append("OSM ignores it: the MeshConfig's featureFlags.enableEgressPolicy is off")
        details = [["allows", allows]]
        matches = [m.get("name") for m in policy.matches or [] if isinstance(m, dict) and m.get("name")]
        if matches:
            details.append(["HTTP routes", ", ".join(str(m) for m in matches)])
        if policy.ip_addresses:
            details.append(["IP ranges", "TCP egress by address has no named cluster: not measured"])
        node = _outside_node(
            node_id,
            "external",
            policy.namespace,
            ", ".join(h for h in policy.hosts or [] if isinstance(h, str)) or policy.name,
            Health(UNKNOWN, reasons),
            details=details,
        )
        nodes[node_id] = node
        lock = "plain" if any(p == "http" for p in _port_protocols(policy)) else "unknown"
        total = Rates()
        accounts = sorted(
            (str(src.get("namespace") or ""), str(src.get("name") or ""))
            for src in policy.sources or []
            if isinstance(src, dict) and src.get("kind") == "ServiceAccount"
        )
        for ns, account in accounts:
            for app in sorted(boundary.apps_of_service_account(ns, account)):
                rates = Rates()
                for name in names:
                    rates.merge(measured.get((ns, app, name)))
                total.merge(rates)
                caller = peer(ns, app, caller=True)
                edge_id = f"egress:{policy.namespace}/{policy.name}:{caller}"
                data = rates.data()
                idle = not data["rps"]
                data.update(
                    id=edge_id,
                    source=caller,
                    target=node_id,
                    kind="egress",
                    lock=lock,
                    label="egress · " + ("nothing measured" if idle else label(data["rps"], data["error"], None, None)),
                    idle=idle,
                    details=[["Egress", f"{policy.namespace}/{policy.name}"], ["service account", f"{ns}/{account}"]],
                    warnings=[],
                )
                edges[edge_id] = data
        # Not `rps`: a namespace sums its members' `rps` as the requests its services receive.
        node["egress_rps"] = total.rps
        received = (
            "nothing measured"
            if total.rps is None
            else label(total.rps, error_ratio(total.rps, total.rate5), None, None)
        )
        details.append(["receives from the mesh", received])
    return edges


def mark(boundary: Boundary, edges: dict[str, dict], root_of: dict[tuple[str, str], str]) -> None:
    """Mark the traffic edges a Retry or a local rate limit shapes: `retry` on the callers' edges to a Retry's
    destinations (drawn to a split's root when the destination is a backend), `ratelimit` on every edge into a
    Service an UpstreamTrafficSetting rate-limits."""
    limited: dict[str, list[str]] = {}
    for setting in boundary.settings:
        service = fqdn_service(setting.host or "")
        limits = rate_limits(setting)
        if service is None or service[0] != setting.namespace or not limits:
            continue
        text = f"UpstreamTrafficSetting {setting.namespace}/{setting.name}: " + "; ".join(
            f"{scope}: {limit}" for scope, limit in limits
        )
        for target in {f"svc:{service[0]}/{service[1]}", root_of.get(service, "")} - {""}:
            limited.setdefault(target, []).append(text)
    retried: dict[tuple[str, str], list[str]] = {}
    for retry in boundary.retries:
        source = retry.source if isinstance(retry.source, dict) else {}
        if source.get("kind") != "ServiceAccount":
            continue
        text = f"Retry {retry.namespace}/{retry.name}: {retry_text(retry)}"
        if boundary.retry_policy is False:
            text += " (ignored: featureFlags.enableRetryPolicy is off)"
        callers = boundary.apps_of_service_account(str(source.get("namespace") or ""), str(source.get("name") or ""))
        for dest in retry.destinations or []:
            if not isinstance(dest, dict) or dest.get("kind") != "Service":
                continue
            key = (str(dest.get("namespace") or ""), str(dest.get("name") or ""))
            targets = {f"svc:{key[0]}/{key[1]}", root_of.get(key, "")} - {""}
            for app in callers:
                for target in targets:
                    retried.setdefault((f"{source.get('namespace')}/{app}", target), []).append(text)
    for edge in edges.values():
        if edge["kind"] != "traffic":
            continue
        end = edge["source"].split(":", 1)[1]
        texts = retried.get((end, edge["target"]), [])
        if texts:
            edge["retry"] = True
            edge.setdefault("details", []).extend(["retry", t] for t in texts)
        if edge["target"] in limited:
            edge["ratelimit"] = True
            edge.setdefault("details", []).extend(["rate limit", t] for t in limited[edge["target"]])
        marks = ("↻ retry" if edge.get("retry") else "", "⇥ rate limit" if edge.get("ratelimit") else "")
        if any(marks) and not edge["idle"]:
            edge["label"] = " · ".join([edge["label"], *[m for m in marks if m]])
