"""Does OSM let this request through? Request-level SMI evaluation, as OSM 1.2's sidecars decide it.

The Policies page answers per pair of service accounts; a migration needs per request. OSM builds, for each
destination service account (from the TrafficTargets naming it, `osm@v1.2.4:pkg/catalog/inbound_traffic_policies.go`,
`pkg/envoy/lds/rbac.go`, `pkg/envoy/rds/route/route_config.go`):

1. a network RBAC filter on every inbound connection: the principal must be a source of one of those TrafficTargets,
   on the TrafficTarget's TCPRoute ports when it has TCPRoutes, on any port when it has none;
2. on an HTTP port (a Service port whose `appProtocol` is not tcp), one route per HTTPRouteGroup match and method, in
   TrafficTarget order, with identical matches merged and their sources united; the route's RBAC admits its
   sources. Envoy takes the *first* route whose path regex, method and header regexes all match (full RE2 matches,
   `apps.policies.regex.full_match`): no route gives a 404, a route that does not list the source a 403. An empty
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
  pod answers; without `enableEgress` the outbound listener refuses it. One exception (`pkg/envoy/lds/egress.go`):
  when an Egress gives the caller an HTTP port, its chain `egress-http.<port>` takes every plain-HTTP request on that
  port that no mesh route takes, and routes only the Egress's hosts: the rest get a 404.

OSM's policy API (`policy_api.py` resolves it): a caller without a sidecar that an IngressBackend names (its address
is an endpoint of a Service source, or in an IPRange) reaches the backend's pods on the admitted port, over plaintext
for `http`, over TLS with a client certificate for `https`. OSM merges the ingress routes of all the services a pod
backs into one virtual host whose routes all match every request, so the *first* route's principals decide, in an
order OSM takes from its informer cache: when the pod's IngressBackends would decide differently the verdict says so
(`order_dependent`), as for overlapping TrafficTarget routes. A request out of the mesh (`evaluate_external`) goes
through the caller's Egress chains (an IP range match first, then TLS by SNI, then HTTP by host and route), and
otherwise through enableEgress's passthrough, or nowhere.

Where OSM's answer depends on the order of overlapping matches from different TrafficTargets (which OSM takes from
its informer cache, an order nobody controls) the verdict says so (`order_dependent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.policies.model import HTTP, PERMISSIVE, TCP, TLS, ExternalRequest, MeshInput, Request
from apps.policies.policy_api import (
    Admission,
    EgressRoute,
    admissions_by_group,
    egress_routes,
    in_range,
    resolve_ingress,
)
from apps.policies.regex import full_match, re2_problem
from apps.policies.smi_access import Grant, Identity, Route


def egress_capture_key(source: Identity, port: int) -> str:
    """The scope key of the fidelity item about OSM's HTTP egress chain taking every request on `port`."""
    return f"egress-capture:{source.namespace}/{source.name}:{port}"


def ingress_key(policy: str) -> str:
    return f"ib:{policy}"


def egress_key(policy: str) -> str:
    return f"egress:{policy}"


