"""The proof: every (source service account, destination workload, route match) of the cluster, judged by OSM's rules
(`osm_eval`) and by the generated AuthorizationPolicies (`istio_eval`), with each request both meshes treat
differently listed, its direction, and the fidelity item that predicted it.

Requests come from each route match that reaches the destination (its path, method and header samples, and values
just outside each: a character more, one less, another method, a header missing) and from each of its ports (`GET /`,
or a TCP connection). Sources: every service account a TrafficTarget or a generated policy names for that
destination, plus one that none names, which stands for all the others (both meshes treat unnamed sources alike);
in a cluster of at most `EVERY_SOURCE_UP_TO` service accounts, simply all of them.
Both sides are judged as configured: a pod has a sidecar when the namespace and pod annotations say so, whatever
the pods running now carry.

OSM's policy API joins the pairs. Ingress: the ingress controllers that IngressBackends name by their Service are a
source at every destination (under OSM a pod without a sidecar, admitted by address; under Istio the identity its
outbound-only sidecar gives it), over plaintext, and over TLS with the MeshConfig's ingress gateway certificate where
an `https` backend admits it; an IPRange source is an address inside it. Egress: every meshed service account (or
the ones an Egress names plus one it does not) to each host and port an Egress names, by its protocol, and to a host
none names on each of its HTTP ports, judged by OSM's Egress chains and passthrough and by Istio's ServiceEntries and
outbound traffic policy. UpstreamTrafficSettings and Retries change no decision and are not checked here.

Traffic: each TrafficSplit's shares as OSM applies them (weights over their total, backends OSM skips left out)
against the generated VirtualService's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from apps.mesh.models import selects, weight_problem
from apps.policies.istio_eval import IstioEgress, IstioPolicies, IstioVerdict, Unsupported
from apps.policies.model import (
    HTTP,
    TCP,
    TLS,
    ExternalRequest,
    Item,
    Origin,
    Request,
    WorkloadGroup,
    identity_of,
    route_key,
    route_scope,
    sa_key,
    target_key,
)
from apps.policies.policy_api import admissions_by_group, an_address_in, resolve_ingress, services_of
from apps.policies.regex import BROADER, HEADER, MANUAL, NARROWER, PATH, outside, samples
from apps.policies.smi_access import Identity, Route

from .osm_eval import OsmPolicy, OsmVerdict, egress_capture_key
from .translate import ANY_METHODS, UNLISTED_HOST, Translation, configured_sidecar

UNLISTED = "meshboard-unlisted"
# Up to this many meshed service accounts, every one is a source for every destination; beyond, the ones a policy
# names plus one that none names (both meshes treat all unnamed sources alike).
EVERY_SOURCE_UP_TO = 50


@dataclass(frozen=True)
class Difference:
    request: Request | ExternalRequest
    osm: OsmVerdict
    istio: IstioVerdict
    direction: str  # narrower: Istio denies what OSM allows; broader: Istio allows what OSM denies
    explained_by: tuple[Item, ...] = ()

    @property
    def explained(self) -> bool:
        return bool(self.explained_by)

    @property
    def namespace(self) -> str:
        return self.request.namespace


@dataclass(frozen=True)
class SplitCheck:
    namespace: str
    name: str
    root: str
    osm: tuple[tuple[str, float], ...]  # backend → share of traffic, 0..1
    istio: tuple[tuple[str, float], ...]
    note: str = ""

    @property
    def same(self) -> bool:
        return self.osm == self.istio


@dataclass
class Check:
    requests: int = 0
    pairs: int = 0
    destinations: int = 0
    external: int = 0  # destinations outside the mesh (Egress hosts and addresses)
    differences: list[Difference] = field(default_factory=list)
    splits: list[SplitCheck] = field(default_factory=list)
    found_items: list[Item] = field(default_factory=list)  # what the check itself found (OSM's route order)
    unsupported: list[str] = field(default_factory=list)

    def in_namespace(self, namespace: str) -> list[Difference]:
        return [d for d in self.differences if d.namespace == namespace]

    def splits_in(self, namespace: str) -> list[SplitCheck]:
        return [s for s in self.splits if s.namespace == namespace]

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if not d.explained]

    @property
    def broader(self) -> list[Difference]:
        return [d for d in self.differences if d.direction == BROADER]


@dataclass(frozen=True)
class _Probe:
    port: int
    protocol: str
    method: str = ""
    path: str = ""
    headers: tuple[tuple[str, str], ...] = ()


def _route_probes(route: Route, ports: list[int]) -> list[_Probe]:
    """A route's requests: its samples, and values just outside it, one dimension at a time."""
    if not ports:
        return []
    path_regex = route.path_regex or ".*"
    paths = list(samples(path_regex, PATH)) or ["/"]
    methods = [m for m in route.methods if m != "*"] or ["GET", "DELETE"]
    if "*" in route.methods:
        methods = ["GET", "DELETE"]
    other_method = next((m for m in ANY_METHODS if m not in route.methods), None) if "*" not in route.methods else None
    header_samples = {name: list(samples(regex, HEADER)) for name, regex in route.headers}
    base_headers = {name: (s[0] if s else "") for name, s in header_samples.items()}

    def probe(port: int, method: str, path: str, headers: dict[str, str | None]) -> _Probe:
        kept = tuple((k, v) for k, v in headers.items() if v is not None)
        return _Probe(port, HTTP, method, path, kept)

    out: list[_Probe] = []
    for port in ports:
        out.append(probe(port, methods[0], paths[0], dict(base_headers)))
    port = ports[0]
    for path in paths[1:] + list(outside(path_regex, PATH)):
        out.append(probe(port, methods[0], path, dict(base_headers)))
    for method in methods[1:] + ([other_method] if other_method else []):
        out.append(probe(port, method, paths[0], dict(base_headers)))
    for name, regex in route.headers:
        for value in header_samples[name][1:3] + list(outside(regex, HEADER))[:3]:
            out.append(probe(port, methods[0], paths[0], {**base_headers, name: value}))
        out.append(probe(port, methods[0], paths[0], {**base_headers, name: None}))
    return out


