"""Does OSM let this request through? Request-level SMI evaluation, as OSM 1.2's sidecars decide it.

The Policies page answers per pair of service accounts; a migration needs per request. OSM builds, for each
destination service account (from the TrafficTargets naming it, `osm@v1.2.4:pkg/catalog/inbound_traffic_policies.go`,
`pkg/envoy/lds/rbac.go`, `pkg/envoy/rds/route/route_config.go`):

1. a network RBAC filter on every inbound connection: the principal must be a source of one of those TrafficTargets,
   on the TrafficTarget's TCPRoute ports when it has TCPRoutes, on any port when it has none;
2. on an HTTP port (a Service port whose `appProtocol` is not tcp), one route per HTTPRouteGroup match and method, in
   TrafficTarget order, with identical matches merged and their sources united; the route's RBAC admits its
   sources. Envoy takes the *first* route whose path regex, method and header regexes all match (full RE2 matches,
   `apps.migration.regex.full_match`): no route gives a 404, a route that does not list the source a 403. An empty
   `pathRegex` is `.*`, no methods is `*`.
3. a TCP port has no routes: the network filter alone decides.

In permissive mode every meshed source is let through. A source without a sidecar never is (OSM's inbound requires
mTLS). The destination is looked at first, since it is where OSM's inbound policy lives:
- a destination without a sidecar has no inbound policy. A caller without a sidecar reaches it: no proxy sees the
  request at all. A meshed caller's sidecar decides alone (`pkg/catalog/outbound_traffic_policies.go`): when it routes
  the destination's services as mesh services (permissive mode: every service of a monitored namespace; SMI mode: the
  services of the identities whose TrafficTargets list the caller) it speaks mTLS, which the pod cannot answer;
  otherwise it has no route for them, and with the MeshConfig's `traffic.enableEgress` its default filter chain
  passes the connection through to the original destination in plaintext (`outbound-egress-filter-chain`), which the
  pod answers; without `enableEgress` the outbound listener refuses it.

Where OSM's answer depends on the order of overlapping matches from different TrafficTargets (which OSM takes from
its informer cache, an order nobody controls) the verdict says so (`order_dependent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.policies.smi_access import Grant, Identity, Route

from .model import PERMISSIVE, TCP, Request, WorkloadGroup
from .regex import full_match, re2_problem


@dataclass(frozen=True)
class OsmVerdict:
    allowed: bool
    reason: str
    route: Route | None = None  # the HTTP route that decided
    targets: tuple[str, ...] = ()  # the TrafficTargets ("ns/name") that admitted the source
    order_dependent: bool = False


@dataclass
class _HttpRule:
    path: str
    methods: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    principals: set[Identity] = field(default_factory=set)
    routes: list[Route] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    usable: bool = True  # Envoy rejects a route with a regex RE2 refuses

    def matches(self, request: Request) -> bool:
        if not self.usable:
            return False
        if not full_match(self.path, request.path):
            return False
        if "*" not in self.methods and request.method not in self.methods:
            return False
        return all(full_match(regex, request.header(name)) for name, regex in self.headers)


@dataclass
class _Destination:
    ports: dict[Identity, set[int] | None] = field(default_factory=dict)  # per source: TCPRoute ports, None = any
    port_targets: dict[Identity, list[str]] = field(default_factory=dict)
    rules: list[_HttpRule] = field(default_factory=list)


class OsmPolicy:
    """The SMI policy of one cluster, ready to judge requests."""

    def __init__(self, mode: str, grants: tuple[Grant, ...] | list[Grant], egress: bool = False):
        """`egress`: the MeshConfig's `traffic.enableEgress` (OSM's passthrough to what a sidecar has no route for)."""
        self.mode = mode
        self.egress = egress
        self._grants: dict[Identity, list[Grant]] = {}
        for grant in grants:
            if grant.allows:
                self._grants.setdefault(grant.destination, []).append(grant)
        self._destinations: dict[Identity, _Destination] = {}

    def _destination(self, identity: Identity) -> _Destination:
        found = self._destinations.get(identity)
        if found is not None:
            return found
        dest = _Destination()
        merged: dict[tuple, _HttpRule] = {}
        by_target: dict[tuple[str, str], list[Grant]] = {}
        for grant in self._grants.get(identity, []):
            by_target.setdefault((grant.target.namespace, grant.target.name), []).append(grant)
        for (namespace, name), grants in by_target.items():
            label = f"{namespace}/{name}"
            sources = [g.source for g in grants]
            routes = grants[0].routes
            tcp = [r for r in routes if r.kind == "TCPRoute"]
            ports = {int(p) for r in tcp for p in r.ports if str(p).isdigit()} if tcp else None
            for source in sources:
                if source in dest.ports and dest.ports[source] is None:
                    pass
                elif ports is None:
                    dest.ports[source] = None
                else:
                    dest.ports[source] = (dest.ports.get(source) or set()) | ports
                dest.port_targets.setdefault(source, []).append(label)
            for route in routes:
                if route.kind != "HTTPRouteGroup":
                    continue
                path = route.path_regex or ".*"
                methods = tuple(route.methods) or ("*",)
                key = (path, methods, frozenset(route.headers))
                rule = merged.get(key)
                if rule is None:
                    usable = not re2_problem(path) and not any(re2_problem(v) for _, v in route.headers)
                    rule = merged[key] = _HttpRule(path, methods, tuple(route.headers), usable=usable)
                    dest.rules.append(rule)
                rule.principals.update(sources)
                rule.routes.append(route)
                if label not in rule.targets:
                    rule.targets.append(label)
        self._destinations[identity] = dest
        return dest

    def routes_as_mesh_service(self, source: Identity, destination: Identity) -> bool:
        """Whether `source`'s sidecar has an outbound route (mTLS) to the services of `destination`'s pods: every mesh
        service in permissive mode, in SMI mode those of the identities whose TrafficTargets list it."""
        if self.mode == PERMISSIVE:
            return True
        return any(g.source == source for g in self._grants.get(destination, []))

    def evaluate(self, request: Request) -> OsmVerdict:
        source, group = request.source, request.destination
        if not group.meshed:
            return self._unmeshed(source, group)
        if source is None:
            return OsmVerdict(False, "the source has no sidecar: OSM's sidecars accept only mTLS from the mesh")
        if self.mode == PERMISSIVE:
            return OsmVerdict(True, "permissive mode: every meshed source is allowed")
        dest = self._destination(group.identity)
        if source not in dest.ports:
            return OsmVerdict(False, f"no TrafficTarget to {group.identity} lists {source}")
        allowed_ports = dest.ports[source]
        targets = tuple(dest.port_targets.get(source, ()))
        if allowed_ports is not None and request.port not in allowed_ports:
            listed = ", ".join(map(str, sorted(allowed_ports)))
            return OsmVerdict(False, f"{source} is admitted on port {listed} only (TCPRoute)", targets=targets)
        port = group.port(request.port)
        if port is None or port.osm_protocol == TCP:
            return OsmVerdict(True, f"TCP port: admitted by {', '.join(targets)}", targets=targets)
        matching = [r for r in dest.rules if r.matches(request)]
        if not matching:
            return OsmVerdict(False, "no HTTP route matches (OSM's sidecar answers 404)", targets=targets)
        first = matching[0]
        allowed = source in first.principals
        dependent = any((source in r.principals) != allowed for r in matching[1:])
        route = first.routes[0]
        where = f"route {route.group}/{route.match} of {', '.join(first.targets)}"
        reason = f"{where} {'admits' if allowed else 'does not admit'} {source}"
        if dependent:
            reason += "; another matching route would decide otherwise, so OSM's answer depends on route order"
        return OsmVerdict(allowed, reason, route, tuple(first.targets), dependent)

    def _unmeshed(self, source: Identity | None, group: WorkloadGroup) -> OsmVerdict:
        """A destination without a sidecar: only the caller's sidecar, if it has one, can stand in the way."""
        if source is None:
            return OsmVerdict(True, f"neither the source nor {group} has a sidecar: no proxy sees the request")
        if self.routes_as_mesh_service(source, group.identity):
            why = "permissive mode" if self.mode == PERMISSIVE else f"a TrafficTarget to {group.identity} lists it"
            return OsmVerdict(
                False,
                f"{source}'s sidecar routes to {group}'s services as mesh services ({why}) and speaks mTLS, which a "
                "pod without a sidecar cannot answer",
            )
        if self.egress:
            return OsmVerdict(
                True,
                f"{source}'s sidecar has no route to {group}'s services (no TrafficTarget to {group.identity} lists "
                "it), so enableEgress passes the request through in plaintext, which the pod answers",
            )
        return OsmVerdict(
            False,
            f"{source}'s sidecar has no route to {group}'s services and enableEgress is off: its outbound listener "
            "refuses the request",
        )
