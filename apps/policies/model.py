"""The plain data the migration assistant works on: what the snapshot says about the mesh (`MeshInput`, built by
`snapshot.py`, the one module that reads the database), what the translation makes of it (`Manifest`,
`WorkloadPatch`, `Item`), and the requests both evaluators judge (`Request`).

Nothing here knows Django: the translation, both evaluators and the equivalence check run on these dataclasses, so
tests and the property-based test build them by hand.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from apps.mesh.models import port_gap, port_numbers, selects
from apps.policies.smi_access import Grant, Identity, Route

from .regex import EXACT

TRUST_DOMAIN = "cluster.local"  # OSM's default and the AKS Istio add-on's
MANAGED_BY = "meshboard"
GENERATED_FROM = "meshboard.io/generated-from"  # label (kind.name, a label value) and annotation (the full reference)
FIDELITY = "meshboard.io/fidelity"  # annotation: the worst fidelity of the items behind the object
PREFIX = "meshboard-"

HTTP, TCP = "http", "tcp"
TLS = "tls"  # a request that is TLS end to end from the caller (an HTTPS ingress backend, HTTPS egress)
PERMISSIVE, SMI, UNKNOWN = "permissive", "smi", "unknown"

# Pod labels that differ between the pods of one workload or change at each rollout: never part of a selector.
VOLATILE_LABELS = frozenset(
    {
        "pod-template-hash",
        "controller-revision-hash",
        "pod-template-generation",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "osm-proxy-uuid",
        "security.istio.io/tlsMode",
        "service.istio.io/canonical-name",
        "service.istio.io/canonical-revision",
    }
)


def principal(identity: Identity) -> str:
    """Istio's peer identity of a service account (`source.principals`)."""
    return f"{TRUST_DOMAIN}/ns/{identity.namespace}/sa/{identity.name}"


def identity_of(principal_text: str) -> Identity | None:
    match = re.fullmatch(r"[^/]+/ns/([^/]+)/sa/([^/]+)", principal_text)
    return Identity(match.group(1), match.group(2)) if match else None


def fqdn(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


def object_name(*parts: str) -> str:
    """`meshboard-<parts>`: a DNS subdomain of at most 253 characters (long names end in a hash, so stay unique)."""
    name = PREFIX + "-".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9.-]", "-", name.lower()).strip("-.")
    if len(name) > 253:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = name[:242].rstrip("-.") + "-" + digest
    return name


def label_value(text: str) -> str:
    """`text` as a label value: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)
    if len(value) > 63:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        value = value[:54] + "-" + digest
    return value.strip("._-")[:63] or "x"


@dataclass(frozen=True)
class Target:
    """Which Istio: the AKS add-on (`revision` such as `asm-1-27`, from `az aks mesh get-revisions`) or upstream
    Istio (`revision` empty: the `istio-injection=enabled` label)."""

    revision: str = ""

    @property
    def aks(self) -> bool:
        return bool(self.revision)

    @property
    def root_namespace(self) -> str:
        return "aks-istio-system" if self.aks else "istio-system"

    @property
    def namespace_label(self) -> tuple[str, str]:
        return ("istio.io/rev", self.revision) if self.aks else ("istio-injection", "enabled")

    @property
    def pod_opt_in_label(self) -> tuple[str, str]:
        return ("istio.io/rev", self.revision) if self.aks else ("sidecar.istio.io/inject", "true")

    @property
    def label_text(self) -> str:
        key, value = self.namespace_label
        return f"{key}={value}"

    @property
    def name(self) -> str:
        return f"the AKS Istio add-on, revision {self.revision}" if self.aks else "upstream Istio"


@dataclass(frozen=True)
class Port:
    """A port of a workload's pods as its Services expose it: the port connections arrive on (the target port)."""

    number: int
    osm_protocol: str  # http | tcp: OSM reads the Service port's appProtocol, http when unset
    istio_protocol: str  # http | tcp: Istio reads appProtocol, else the port name's prefix, else sniffs (http)
    services: tuple[str, ...] = ()
    named_target: str = ""  # the Service's targetPort when it is a name (the number is then the Service port)
    service_ports: tuple[int, ...] = ()  # the Service ports that lead to it (what a caller's sidecar sees)


