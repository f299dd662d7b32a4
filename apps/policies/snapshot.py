"""The one module of the migration assistant that reads the database: a cluster's latest snapshot as `MeshInput`.

The SMI policy comes from `apps.policies.smi_access.load_policy` (its Grant and Route parsing, so the assistant reads
TrafficTargets, HTTPRouteGroups and TCPRoutes exactly as the Policies page does). Pods are grouped by the workload
that owns them; a workload with no running pod is taken from its pod template. OSM's policy API (IngressBackends,
Egresses, UpstreamTrafficSettings, Retries) and the Ingresses come as collected, an Egress's HTTPRouteGroup matches
parsed by the same code as a TrafficTarget's (`policy_api`).
"""

from __future__ import annotations

from collections import Counter

from django.db.models import Sum

from apps.clusters.models import Cluster
from apps.mesh.models import (
    Egress,
    HTTPRouteGroup,
    Ingress,
    IngressBackend,
    IngressClass,
    MeshNamespace,
    MeshState,
    Pod,
    Retry,
    Service,
    TrafficSplit,
    UpstreamTrafficSetting,
    Workload,
    selects,
)
from apps.mesh.protocols import osm_port_protocol
from apps.metrics.models import EdgeKPI
from apps.policies.smi_access import Identity, Route, _http_routes, load_policy

from .model import (
    HTTP,
    TCP,
    VOLATILE_LABELS,
    EgressInfo,
    IngressBackendInfo,
    IngressInfo,
    MeshInput,
    NamespaceInfo,
    Port,
    RetryInfo,
    ServiceInfo,
    SplitInfo,
    UpstreamSettingInfo,
    WorkloadGroup,
)

_HTTP_PROTOCOLS = {"http", "http2", "grpc", "grpc-web", "h2c", "kubernetes.io/h2c", "kubernetes.io/ws", "ws"}
_ISTIO_TCP_PREFIXES = ("tcp", "tls", "https", "mongo", "mysql", "redis", "udp")


def istio_protocol(port: dict) -> str:
    """Istio reads `appProtocol`, else the port name's prefix (`tcp-db`, `http-web`), else sniffs: HTTP traffic is
    then treated as HTTP."""
    app = str(port.get("appProtocol") or "").lower()
    if app:
        return HTTP if app in _HTTP_PROTOCOLS else TCP
    name = str(port.get("name") or "").lower()
    prefix = name.split("-", 1)[0]
    if prefix in _ISTIO_TCP_PREFIXES:
        return TCP
    return HTTP


def _stable(labels: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (labels or {}).items() if k not in VOLATILE_LABELS}


def _common(label_sets: list[dict[str, str]]) -> dict[str, str]:
    if not label_sets:
        return {}
    common = dict(label_sets[0])
    for labels in label_sets[1:]:
        common = {k: v for k, v in common.items() if labels.get(k) == v}
    return common


def _number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ports(labels: dict[str, str], services: list[ServiceInfo]) -> tuple[Port, ...]:
    found: dict[int, Port] = {}
    for svc in services:
        if not selects(dict(svc.selector), labels):
            continue
        for p in svc.ports:
            target = p.get("targetPort")
            named = ""
            if isinstance(target, int) and not isinstance(target, bool):
                number = target
            else:
                number = p.get("port")
                named = str(target) if target not in (None, "") else ""
            if not isinstance(number, int) or isinstance(number, bool):
                continue
            known = found.get(number)
            names = (*known.services, svc.name) if known else (svc.name,)
            service_port = p.get("port")
            service_ports = known.service_ports if known else ()
            if (
                isinstance(service_port, int)
                and not isinstance(service_port, bool)
                and service_port not in service_ports
            ):
                service_ports = (*service_ports, service_port)
            found[number] = Port(
                number,
                osm_port_protocol(p),
                istio_protocol(p),
                names,
                named or (known.named_target if known else ""),
                service_ports,
            )
    return tuple(sorted(found.values(), key=lambda p: p.number))


