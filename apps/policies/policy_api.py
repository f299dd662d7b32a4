"""OSM's policy API (policy.openservicemesh.io/v1alpha1) resolved against the snapshot, as osm v1.2.4's catalog reads
it; the translation and OSM's evaluator share these rules, on plain data.

IngressBackend (`pkg/catalog/ingress.go`, `pkg/policy`): a backend entry applies to the pods of the Service it names
(in the IngressBackend's namespace, which must be in the mesh) on the port that is the Service port's *target* port;
for one Service and port OSM uses the first IngressBackend by name. On those pods' inbound listener OSM adds a filter
chain matching that port and the sources' addresses (a Service source's endpoints, an IPRange's CIDR): plaintext for
`http`, TLS for `https` with a client certificate required unless `skipClientCertValidation`. Its RBAC admits anyone
over `http` (an address is all it can check), and over `https` the AuthenticatedPrincipal sources (anyone when
client certificates are not validated). A Service source without endpoints makes OSM build no ingress policy for the
backend at all. Protocols other than http and https are refused ("Unsupported ingress protocol").

Egress (`pkg/catalog/egress.go`, `pkg/envoy/lds/egress.go`), only with `featureFlags.enableEgressPolicy`: for each of
its ServiceAccount sources, per port: `http` → a filter chain `egress-http.<port>` matching the port and the HTTP
protocols, whose routes are the hosts (domains host and host:port) and the HTTPRouteGroup matches (any request
without one); `https` → a TCP chain matching the port and the hosts as SNI; `tcp` → a TCP chain matching the port and
the IP ranges. An Egress naming an UpstreamTrafficSetting that does not exist is ignored as a whole.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from apps.policies.smi_access import Identity, Route

from .model import EgressInfo, IngressBackendInfo, MeshInput, ServiceInfo, WorkloadGroup

INGRESS_PROTOCOLS = ("http", "https")


def in_range(address: str, cidr: str) -> bool:
    """Whether `address` lies in `cidr` (false for either not being one)."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def an_address_in(cidr: str) -> str:
    """An address inside `cidr` (its first host), "" when it is no CIDR."""
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return ""
    return str(next(network.hosts(), network.network_address))


def is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def services_of(mesh: MeshInput, group: WorkloadGroup) -> tuple[str, ...]:
    """The Services ("ns/name") whose selector picks `group`: what its address is an endpoint of."""
    return tuple(
        f"{s.namespace}/{s.name}"
        for s in mesh.services
        if s.namespace == group.namespace
        and s.selector
        and group in mesh.groups_selected(s.namespace, dict(s.selector))
    )


# -- IngressBackend ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """One IngressBackend entry as the backend pods' sidecars apply it."""

    policy: str  # "ns/name" of the IngressBackend
    service: str  # the backend Service's name
    port: int  # the pods' port it admits on (the Service port's target port)
    protocol: str  # http | https
    client_certificate: bool  # https: a client certificate is required (not skipClientCertValidation)
    sni_hosts: tuple[str, ...] = ()
    source_services: tuple[str, ...] = ()  # "ns/name": their endpoints' addresses are admitted
    ranges: tuple[str, ...] = ()  # IPRange sources
    principals: tuple[str, ...] = ()  # AuthenticatedPrincipal names admitted over https
    any_principal: bool = True

    @property
    def tls(self) -> bool:
        return self.protocol == "https"

    def admits_principal(self, name: str) -> bool:
        return self.any_principal or name in self.principals


@dataclass
class Resolved:
    """One backend entry of an IngressBackend: what OSM makes of it."""

    policy: IngressBackendInfo
    entry: dict
    service: ServiceInfo | None = None
    backends: list[tuple[WorkloadGroup, int]] = field(default_factory=list)  # the pods it applies to, and their port
    source_groups: list[WorkloadGroup] = field(default_factory=list)  # the pods of its Service sources
    admission: Admission | None = None
    problem: str = ""  # why OSM builds nothing for it ("" when it does)

    @property
    def text(self) -> str:
        port = self.entry.get("port")
        return f"{self.policy.ref} backend {self.entry.get('name', '')} port {port} ({self.protocol})"

    @property
    def protocol(self) -> str:
        return str(self.entry.get("protocol") or "http").lower()

    @property
    def tls(self) -> dict:
        return self.entry.get("tls") if isinstance(self.entry.get("tls"), dict) else {}


def _target_ports(service: ServiceInfo, number: object) -> list[int]:
    """The pods' port numbers (as `Port.number` has them) of the Service ports whose target port is `number`."""
    out = []
    for p in service.ports:
        if not isinstance(p, dict):
            continue
        target = p.get("targetPort")
        port = p.get("port")
        if isinstance(target, int) and not isinstance(target, bool) and target:
            if target == number:
                out.append(target)
        elif isinstance(port, int) and ((target in (None, "", 0) and port == number) or isinstance(target, str)):
            out.append(port)  # no targetPort: the port itself; a named one resolves per pod (counted, unknown)
    return out