@dataclass(frozen=True)
class WorkloadGroup:
    """The pods of one workload (or one bare pod): the unit a label selector picks and a request goes to."""

    namespace: str
    kind: str  # Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod
    name: str
    service_account: str
    labels: tuple[tuple[str, str], ...]  # the labels all its pods share, volatile ones left out
    meshed: bool  # its pods carry the sidecar
    pods: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()  # of its first pod
    from_template: bool = False  # no pod runs: from the workload's pod template

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def identity(self) -> Identity:
        return Identity(self.namespace, self.service_account)

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def port(self, number: int) -> Port | None:
        return next((p for p in self.ports if p.number == number), None)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    monitored: bool  # openservicemesh.io/monitored-by names this mesh
    injection: bool  # openservicemesh.io/sidecar-injection enabled on the namespace
    ignored: bool  # openservicemesh.io/ignore
    monitored_by: str = ""

    @property
    def meshed(self) -> bool:
        return self.monitored and not self.ignored


@dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    selector: tuple[tuple[str, str], ...]
    ports: tuple[dict, ...]  # as stored: {name, port, targetPort, protocol, appProtocol}

    @property
    def port_numbers(self) -> set[object]:
        return port_numbers(self.ports)

    def port_gap(self, root: ServiceInfo | None) -> list[str]:
        """The root's port numbers this backend lacks, by the snapshot's rule (`apps.mesh.models.port_gap`); none
        when the root is unknown."""
        return port_gap(root.ports, self.ports) if root is not None else []


@dataclass(frozen=True)
class SplitInfo:
    namespace: str
    name: str
    root: str  # the root Service's name
    backends: tuple[tuple[str, object], ...]  # (service, weight as stored)


@dataclass(frozen=True)
class IngressBackendInfo:
    """An IngressBackend as collected: `backends` [{name, port, protocol, tls}], `sources` [{kind, name, namespace}]."""

    namespace: str
    name: str
    backends: tuple[dict, ...] = ()
    sources: tuple[dict, ...] = ()
    matches: tuple[dict, ...] = ()

    @property
    def ref(self) -> str:
        return f"IngressBackend {self.namespace}/{self.name}"


@dataclass(frozen=True)
class EgressInfo:
    """An Egress as collected: its ServiceAccount sources, hosts, IP ranges, ports [(number, protocol)], matches."""

    namespace: str
    name: str
    sources: tuple[Identity, ...] = ()
    hosts: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    ports: tuple[tuple[int, str], ...] = ()
    matches: tuple[dict, ...] = ()
    other_sources: tuple[str, ...] = ()  # sources of a kind OSM does not read (only ServiceAccount)
    # The HTTP routes of its HTTPRouteGroup matches: None when it names none (any request), () when the groups it
    # names are missing (OSM then builds no route: nothing is let through).
    routes: tuple[Route, ...] | None = None
    upstream_setting: str = ""  # the UpstreamTrafficSetting a match names ("" none)

    @property
    def ref(self) -> str:
        return f"Egress {self.namespace}/{self.name}"


@dataclass(frozen=True)
class UpstreamSettingInfo:
    namespace: str
    name: str
    host: str
    connection_settings: dict = field(default_factory=dict)  # {tcp: {...}, http: {...}} as written
    rate_limit: dict = field(default_factory=dict)  # {local: {tcp, http}} as written
    http_routes: tuple[dict, ...] = ()  # [{path, rateLimit}] as written

    @property
    def ref(self) -> str:
        return f"UpstreamTrafficSetting {self.namespace}/{self.name}"


@dataclass(frozen=True)
class RetryInfo:
    namespace: str
    name: str
    source: dict = field(default_factory=dict)  # {kind, name, namespace}
    destinations: tuple[dict, ...] = ()  # [{kind, name, namespace}]
    policy: dict = field(default_factory=dict)  # retryPolicy {retryOn, perTryTimeout, numRetries, retryBackoff...}

    @property
    def ref(self) -> str:
        return f"Retry {self.namespace}/{self.name}"