def load(cluster: Cluster) -> MeshInput:
    state = MeshState.objects.filter(cluster=cluster).first()
    policy = load_policy(cluster)
    mesh_name = state.mesh_name if state else ""
    namespaces = []
    for ns in MeshNamespace.objects.filter(cluster=cluster).order_by("name"):
        monitored = bool(ns.monitored_by) and (not mesh_name or ns.monitored_by == mesh_name)
        namespaces.append(NamespaceInfo(ns.name, monitored, ns.injection_enabled, ns.ignored, ns.monitored_by))
    services = [
        ServiceInfo(s.namespace, s.name, tuple(sorted((s.selector or {}).items())), tuple(s.ports or ()))
        for s in Service.objects.filter(cluster=cluster).order_by("namespace", "name")
    ]
    by_namespace: dict[str, list[ServiceInfo]] = {}
    for svc in services:
        by_namespace.setdefault(svc.namespace, []).append(svc)

    pods: dict[tuple[str, str, str], list[Pod]] = {}
    for pod in (
        Pod.objects.filter(cluster=cluster).exclude(phase__in=("Succeeded", "Failed")).order_by("namespace", "name")
    ):
        kind = pod.workload_kind or "Pod"
        name = pod.workload_name or pod.name
        pods.setdefault((pod.namespace, kind, name), []).append(pod)
    groups: list[WorkloadGroup] = []
    for (namespace, kind, name), members in pods.items():
        accounts = Counter(p.service_account or "default" for p in members)
        labels = _common([_stable(p.labels) for p in members])
        groups.append(
            WorkloadGroup(
                namespace=namespace,
                kind=kind,
                name=name,
                service_account=accounts.most_common(1)[0][0],
                labels=tuple(sorted(labels.items())),
                meshed=any(p.has_sidecar for p in members),
                pods=tuple(p.name for p in members),
                ports=_ports(labels, by_namespace.get(namespace, [])),
                annotations=tuple(sorted((members[0].annotations or {}).items())),
            )
        )
    running = {(g.namespace, g.kind, g.name) for g in groups}
    meshed_namespaces = {n.name for n in namespaces if n.meshed and n.injection}
    for w in Workload.objects.filter(cluster=cluster).order_by("namespace", "kind", "name"):
        if (w.namespace, w.kind, w.name) in running:
            continue
        labels = _stable(w.template_labels or {})
        groups.append(
            WorkloadGroup(
                namespace=w.namespace,
                kind=w.kind,
                name=w.name,
                service_account=w.service_account or "default",
                labels=tuple(sorted(labels.items())),
                meshed=w.namespace in meshed_namespaces,
                ports=_ports(labels, by_namespace.get(w.namespace, [])),
                from_template=True,
            )
        )
    splits = [
        SplitInfo(
            s.namespace,
            s.name,
            s.root_service_name,
            tuple((str(b.get("service", "")), b.get("weight")) for b in s.backends or [] if isinstance(b, dict)),
        )
        for s in TrafficSplit.objects.filter(cluster=cluster).order_by("namespace", "name")
    ]
    edges = [
        (row["source_namespace"], row["destination_namespace"], float(row["rate"] or 0.0))
        for row in EdgeKPI.objects.filter(cluster=cluster)
        .values("source_namespace", "destination_namespace")
        .annotate(rate=Sum("request_rate"))
        .order_by("source_namespace", "destination_namespace")
    ]
    return MeshInput(
        cluster=cluster.name,
        mode=policy.mode,
        mesh_name=mesh_name,
        is_aks=bool(state and state.is_aks),
        control_plane_namespace=state.control_plane_namespace if state else "",
        certificate_provider=state.certificate_provider if state else "",
        meshconfig=dict(state.meshconfig or {}) if state else {},
        served_groups=dict(state.served_groups or {}) if state else {},
        namespaces=tuple(namespaces),
        groups=tuple(sorted(groups, key=lambda g: (g.namespace, g.kind, g.name))),
        services=tuple(services),
        grants=tuple(policy.grants),
        splits=tuple(splits),
        edges=tuple(edges),
        collected_at=state.collected_at.isoformat() if state else "",
        **policy_api(cluster),
    )


def _dicts(value: object) -> tuple[dict, ...]:
    return tuple(v for v in value or () if isinstance(v, dict)) if isinstance(value, list) else ()


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def policy_api(cluster: Cluster) -> dict:
    """OSM's policy API objects and the Ingresses, as MeshInput's fields: one query per kind."""
    controllers = {c.name: c.controller for c in IngressClass.objects.filter(cluster=cluster)}
    route_groups = {(g.namespace, g.name): g for g in HTTPRouteGroup.objects.filter(cluster=cluster)}
    egresses = []
    for e in Egress.objects.filter(cluster=cluster).order_by("namespace", "name"):
        sources = _dicts(e.sources)
        routes: tuple[Route, ...] | None = None
        setting = ""
        for match in _dicts(e.matches):
            group = str(match.get("apiGroup") or "").split("/")[0]
            if match.get("kind") == "HTTPRouteGroup" and group == "specs.smi-spec.io":
                found = route_groups.get((e.namespace, str(match.get("name", ""))))
                routes = (*(routes or ()), *(_http_routes(found, []) if found is not None else ()))
            elif match.get("kind") == "UpstreamTrafficSetting" and group == "policy.openservicemesh.io":
                setting = str(match.get("name", ""))
        egresses.append(
            EgressInfo(
                e.namespace,
                e.name,
                tuple(
                    Identity(s.get("namespace") or e.namespace, s.get("name", ""))
                    for s in sources
                    if s.get("kind") == "ServiceAccount" and s.get("name")
                ),
                tuple(h for h in e.hosts or () if isinstance(h, str) and h),
                tuple(a for a in e.ip_addresses or () if isinstance(a, str) and a),
                tuple(
                    (p["number"], str(p.get("protocol") or "").lower())
                    for p in _dicts(e.ports)
                    if _number(p.get("number"))
                ),
                _dicts(e.matches),
                tuple(f"{s.get('kind', '')} {s.get('name', '')}" for s in sources if s.get("kind") != "ServiceAccount"),
                routes,
                setting,
            )
        )
    return {
        "ingress_backends": tuple(
            IngressBackendInfo(b.namespace, b.name, _dicts(b.backends), _dicts(b.sources), _dicts(b.matches))
            for b in IngressBackend.objects.filter(cluster=cluster).order_by("namespace", "name")
        ),
        "egresses": tuple(egresses),
        "upstream_settings": tuple(
            UpstreamSettingInfo(
                u.namespace, u.name, u.host, _dict(u.connection_settings), _dict(u.rate_limit), _dicts(u.http_routes)
            )
            for u in UpstreamTrafficSetting.objects.filter(cluster=cluster).order_by("namespace", "name")
        ),
        "retries": tuple(
            RetryInfo(r.namespace, r.name, _dict(r.source), _dicts(r.destinations), _dict(r.retry_policy))
            for r in Retry.objects.filter(cluster=cluster).order_by("namespace", "name")
        ),
        "ingresses": tuple(
            IngressInfo(
                i.namespace,
                i.name,
                i.ingress_class,
                controllers.get(i.ingress_class, ""),
                _dicts(i.routes),
                tuple(sorted((str(k), str(v)) for k, v in (i.annotations or {}).items())),
            )
            for i in Ingress.objects.filter(cluster=cluster).order_by("namespace", "name")
        ),
    }