@dataclass(frozen=True)
class OsmVerdict:
    allowed: bool
    reason: str
    route: Route | None = None  # the HTTP route that decided
    targets: tuple[str, ...] = ()  # the TrafficTargets ("ns/name") that admitted the source
    order_dependent: bool = False
    keys: tuple[str, ...] = ()  # scope keys of the policy API objects that decided (fidelity items name them)


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

    def __init__(
        self,
        mode: str,
        grants: tuple[Grant, ...] | list[Grant],
        egress: bool = False,
        ingress: dict[str, list[Admission]] | None = None,
        egress_routes: dict[Identity, list[EgressRoute]] | None = None,
    ):
        """`egress`: the MeshConfig's `traffic.enableEgress` (OSM's passthrough to what a sidecar has no route for);
        `ingress`: the IngressBackend admissions per destination group key; `egress_routes`: the Egress policies'
        routes per source."""
        self.mode = mode
        self.egress = egress
        self.ingress = ingress or {}
        self.egress_routes = egress_routes or {}
        self._grants: dict[Identity, list[Grant]] = {}
        for grant in grants:
            if grant.allows:
                self._grants.setdefault(grant.destination, []).append(grant)
        self._destinations: dict[Identity, _Destination] = {}

    @classmethod
    def for_mesh(cls, mesh: MeshInput) -> OsmPolicy:
        """The whole mesh's policy: SMI, egress passthrough, IngressBackends and Egresses."""
        return cls(
            mesh.mode,
            mesh.grants,
            egress=mesh.egress_passthrough,
            ingress=admissions_by_group(resolve_ingress(mesh)),
            egress_routes=egress_routes(mesh),
        )

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
            return self._unmeshed(request)
        if source is None:
            admitted = self._ingress(request)
            if admitted is not None:
                return admitted
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

    def _unmeshed(self, request: Request) -> OsmVerdict:
        """A destination without a sidecar: only the caller's sidecar, if it has one, can stand in the way."""
        source, group = request.source, request.destination
        if source is None:
            return OsmVerdict(True, f"neither the source nor {group} has a sidecar: no proxy sees the request")
        if self.routes_as_mesh_service(source, group.identity):
            why = "permissive mode" if self.mode == PERMISSIVE else f"a TrafficTarget to {group.identity} lists it"
            return OsmVerdict(
                False,
                f"{source}'s sidecar routes to {group}'s services as mesh services ({why}) and speaks mTLS, which a "
                "pod without a sidecar cannot answer",
            )
        port = group.port(request.port)
        if request.protocol == HTTP and (port is None or port.osm_protocol == HTTP or port.istio_protocol == HTTP):
            for number in port.service_ports if port is not None and port.service_ports else (request.port,):
                captured = self._http_egress_chain(source, number)
                if captured:
                    return OsmVerdict(
                        False,
                        f"{source}'s sidecar has no mesh route to {group}'s services, and its Egress "
                        f"{', '.join(dict.fromkeys(r.policy for r in captured))} on HTTP port {number} takes every "
                        "plain-HTTP request on that port: the host is none of its, so Envoy answers 404",
                        keys=(egress_capture_key(source, number), *(egress_key(r.policy) for r in captured)),
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

    def _http_egress_chain(self, source: Identity, port: int) -> list[EgressRoute]:
        return [r for r in self.egress_routes.get(source, []) if r.port == port and r.protocol == HTTP]

    # -- IngressBackend -------------------------------------------------------------------------------------------
    def _ingress(self, request: Request) -> OsmVerdict | None:
        """A caller without a sidecar at a meshed pod: admitted by an IngressBackend's chain, or None (refused)."""
        origin, group = request.origin, request.destination
        on_pod = self.ingress.get(group.key, [])
        if origin is None or not on_pod:
            return None
        on_port = [a for a in on_pod if a.port == request.port]
        chains = [
            a
            for a in on_port
            if a.tls == origin.tls
            and (set(a.source_services) & set(origin.services) or any(in_range(origin.address, c) for c in a.ranges))
        ]
        keys = tuple(dict.fromkeys(ingress_key(a.policy) for a in on_port))
        transport = "TLS" if origin.tls else "plaintext"
        if not chains:
            if not on_port:
                return None
            return OsmVerdict(
                False,
                f"no IngressBackend admits {origin.text} over {transport} on port {request.port} "
                f"({', '.join(dict.fromkeys(a.policy for a in on_port))} name other sources or the other protocol)",
                keys=keys,
            )
        if any(a.client_certificate for a in chains) and not origin.certificate:
            return OsmVerdict(
                False, "the ingress chain requires a client certificate, and none is presented", keys=keys
            )
        # One virtual host for all the pod's ingress policies, every route matching any request: the first decides.
        ordered = sorted(on_pod, key=lambda a: (a.service, a.policy))
        decisions = [a.admits_principal(origin.certificate) for a in ordered]
        allowed = decisions[0]
        first = ordered[0]
        who = f"principal {origin.certificate}" if origin.certificate else "a request without a principal (plaintext)"
        reason = (
            f"IngressBackend {chains[0].policy} admits the address of {origin.text} over {transport} on port "
            f"{request.port}; the pod's ingress route of IngressBackend {first.policy} (Service {first.service}) "
            f"{'admits' if allowed else 'does not admit'} {who}"
        )
        dependent = len(set(decisions)) > 1
        if dependent:
            reason += (
                "; OSM merges the ingress routes of all the Services the pod backs and the first decides, in an "
                "order OSM does not fix: another order decides otherwise"
            )
        return OsmVerdict(
            allowed, reason, order_dependent=dependent, keys=tuple(ingress_key(a.policy) for a in ordered)
        )

    # -- out of the mesh ------------------------------------------------------------------------------------------
    def evaluate_external(self, request: ExternalRequest) -> OsmVerdict:
        """A request from a meshed source to a host or address outside the mesh, through its Egress chains."""
        routes = [r for r in self.egress_routes.get(request.source, []) if r.port == request.port]
        by_range = [r for r in routes if any(in_range(request.address, c) for c in r.ranges)]
        if by_range:
            return self._egress_allowed(by_range, f"its IP range on port {request.port}")
        host = request.host.lower()
        if request.protocol == TLS:
            sni = [r for r in routes if r.protocol == "https" and host in r.hosts]
            if sni:
                return self._egress_allowed(sni, f"HTTPS to {request.host} (matched by SNI)")
        if request.protocol == HTTP:
            chain = [r for r in routes if r.protocol == HTTP]
            if chain:
                return self._egress_http(request, chain)
        if self.egress:
            return OsmVerdict(True, "no Egress route takes it, and enableEgress passes it through")
        return OsmVerdict(False, "no Egress route takes it, and enableEgress is off: the outbound listener refuses it")

    def _egress_allowed(self, routes: list[EgressRoute], what: str) -> OsmVerdict:
        policies = list(dict.fromkeys(r.policy for r in routes))
        return OsmVerdict(True, f"Egress {', '.join(policies)} allows {what}", keys=tuple(map(egress_key, policies)))

    def _egress_http(self, request: ExternalRequest, chain: list[EgressRoute]) -> OsmVerdict:
        keys = (egress_capture_key(request.source, request.port), *(egress_key(r.policy) for r in chain))
        host = request.host.lower()
        listed = [r for r in chain if host in r.hosts]
        if not listed:
            return OsmVerdict(
                False,
                f"{request.source}'s Egress chain on HTTP port {request.port} "
                f"({', '.join(dict.fromkeys(r.policy for r in chain))}) takes every plain-HTTP request on that port "
                f"and routes only its hosts; {request.host} is none of them: Envoy answers 404",
                keys=keys,
            )
        for route in listed:
            if route.routes is None:
                return self._egress_allowed([route], f"HTTP to {request.host}")
            for match in route.routes:
                methods = [m for m in match.methods if m != "*"]
                if (
                    full_match(match.path_regex or ".*", request.path or "/")
                    and (not methods or request.method in methods)
                    and all(full_match(v, request.header(n)) for n, v in match.headers)
                ):
                    return self._egress_allowed([route], f"HTTP to {request.host} (route {match.group}/{match.match})")
        return OsmVerdict(
            False,
            f"no HTTP route of the Egress to {request.host} matches: Envoy answers 404",
            keys=tuple(egress_key(r.policy) for r in listed),
        )