@dataclass(frozen=True)
class IngressInfo:
    """A networking.k8s.io Ingress: its class's controller and its routes [{host, path, path_type, service, port}]."""

    namespace: str
    name: str
    ingress_class: str = ""
    controller: str = ""  # the IngressClass's spec.controller ("" when unknown)
    routes: tuple[dict, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MeshInput:
    """Everything the translation reads, from one cluster's latest snapshot."""

    cluster: str
    mode: str  # permissive | smi | unknown
    mesh_name: str = ""
    is_aks: bool = False
    control_plane_namespace: str = ""
    certificate_provider: str = ""
    meshconfig: dict = field(default_factory=dict)
    served_groups: dict = field(default_factory=dict)
    namespaces: tuple[NamespaceInfo, ...] = ()
    groups: tuple[WorkloadGroup, ...] = ()
    services: tuple[ServiceInfo, ...] = ()
    grants: tuple[Grant, ...] = ()
    splits: tuple[SplitInfo, ...] = ()
    # Observed traffic between namespaces (source, destination, requests/s), from the metrics snapshot.
    edges: tuple[tuple[str, str, float], ...] = ()
    collected_at: str = ""
    # OSM's policy API (policy.openservicemesh.io/v1alpha1) and the Ingresses that lead to its IngressBackends.
    ingress_backends: tuple[IngressBackendInfo, ...] = ()
    egresses: tuple[EgressInfo, ...] = ()
    upstream_settings: tuple[UpstreamSettingInfo, ...] = ()
    retries: tuple[RetryInfo, ...] = ()
    ingresses: tuple[IngressInfo, ...] = ()

    @property
    def egress_passthrough(self) -> bool:
        """MeshConfig `traffic.enableEgress`: a sidecar passes what it has no route for through to the original
        destination (false when no MeshConfig was collected: OSM's CRD has no default but Go's false)."""
        traffic = (self.meshconfig or {}).get("traffic")
        return isinstance(traffic, dict) and traffic.get("enableEgress") is True

    def feature(self, name: str) -> bool:
        """A MeshConfig feature flag (`featureFlags.<name>`), false when absent, as OSM's Go zero value."""
        flags = (self.meshconfig or {}).get("featureFlags")
        return isinstance(flags, dict) and flags.get(name) is True

    @property
    def ingress_gateway_names(self) -> tuple[str, ...]:
        """MeshConfig `certificate.ingressGateway.subjectAltNames`: the names on the client certificate OSM issues
        to the ingress controller, which it presents to HTTPS backends."""
        cert = (self.meshconfig or {}).get("certificate")
        gateway = cert.get("ingressGateway") if isinstance(cert, dict) else None
        names = gateway.get("subjectAltNames") if isinstance(gateway, dict) else None
        return tuple(n for n in names or () if isinstance(n, str) and n)

    def namespace(self, name: str) -> NamespaceInfo | None:
        return next((n for n in self.namespaces if n.name == name), None)

    def groups_selected(self, namespace: str, selector: dict[str, str]) -> list[WorkloadGroup]:
        """The workload groups of `namespace` a Service's selector picks (none for an empty selector)."""
        if not selector:
            return []
        return [g for g in self.groups if g.namespace == namespace and selects(selector, g.label_dict)]

    def groups_of(self, identity: Identity) -> list[WorkloadGroup]:
        return [g for g in self.groups if g.identity == identity]

    def service(self, namespace: str, name: str) -> ServiceInfo | None:
        return next((s for s in self.services if s.namespace == namespace and s.name == name), None)


@dataclass(frozen=True)
class Item:
    """One fidelity verdict: how faithfully one piece of OSM configuration becomes Istio's."""

    key: str
    namespace: str  # "" for the cluster as a whole
    level: str  # exact | narrower | broader | manual
    mapping: str  # the row of the mapping: "HTTPRouteGroup pathRegex → to.operation.paths"
    subject: str  # the OSM object and field
    reason: str  # one sentence
    example: str = ""  # for narrower/broader: the request the two meshes treat differently
    generated: tuple[str, ...] = ()  # the Istio objects it concerns ("AuthorizationPolicy ns/name")
    scope: tuple[str, ...] = ()  # what a difference in the equivalence check may be explained by (route:, tt:, sa:)


@dataclass
class Manifest:
    """One Istio (or Namespace) object of the bundle."""

    body: dict
    source: str  # the OSM object it comes from, as text
    level: str = EXACT

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def api_version(self) -> str:
        return self.body["apiVersion"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.body["metadata"].get("namespace", "")

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass
class WorkloadPatch:
    """A JSON merge patch of a workload's pod template (labels and annotations the sidecar injector reads)."""

    kind: str
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def patch(self) -> dict:
        meta: dict = {}
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        if self.kind == "Pod":
            return {"metadata": meta}
        return {"spec": {"template": {"metadata": meta}}}

    @property
    def resource(self) -> str:
        return {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset"}.get(
            self.kind, self.kind.lower()
        )

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass
class ObjectPatch:
    """A JSON merge patch of an object other than a workload (an Ingress's annotations; null removes a key)."""

    resource: str  # as kubectl names it: "ingress"
    kind: str
    namespace: str
    name: str
    patch: dict = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Origin:
    """Where a request without an OSM sidecar comes from, as the destination's sidecar sees it (IngressBackend
    sources): a pod of some Services (its address is one of their endpoints), an address, and what it sends. The same
    caller under Istio: `istio_identity`, when the translation gives it an Istio sidecar (mTLS as that service
    account), else plaintext from `address`."""

    text: str  # "ingress-nginx/ingress-nginx-controller", "an address in 10.0.0.0/8"
    key: str = ""  # its workload group's key, or the range it stands for
    services: tuple[str, ...] = ()  # "ns/name" of the Services whose endpoints it is
    address: str = ""  # its source IP, when one is known
    tls: bool = False  # OSM: it speaks TLS to the backend (HTTPS), presenting `certificate`
    certificate: str = ""  # OSM: the name (SAN) on its client certificate, "" when it presents none
    istio_identity: Identity | None = None


@dataclass(frozen=True)
class Request:
    """One request (or TCP connection) from a source service account to a destination workload."""

    source: Identity | None  # None: no sidecar, plaintext
    destination: WorkloadGroup
    port: int
    protocol: str = HTTP  # what is sent: an HTTP request or a TCP connection
    method: str = ""
    path: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # names as written; matched case-insensitively
    origin: Origin | None = None  # a caller without an OSM sidecar that a policy names (an ingress controller)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def istio_source(self) -> Identity | None:
        """The caller's service account under Istio (None: plaintext, no principal)."""
        return self.origin.istio_identity if self.origin is not None else self.source

    @property
    def address(self) -> str:
        return self.origin.address if self.origin is not None else ""

    @property
    def namespace(self) -> str:
        """Where a difference about it is shown: the destination's namespace."""
        return self.destination.namespace

    def source_text(self) -> str:
        if self.origin is not None:
            how = f" over TLS with certificate {self.origin.certificate}" if self.origin.tls else ""
            return f"{self.origin.text}{how}"
        return str(self.source) if self.source else "a pod without a sidecar"

    def text(self) -> str:
        source = self.source_text()
        dest = f"{self.destination.namespace}/{self.destination.name} port {self.port}"
        if self.protocol == TCP:
            return f"TCP from {source} to {dest}"
        headers = "".join(f" [{k}: {v!r}]" for k, v in self.headers)
        return f"{self.method} {self.path}{headers} from {source} to {dest}"


@dataclass(frozen=True)
class ExternalRequest:
    """A request from a meshed service account to a destination outside the mesh: a host name or an address (Egress),
    over HTTP, TLS (its SNI is the host) or TCP."""

    source: Identity
    host: str
    port: int
    protocol: str = HTTP  # http | tls | tcp
    method: str = ""
    path: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    address: str = ""  # the destination IP, for IP-range Egress and ServiceEntry addresses

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def namespace(self) -> str:
        """Where a difference about it is shown: the source's namespace (where Egress policies live)."""
        return self.source.namespace

    def text(self) -> str:
        where = f"{self.host or self.address}:{self.port}"
        if self.protocol == TCP:
            return f"TCP from {self.source} to {where} (outside the mesh)"
        if self.protocol == TLS:
            return f"TLS (SNI {self.host}) from {self.source} to {where} (outside the mesh)"
        headers = "".join(f" [{k}: {v!r}]" for k, v in self.headers)
        return f"{self.method} {self.path or '/'}{headers} from {self.source} to http://{where} (outside the mesh)"


@dataclass(frozen=True)
class RuleOrigin:
    """Where one rule of a generated AuthorizationPolicy comes from, for explaining differences."""

    target: str  # "ns/name" of the TrafficTarget
    route: str  # route key, "" for a port rule
    scope: tuple[str, ...]


def route_key(namespace: str, route: Route) -> str:
    return f"route:{namespace}/{route.kind}/{route.group}/{route.match}"


def target_key(namespace: str, name: str) -> str:
    return f"tt:{namespace}/{name}"


def route_scope(target: str, route: str) -> str:
    """A route as one TrafficTarget uses it (two TrafficTargets may share an HTTPRouteGroup)."""
    return f"{target}|{route}"


def sa_key(identity: Identity) -> str:
    return f"sa:{identity.namespace}/{identity.name}"