def resolve_ingress(mesh: MeshInput) -> list[Resolved]:
    """Every backend entry of every IngressBackend, resolved (in the order OSM picks them: by namespace and name)."""
    out: list[Resolved] = []
    claimed: dict[tuple[str, str, int], str] = {}
    for policy in sorted(mesh.ingress_backends, key=lambda p: (p.namespace, p.name)):
        for entry in policy.backends:
            out.append(_resolve(mesh, policy, entry, claimed))
    return out


def _resolve(mesh: MeshInput, policy: IngressBackendInfo, entry: dict, claimed: dict) -> Resolved:
    found = Resolved(policy, entry)
    namespace, name = policy.namespace, str(entry.get("name", ""))
    info = mesh.namespace(namespace)
    if info is None or not info.meshed:
        found.problem = f"namespace {namespace} is not in the mesh, so OSM does not read it"
        return found
    if found.protocol not in INGRESS_PROTOCOLS:
        found.problem = f"OSM refuses the protocol {found.protocol!r} (http or https only)"
        return found
    service = found.service = mesh.service(namespace, name)
    if service is None:
        found.problem = f"Service {namespace}/{name} is not in the snapshot"
        return found
    numbers = _target_ports(service, entry.get("port"))
    groups = mesh.groups_selected(namespace, dict(service.selector))
    found.backends = [(g, n) for g in groups for n in numbers if g.port(n) is not None]
    if not found.backends:
        found.problem = f"port {entry.get('port')} is no target port of Service {namespace}/{name}'s pods"
        return found
    first = claimed.setdefault((namespace, name, found.backends[0][1]), policy.name)
    if first != policy.name:
        found.problem = f"OSM applies IngressBackend {namespace}/{first} to this Service and port (the first by name)"
        found.backends = []
        return found
    services, ranges, principals = [], [], []
    for source in policy.sources:
        kind, source_name = source.get("kind"), str(source.get("name", ""))
        if kind == "Service":
            source_ns = str(source.get("namespace") or namespace)
            svc = mesh.service(source_ns, source_name)
            pods = mesh.groups_selected(source_ns, dict(svc.selector)) if svc is not None else []
            if not pods:
                found.problem = (
                    f"its source Service {source_ns}/{source_name} has no endpoints in the snapshot, and OSM builds no "
                    "ingress policy when a Service source has none"
                )
                return found
            services.append(f"{source_ns}/{source_name}")
            found.source_groups += [g for g in pods if g not in found.source_groups]
        elif kind == "IPRange":
            if not is_cidr(source_name):
                found.problem = f"its IPRange source {source_name!r} is no CIDR"
                return found
            ranges.append(source_name)
        elif kind == "AuthenticatedPrincipal":
            principals.append(source_name)
    skip = bool(found.tls.get("skipClientCertValidation"))
    found.admission = Admission(
        policy=f"{namespace}/{policy.name}",
        service=name,
        port=found.backends[0][1],
        protocol=found.protocol,
        client_certificate=found.protocol == "https" and not skip,
        sni_hosts=tuple(h for h in found.tls.get("sniHosts") or () if isinstance(h, str)),
        source_services=tuple(services),
        ranges=tuple(ranges),
        principals=tuple(principals),
        any_principal=found.protocol == "http" or skip,
    )
    return found


def admissions_by_group(resolved: list[Resolved]) -> dict[str, list[Admission]]:
    """The admissions each backend pod's sidecar applies, by workload group key."""
    out: dict[str, list[Admission]] = {}
    for r in resolved:
        if r.admission is None:
            continue
        for group, number in r.backends:
            adm = r.admission if number == r.admission.port else _at_port(r.admission, number)
            out.setdefault(group.key, []).append(adm)
    return out


def _at_port(admission: Admission, number: int) -> Admission:
    return replace(admission, port=number)


# -- Egress --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EgressRoute:
    """What one Egress gives one of its sources on one port."""

    policy: str  # "ns/name"
    port: int
    protocol: str  # http | https | tcp (as written, lowercased)
    hosts: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()
    routes: tuple[Route, ...] | None = None  # HTTP matches; None: any request


def egress_ignored(mesh: MeshInput, egress: EgressInfo) -> str:
    """Why OSM ignores this Egress as a whole ("" when it applies it)."""
    if not mesh.feature("enableEgressPolicy"):
        return "the MeshConfig's featureFlags.enableEgressPolicy is off, so OSM ignores every Egress"
    if egress.upstream_setting and not any(
        u.namespace == egress.namespace and u.name == egress.upstream_setting for u in mesh.upstream_settings
    ):
        return f"it names UpstreamTrafficSetting {egress.namespace}/{egress.upstream_setting}, which does not exist"
    return ""


def egress_routes(mesh: MeshInput) -> dict[Identity, list[EgressRoute]]:
    """Per source service account, what its Egress policies give it (nothing while the feature flag is off)."""
    out: dict[Identity, list[EgressRoute]] = {}
    for egress in mesh.egresses:
        if egress_ignored(mesh, egress):
            continue
        for source in egress.sources:
            for number, protocol in egress.ports:
                out.setdefault(source, []).append(
                    EgressRoute(
                        f"{egress.namespace}/{egress.name}",
                        number,
                        protocol,
                        tuple(h.lower() for h in egress.hosts),
                        egress.ip_addresses,
                        egress.routes if protocol == "http" else None,
                    )
                )
    return out
