"""Istio VirtualServices read as traffic splits: a root Service's host whose catch-all route sends weighted shares to
backend Services, as the migration assistant writes a TrafficSplit (reference: istio-migration.md, TrafficSplit row).

What counts: a VirtualService of the snapshot whose first host names a Service of its own namespace (`svc`,
`svc.ns`, `svc.ns.svc` or `svc.ns.svc.cluster.local`), and whose catch-all route (the last `http` route without a
`match`, else the last `tcp` route without one) has destinations other than the root itself. A route with a `match`
(the assistant's per-caller retry routes, a header route) applies to some requests only: it is not the split every
caller gets, so it is not read as one. Istio's `weight` is a relative proportion (int32); a lone destination without
one gets all the traffic, and a missing weight among several reads as 0. A destination host in another namespace
keeps its full host text as the backend's name (it resolves to no Service of the split's namespace).
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import IstioVirtualService, weight_percents, weight_total

CLUSTER_DOMAIN = "svc.cluster.local"


def service_of_host(host: object, namespace: str) -> str:
    """The Service name a host names in `namespace`, or "" when it names none there."""
    if not isinstance(host, str) or not host:
        return ""
    parts = host.split(".")
    if len(parts) == 1:
        return host
    if parts[1] != namespace:
        return ""
    return parts[0] if ".".join(parts[2:]) in ("", "svc", CLUSTER_DOMAIN) else ""


@dataclass(frozen=True)
class VirtualServiceSplit:
    namespace: str
    name: str  # the VirtualService's
    root_service: str
    backends: list[dict]  # [{service, weight}], as TrafficSplit.backends
    protocol: str  # "http" or "tcp": which routes the split came from

    @property
    def root_service_name(self) -> str:
        return self.root_service

    @property
    def backend_services(self) -> list[str]:
        return [b["service"] for b in self.backends if b["service"]]

    @property
    def total_weight(self) -> float | None:
        return weight_total(self.backends)

    def weight_percents(self) -> list[float | None]:
        return weight_percents(self.backends)


def _catch_all(routes: object) -> dict | None:
    found = None
    for route in routes if isinstance(routes, list) else []:
        if isinstance(route, dict) and not route.get("match"):
            found = route
    return found


def split_of(namespace: str, name: str, spec: object) -> VirtualServiceSplit | None:
    """The split a VirtualService's spec makes, or None (see the module's docstring)."""
    spec = spec if isinstance(spec, dict) else {}
    hosts = spec.get("hosts") if isinstance(spec.get("hosts"), list) else []
    root = service_of_host(hosts[0], namespace) if hosts else ""
    if not root:
        return None
    for protocol in ("http", "tcp"):
        route = _catch_all(spec.get(protocol))
        if route is None:
            continue
        destinations = [d for d in route.get("route") or [] if isinstance(d, dict)]
        backends = []
        for d in destinations:
            host = (d.get("destination") or {}).get("host") if isinstance(d.get("destination"), dict) else None
            weight = d.get("weight")
            if weight is None:
                weight = 100 if len(destinations) == 1 else 0
            backends.append({"service": service_of_host(host, namespace) or str(host or "")[:253], "weight": weight})
        if backends and [b["service"] for b in backends] != [root]:
            return VirtualServiceSplit(namespace, name, root, backends, protocol)
        return None
    return None


def virtual_service_splits(cluster: object) -> list[VirtualServiceSplit]:
    """The cluster's VirtualServices that split a root's traffic, by namespace and name."""
    out = []
    rows = IstioVirtualService.objects.filter(cluster=cluster).order_by("namespace", "name")
    for namespace, name, spec in rows.values_list("namespace", "name", "spec"):
        split = split_of(namespace, name, spec)
        if split is not None:
            out.append(split)
    return out