class _Checker:
    def __init__(self, translation: Translation):
        self.t = translation
        mesh = translation.mesh
        self.mesh = mesh
        self.osm = OsmPolicy.for_mesh(mesh)
        self.groups = [
            dataclasses.replace(g, meshed=configured_sidecar(mesh.namespace(g.namespace), g)) for g in mesh.groups
        ]
        sidecars = {g.key for g in self.groups if g.meshed}
        strict = {
            m.namespace
            for m in translation.manifests
            if m.kind == "PeerAuthentication" and not (m.body["spec"].get("selector") or {}).get("matchLabels")
        }  # STRICT in every namespace the bundle covers
        self.istio = IstioPolicies(
            translation.authorization_policies(),
            translation.target.root_namespace,
            strict,
            sidecars,
            self._permissive_ports(),
        )
        self.egress = IstioEgress(
            translation.outbound_policy,
            [m.body for m in translation.manifests if m.kind == "ServiceEntry"],
            [m.body for m in translation.manifests if m.kind == "VirtualService"],
        )
        self.admissions = admissions_by_group(resolve_ingress(mesh))
        self.controllers, self.ingress_callers = self._ingress_callers()
        self.check = Check()
        self.items = translation.items
        self.routes_to: dict[Identity, list[Route]] = {}
        for grant in mesh.grants:
            routes = self.routes_to.setdefault(grant.destination, [])
            for route in grant.routes:
                if route not in routes:
                    routes.append(route)
        self.target_routes: dict[str, list[Route]] = {}
        for grant in mesh.grants:
            self.target_routes.setdefault(f"{grant.target.namespace}/{grant.target.name}", list(grant.routes))
        self.outbound_only = set(translation.outbound_only.values())
        self.identities = list(dict.fromkeys(g.identity for g in self.groups if g.meshed))

    def wanted(self, namespace: str) -> bool:
        return namespace in self.t.namespaces

    def _permissive_ports(self) -> dict[str, frozenset[int]]:
        """Per workload group, the ports a workload-selecting PeerAuthentication of the bundle sets PERMISSIVE."""
        found: dict[str, set[int]] = {}
        for m in self.t.manifests:
            spec = m.body.get("spec") or {}
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            if m.kind != "PeerAuthentication" or not selector:
                continue
            ports = {
                int(p) for p, v in (spec.get("portLevelMtls") or {}).items() if (v or {}).get("mode") == "PERMISSIVE"
            }
            for g in self.groups:
                if g.namespace == m.namespace and selects(selector, g.label_dict):
                    found.setdefault(g.key, set()).update(ports)
        return {k: frozenset(v) for k, v in found.items()}

    def _ingress_callers(self) -> tuple[list[Origin], dict[str, list[Origin]]]:
        """The ingress controllers IngressBackends name (as a plaintext source for every destination), and per backend
        group the callers its admissions let in: the controllers over the admitted transport, an address per range."""
        certificate = self.mesh.ingress_gateway_names[0] if self.mesh.ingress_gateway_names else ""
        controllers: dict[str, Origin] = {}
        per_group: dict[str, list[Origin]] = {}
        for r in resolve_ingress(self.mesh):
            if r.admission is None:
                continue
            tls = r.admission.tls
            callers = []
            for g in r.source_groups:
                plain = controllers.setdefault(
                    g.key,
                    Origin(
                        f"{g.namespace}/{g.name} (ingress controller)",
                        g.key,
                        services_of(self.mesh, g),
                        istio_identity=self.t.outbound_only.get(g.key),
                    ),
                )
                callers.append(dataclasses.replace(plain, tls=True, certificate=certificate) if tls else plain)
            for cidr in r.admission.ranges:
                callers.append(Origin(f"an address in {cidr}", cidr, address=an_address_in(cidr), tls=tls))
            for group, _number in r.backends:
                found = per_group.setdefault(group.key, [])
                found += [c for c in callers if c not in found]
        return list(controllers.values()), per_group

    def run(self) -> Check:
        for group in self.groups:
            info = self.mesh.namespace(group.namespace)
            if info is None or not info.meshed or not self.wanted(group.namespace):
                continue
            try:
                self._destination(group)
            except Unsupported as exc:
                self.check.unsupported.append(f"{group}: {exc}")
        self._external()
        self._splits()
        return self.check

    def _sources(self, group: WorkloadGroup, policies: list[dict]) -> list[Identity]:
        named = [g.source for g in self.mesh.grants if g.destination == group.identity]
        for policy in policies:
            for rule in (policy.get("spec") or {}).get("rules") or []:
                for item in (rule or {}).get("from") or []:
                    for text in ((item or {}).get("source") or {}).get("principals") or []:
                        found = identity_of(str(text))
                        if found is not None and found not in self.outbound_only:
                            named.append(found)  # an ingress controller comes as an origin: no OSM sidecar
        named = list(dict.fromkeys(named))
        if len(self.identities) <= EVERY_SOURCE_UP_TO:
            return list(dict.fromkeys([*named, *self.identities, Identity(group.namespace, UNLISTED)]))
        outsider = next((i for i in self.identities if i not in named and i != group.identity), None)
        return [*named, outsider or Identity(group.namespace, UNLISTED)]

    def _probes(self, group: WorkloadGroup, policies: list[dict]) -> list[_Probe]:
        http_ports = [p.number for p in group.ports if p.osm_protocol == HTTP or p.istio_protocol == HTTP]
        routes = list(self.routes_to.get(group.identity, []))
        for policy in policies:
            meta = policy.get("metadata") or {}
            for index in range(len((policy.get("spec") or {}).get("rules") or [])):
                origin = self.t.origins.get((meta.get("namespace", ""), meta.get("name", ""), index))
                if origin is not None:
                    for route in self.target_routes.get(origin.target, []):
                        if route not in routes:
                            routes.append(route)
        probes: list[_Probe] = []
        for route in routes:
            if route.kind == "HTTPRouteGroup":
                probes += _route_probes(route, http_ports)
            else:
                for port in route.ports:
                    if str(port).isdigit() and group.port(int(port)) is not None:
                        probes.append(_Probe(int(port), TCP))
        for port in group.ports:
            if port.osm_protocol == TCP and port.istio_protocol == TCP:
                probes.append(_Probe(port.number, TCP))
            else:
                probes.append(_Probe(port.number, HTTP, "GET", "/"))
        return list(dict.fromkeys(probes))

    def _destination(self, group: WorkloadGroup) -> None:
        policies = self.istio.applicable(group.namespace, group.label_dict)
        probes = self._probes(group, policies)
        if not probes:
            return
        self.check.destinations += 1
        callers: list[tuple[Identity | None, Origin | None]] = [(s, None) for s in self._sources(group, policies)]
        callers.append((None, None))  # and a caller without a sidecar
        origins = [*self.controllers, *self.ingress_callers.get(group.key, [])]
        callers += [(None, o) for o in dict.fromkeys(origins)]
        for source, origin in callers:
            self.check.pairs += 1
            for probe in probes if source is not None or origin is not None else probes[:1]:
                request = Request(
                    source, group, probe.port, probe.protocol, probe.method, probe.path, probe.headers, origin
                )
                self._judge(request, self.osm.evaluate(request), self.istio.evaluate(request))

    def _judge(self, request: Request | ExternalRequest, osm: OsmVerdict, istio: IstioVerdict) -> None:
        self.check.requests += 1
        if osm.order_dependent:
            self._order(request, osm, istio)
        elif osm.allowed != istio.allowed:
            direction = NARROWER if osm.allowed else BROADER
            self.check.differences.append(
                Difference(request, osm, istio, direction, self._explain(request, osm, istio, direction))
            )

    def _external(self) -> None:
        """Requests out of the mesh: every source to each host and port an Egress names, and to a host none names."""
        if not self.mesh.egresses:
            return
        named = [s for e in self.mesh.egresses for s in e.sources]
        if len(self.identities) <= EVERY_SOURCE_UP_TO:
            sources = list(dict.fromkeys([*self.identities, *named]))
        else:
            outsider = next((i for i in self.identities if i not in named), None)
            sources = list(dict.fromkeys([*named, *([outsider] if outsider else [])]))
        sources = [s for s in sources if self.wanted(s.namespace)]
        targets: list[tuple[str, int, str, str, tuple[Route, ...] | None]] = []  # host, port, protocol, address
        for egress in self.mesh.egresses:
            for number, protocol in egress.ports:
                kind = {"http": HTTP, "https": TLS}.get(protocol, TCP)
                if kind != TCP:
                    targets += [(h, number, kind, "", egress.routes if kind == HTTP else None) for h in egress.hosts]
                    if kind == HTTP:
                        targets.append((UNLISTED_HOST, number, HTTP, "", None))
                targets += [("", number, TCP, an_address_in(c), None) for c in egress.ip_addresses]
        targets = list(dict.fromkeys(targets))
        self.check.external += len({(h, p, a) for h, p, _k, a, _r in targets})
        for source in sources:
            for host, port, kind, address, routes in targets:
                self.check.pairs += 1
                paths = [("GET", "/", ())]
                for route in routes or ():
                    method = next((m for m in route.methods if m != "*"), "GET")
                    sample = (samples(route.path_regex or ".*", PATH) or ("/",))[0]
                    headers = tuple((n, (samples(v, HEADER) or ("",))[0]) for n, v in route.headers)
                    paths.append((method, sample, headers))
                for method, path, headers in paths if kind == HTTP else [("", "", ())]:
                    request = ExternalRequest(source, host, port, kind, method, path, headers, address)
                    self._judge(request, self.osm.evaluate_external(request), self.egress.evaluate(request))

    def _order(self, request: Request | ExternalRequest, osm: OsmVerdict, istio: IstioVerdict) -> None:
        """OSM's answer depends on the order of overlapping routes: Istio's union differs from one of the orders."""
        assert isinstance(request, Request)
        direction = BROADER if istio.allowed else NARROWER
        group = request.destination
        ingress = osm.route is None
        key = f"order:{group.key}:{'ingress' if ingress else osm.route.group if osm.route else ''}"
        item = next((i for i in self.check.found_items if i.key == key), None)
        if item is None:
            if ingress:
                policies = ", ".join(dict.fromkeys(k.split(":", 1)[1] for k in osm.keys if k.startswith("ib:")))
                item = Item(
                    key=key,
                    namespace=group.namespace,
                    level=direction,
                    mapping="IngressBackends of the Services one pod backs → AuthorizationPolicy rules, which allow "
                    "when any matches",
                    subject=f"ingress routes on {group} (IngressBackend {policies})",
                    reason="OSM merges the ingress routes of all the Services a pod backs into one virtual host whose "
                    "routes all match every request, so the first route's sources decide, in an order OSM does not "
                    "fix; Istio allows when any rule matches, so it differs from OSM in one of the orders.",
                    example=request.text(),
                )
            else:
                item = Item(
                    key=key,
                    namespace=group.namespace,
                    level=direction,
                    mapping="overlapping HTTPRouteGroup matches → Istio rules, which allow when any matches",
                    subject=f"routes to {group.identity} that overlap ({', '.join(osm.targets)})",
                    reason="OSM's sidecar takes the first route that matches and its sources only, in an order OSM "
                    "does not fix; Istio allows when any rule matches, so it differs from OSM in one of the orders.",
                    example=request.text(),
                )
            self.check.found_items.append(item)
        self.check.differences.append(Difference(request, osm, istio, direction, (item,)))

    def _explain(
        self, request: Request | ExternalRequest, osm: OsmVerdict, istio: IstioVerdict, direction: str
    ) -> tuple[Item, ...]:
        keys = set(osm.keys)
        if isinstance(request, ExternalRequest):
            keys.add(egress_capture_key(request.source, request.port))
            if istio.policy:
                keys.add(f"se:{istio.policy}")
            levels = (direction, MANUAL)
            return tuple(i for i in self.items if i.level in levels and keys.intersection(i.scope))
        group = request.destination
        keys |= {f"group:{group.key}", sa_key(group.identity)}
        if request.origin is not None:
            keys.add(f"origin:{request.origin.key}")
        if direction == NARROWER:
            for target in osm.targets:
                namespace, _, name = target.partition("/")
                tkey = target_key(namespace, name)
                keys.add(tkey)
                if osm.route is not None:
                    keys.add(route_scope(tkey, route_key(namespace, osm.route)))
            levels = (NARROWER, MANUAL)
        else:
            if istio.policy:
                namespace, _, name = istio.policy.partition("/")
                origin = self.t.origins.get((namespace, name, istio.rule or 0))
                if origin is not None:
                    keys.update(origin.scope)
            levels = (BROADER, MANUAL)
        return tuple(i for i in self.items if i.level in levels and keys.intersection(i.scope))

    def _splits(self) -> None:
        services = {(s.namespace, s.name): s for s in self.mesh.services}
        vs = {(m.namespace, m.source.split("; ", 1)[0]): m for m in self.t.manifests if m.kind == "VirtualService"}
        for split in self.mesh.splits:
            if not self.wanted(split.namespace):
                continue
            info = self.mesh.namespace(split.namespace)
            if info is None or not info.meshed:
                continue
            root = services.get((split.namespace, split.root))
            usable = []
            for svc, weight in split.backends:
                backend = services.get((split.namespace, svc))
                if backend is None or root is None or not (backend.port_numbers & root.port_numbers):
                    continue
                if weight_problem(weight):
                    usable = []
                    break
                usable.append((svc, int(weight)))
            total = sum(w for _, w in usable)
            osm = tuple((s, w / total) for s, w in usable) if total >= 1 else ()
            manifest = vs.get((split.namespace, f"TrafficSplit {split.namespace}/{split.name}"))
            istio: tuple[tuple[str, float], ...] = ()
            if manifest is not None:
                spec = manifest.body["spec"]
                route = (spec.get("http") or spec.get("tcp") or [{}])[-1].get("route") or []
                vs_total = sum(r.get("weight", 0) for r in route)
                istio = (
                    tuple((r["destination"]["host"].split(".", 1)[0], r.get("weight", 0) / vs_total) for r in route)
                    if vs_total
                    else ()
                )
            note = "" if manifest is not None else "no VirtualService generated (see the fidelity items)"
            self.check.splits.append(SplitCheck(split.namespace, split.name, split.root, osm, istio, note))


def check(translation: Translation) -> Check:
    """Judge every generated request by both meshes and list where they differ."""
    return _Checker(translation).run()
