"""What the lab builds, read from the stand-in through the official `kubernetes` client.

`build_workloads` turns the meshed pods (label `osm-proxy-uuid`) and their Services into `Workload`s, each with the
OSM `MeshService`s it backs. A headless Service gives one MeshService per pod, named `<hostname>.<service>` as OSM
does, so the mysql StatefulSet's cluster is `bookwarehouse/mysql-0.mysql|3306`. `read_topology` adds what lies outside
the mesh: the ingress controllers the lab plays (ingress-nginx's pods, by its well-known labels), the Services'
endpoints (pod IPs, which an IngressBackend's Service source stands for) and the ingress classes.

`Policy` holds the SMI objects, OSM's policy API (IngressBackend, Egress, UpstreamTrafficSetting, Retry), the
Ingresses and the MeshConfig the controller watches, and answers what a sidecar's config needs, as OSM v1.2.4 does:
which services may this identity call (outbound: those of the identities whose TrafficTargets list it), which
identities and routes does this identity admit (inbound), and which of OSM's policies apply to it (`ingress_policy`,
`egresses_for`, `retry_for`, `upstream_setting_for`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lab.mesh.certs import identity

MESHED_POD_LABEL = "osm-proxy-uuid"


@dataclass(frozen=True)
class MeshService:
    namespace: str
    name: str
    port: int
    target_port: int
    protocol: str  # "http" or "tcp"
    service: str  # the Kubernetes Service's name (differs from `name` for a headless service's per-pod entry)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def cluster(self) -> str:
        """OSM's outbound cluster name `<ns>/<svc>|<port>` (pkg/service/types.go EnvoyClusterName)."""
        return f"{self.namespace}/{self.name}|{self.target_port}"

    @property
    def local_cluster(self) -> str:
        return f"{self.cluster}|local"

    @property
    def fqdn(self) -> str:
        """OSM's `MeshService.FQDN()`: `<svc>.<ns>.svc.cluster.local` (`<pod>.<svc>.<ns>...` for a headless entry);
        the SNI a caller sends and the inbound filter chain matches."""
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    sni = fqdn

    @property
    def outbound_match_name(self) -> str:
        """OSM's outbound traffic match (filter chain) name, `outbound_<ns>/<svc>_<port>_<protocol>`."""
        return f"outbound_{self.key}_{self.port}_{self.protocol}"

    @property
    def inbound_match_name(self) -> str:
        """OSM's inbound traffic match (filter chain) name, `inbound_<ns>/<svc>_<targetPort>_<protocol>`."""
        return f"inbound_{self.key}_{self.target_port}_{self.protocol}"

    def hostnames(self, local_namespace: bool) -> list[str]:
        """OSM's `k8s.GetHostnamesForService`: the virtual host's domains, short forms only from the same namespace."""
        names = [self.name] if local_namespace else []
        for suffix in ("", ".svc", ".svc.cluster", ".svc.cluster.local"):
            names.append(f"{self.name}.{self.namespace}{suffix}")
        out = []
        for name in names:
            out += [name, f"{name}:{self.port}"]
        return out


@dataclass
class Workload:
    """One meshed pod: its app and its sidecar."""

    namespace: str
    pod: str
    labels: dict[str, str]
    service_account: str
    controller_kind: str
    controller_name: str
    services: list[MeshService] = field(default_factory=list)
    app_port: int | None = None  # the container port the app listens on (None for pure clients)
    annotations: dict[str, str] = field(default_factory=dict)
    pod_ip: str = ""

    @property
    def identity(self) -> str:
        return identity(self.service_account, self.namespace)

    @property
    def app(self) -> str:
        return self.labels.get("app", self.pod)

    @property
    def workload_name(self) -> str:
        """Deployment name for a ReplicaSet-owned pod (hash suffix removed), else the controller's name."""
        if self.controller_kind == "ReplicaSet":
            return re.sub(r"-[^-]+$", "", self.controller_name)
        return self.controller_name

    @property
    def name(self) -> str:
        """A short unique name for files and logs: the workload's name (`bookstore`, `bookstore-v2`, `mysql`)."""
        return self.workload_name or self.pod


def _protocol(port: dict) -> str:
    app_protocol = (port.get("appProtocol") or "").lower()
    name = (port.get("name") or "").lower()
    if app_protocol in ("tcp", "mysql") or name.startswith("tcp") or app_protocol.startswith("tcp"):
        return "tcp"
    return "http"


def _selects(selector: dict | None, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def build_workloads(pods: list[dict], services: list[dict]) -> list[Workload]:
    """Workloads from raw pod and service dicts (as the API returns them)."""
    workloads = []
    for pod in pods:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        labels = meta.get("labels") or {}
        if MESHED_POD_LABEL not in labels:
            continue
        owner = next(iter(meta.get("ownerReferences") or []), {})
        app_ports = [
            p["containerPort"]
            for c in spec.get("containers", [])
            if c.get("name") not in ("envoy", "osm-healthcheck")
            for p in c.get("ports") or []
        ]
        wl = Workload(
            namespace=meta["namespace"],
            pod=meta["name"],
            labels=dict(labels),
            service_account=spec.get("serviceAccountName") or "default",
            controller_kind=owner.get("kind", ""),
            controller_name=owner.get("name", ""),
            app_port=app_ports[0] if app_ports else None,
            annotations=dict(meta.get("annotations") or {}),
            pod_ip=(pod.get("status") or {}).get("podIP") or "",
        )
        for svc in services:
            smeta, sspec = svc["metadata"], svc.get("spec") or {}
            if smeta["namespace"] != wl.namespace or not _selects(sspec.get("selector"), labels):
                continue
            headless = sspec.get("clusterIP") == "None"
            hostname = spec.get("hostname") or wl.pod
            name = f"{hostname}.{smeta['name']}" if headless else smeta["name"]
            for port in sspec.get("ports") or []:
                target = port.get("targetPort", port["port"])
                target = target if isinstance(target, int) else port["port"]
                wl.services.append(
                    MeshService(wl.namespace, name, port["port"], target, _protocol(port), smeta["name"])
                )
        workloads.append(wl)
    return sorted(workloads, key=lambda w: (w.namespace, w.pod))


# ---- outside the mesh ---------------------------------------------------------------------------------------------
# ingress-nginx's controller pods carry these labels (its Helm chart and static manifests); the lab plays them.
INGRESS_NGINX_LABELS = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
INGRESS_NGINX_CONTROLLER = "k8s.io/ingress-nginx"
# Where the lab's ingress controllers connect from: each stands for a controller pod's IP (127.0.0.1 is the meshed
# pods' own address and 127.0.0.2 where passed-through connections land, see lab/mesh/envoy.py).
INGRESS_ADDRESSES = tuple(f"127.0.0.{i}" for i in range(3, 20))


@dataclass
class IngressController:
    """An ingress-nginx controller pod (outside the mesh: no sidecar), the Services that select it, the ingress
    classes it serves, and the loopback address that stands for its pod IP."""

    workload: Workload
    services: list[str]
    address: str
    classes: tuple[str, ...] = ("nginx",)

    @property
    def name(self) -> str:
        return self.workload.name

    @property
    def namespace(self) -> str:
        return self.workload.namespace


@dataclass
class Topology:
    """What the lab reads once at start: the meshed workloads, the ingress controllers it plays, and the Services'
    endpoints (`<ns>/<svc>` -> pod IPs, from the Endpoints objects)."""

    workloads: list[Workload]
    ingress_controllers: list[IngressController] = field(default_factory=list)
    endpoints: dict[str, list[str]] = field(default_factory=dict)

    def addresses(self) -> dict[str, str]:
        """Pod IP -> the 127.0.0.x address its connections come from in the lab."""
        out = {w.pod_ip: "127.0.0.1" for w in self.workloads if w.pod_ip}
        for ic in self.ingress_controllers:
            if ic.workload.pod_ip:
                out[ic.workload.pod_ip] = ic.address
        return out


def build_ingress_controllers(
    pods: list[dict], services: list[dict], ingress_classes: list[dict] | None = None
) -> list[IngressController]:
    """ingress-nginx controller pods without a sidecar (the OSM nginx demo's setup), by their well-known labels."""
    classes = tuple(
        sorted(
            c["metadata"]["name"]
            for c in ingress_classes or []
            if (c.get("spec") or {}).get("controller") == INGRESS_NGINX_CONTROLLER
        )
    ) or ("nginx",)
    found = []
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"])):
        meta, spec = pod["metadata"], pod.get("spec") or {}
        labels = meta.get("labels") or {}
        if MESHED_POD_LABEL in labels or any(labels.get(k) != v for k, v in INGRESS_NGINX_LABELS.items()):
            continue
        owner = next(iter(meta.get("ownerReferences") or []), {})
        wl = Workload(
            namespace=meta["namespace"],
            pod=meta["name"],
            labels=dict(labels),
            service_account=spec.get("serviceAccountName") or "default",
            controller_kind=owner.get("kind", ""),
            controller_name=owner.get("name", ""),
            annotations=dict(meta.get("annotations") or {}),
            pod_ip=(pod.get("status") or {}).get("podIP") or "",
        )
        selecting = sorted(
            s["metadata"]["name"]
            for s in services
            if s["metadata"]["namespace"] == wl.namespace and _selects((s.get("spec") or {}).get("selector"), labels)
        )
        if len(found) < len(INGRESS_ADDRESSES):
            found.append(IngressController(wl, selecting, INGRESS_ADDRESSES[len(found)], classes))
    return found


def build_endpoints(endpoints: list[dict]) -> dict[str, list[str]]:
    """`<ns>/<svc>` -> the ready addresses (pod IPs) of its Endpoints object."""
    out: dict[str, list[str]] = {}
    for ep in endpoints:
        meta = ep["metadata"]
        ips = [a["ip"] for subset in ep.get("subsets") or [] for a in subset.get("addresses") or [] if a.get("ip")]
        out[f"{meta['namespace']}/{meta['name']}"] = sorted(set(ips))
    return out


def read_topology(api_client: Any) -> Topology:
    """The meshed workloads, ingress controllers and endpoints, read once with the official client."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api_client)
    pods = api_client.sanitize_for_serialization(core.list_pod_for_all_namespaces())["items"]
    services = api_client.sanitize_for_serialization(core.list_service_for_all_namespaces())["items"]
    endpoints = api_client.sanitize_for_serialization(core.list_endpoints_for_all_namespaces())["items"]
    try:
        classes = api_client.sanitize_for_serialization(client.NetworkingV1Api(api_client).list_ingress_class())
    except ApiException as err:  # a server without networking.k8s.io/v1 ingress classes
        if err.status != 404:
            raise
        classes = {"items": []}
    return Topology(
        build_workloads(pods, services),
        build_ingress_controllers(pods, services, classes["items"]),
        build_endpoints(endpoints),
    )


def mesh_services(workloads: list[Workload]) -> dict[str, MeshService]:
    """Every MeshService of the mesh by `<ns>/<name>`, for one port each (the first)."""
    out: dict[str, MeshService] = {}
    for wl in workloads:
        for ms in wl.services:
            out.setdefault(ms.key, ms)
    return out


def backing(workloads: list[Workload], ms: MeshService) -> list[Workload]:
    return [w for w in workloads if any(s.key == ms.key for s in w.services)]


# ---- policy -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpMatch:
    path_regex: str | None
    methods: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class InboundRule:
    """One TrafficTarget to a destination identity: who (`sources`), on which HTTP routes (None: any route), and on
    which TCPRoute ports (`tcp_ports`; `tcp` when it names a TCPRoute at all). `name` is `<ns>/<name>`."""

    sources: tuple[str, ...]
    http_matches: tuple[HttpMatch, ...] | None
    tcp: bool
    name: str = ""
    tcp_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class IngressMatch:
    """OSM's IngressTrafficMatch: an inbound filter chain for ingress to one MeshService port. `source_ranges` are
    OSM's CIDRs (the source Service's endpoint IPs as /32, or IPRange sources)."""

    name: str
    port: int
    protocol: str
    server_names: tuple[str, ...]
    skip_client_cert_validation: bool
    source_ranges: tuple[str, ...]


@dataclass(frozen=True)
class IngressRule:
    """One ingress routing rule: any path and method to `cluster`, for these principals (`*`: anyone)."""

    cluster: str
    principals: frozenset[str]


@dataclass
class IngressPolicy:
    """What OSM's `GetIngressTrafficPolicy` returns for a MeshService: its traffic matches and one HTTP route policy
    named `<ns>/<svc>_from_<IngressBackend>` for hostnames `*`."""

    name: str
    matches: list[IngressMatch]
    rules: list[IngressRule]
    service: str = ""  # the MeshService's `<ns>/<name>`


WILDCARD_PRINCIPAL = "*"


@dataclass
class Policy:
    """The SMI objects, OSM's policy API objects, Ingresses and MeshConfig, as dicts keyed by `<ns>/<name>`."""

    splits: dict[str, dict] = field(default_factory=dict)
    targets: dict[str, dict] = field(default_factory=dict)
    http_route_groups: dict[str, dict] = field(default_factory=dict)
    tcp_routes: dict[str, dict] = field(default_factory=dict)
    mesh_configs: dict[str, dict] = field(default_factory=dict)
    ingress_backends: dict[str, dict] = field(default_factory=dict)
    egresses: dict[str, dict] = field(default_factory=dict)
    upstream_traffic_settings: dict[str, dict] = field(default_factory=dict)
    retries: dict[str, dict] = field(default_factory=dict)
    ingresses: dict[str, dict] = field(default_factory=dict)

    def _spec(self, *path: str):
        for mc in self.mesh_configs.values():
            value = mc.get("spec") or {}
            for key in path:
                value = (value or {}).get(key)
            return value
        return None

    @property
    def permissive(self) -> bool:
        return bool(self._spec("traffic", "enablePermissiveTrafficPolicyMode"))

    @property
    def enable_egress(self) -> bool:
        """MeshConfig `traffic.enableEgress`: a default filter chain passes unmatched outbound traffic through."""
        return bool(self._spec("traffic", "enableEgress"))

    @property
    def egress_policy(self) -> bool:
        """Feature flag `enableEgressPolicy`: OSM then adds the TLS and HTTP inspectors to the outbound listener."""
        return bool(self._spec("featureFlags", "enableEgressPolicy"))

    @property
    def retry_policy(self) -> bool:
        """Feature flag `enableRetryPolicy` (Helm default false): without it OSM ignores every Retry."""
        return bool(self._spec("featureFlags", "enableRetryPolicy"))

    @property
    def tls_max_version(self) -> str:
        return self._spec("sidecar", "tlsMaxProtocolVersion") or "TLSv1_3"

    @property
    def ingress_gateway_names(self) -> list[str]:
        """MeshConfig `certificate.ingressGateway.subjectAltNames`: the names on the client certificate OSM issues
        for the ingress controller (its secret is what nginx presents to backends over mTLS)."""
        return list(self._spec("certificate", "ingressGateway", "subjectAltNames") or [])

    @property
    def ingress_gateway_secret(self) -> str:
        """`<ns>/<name>` of the Secret that client certificate is written to (what nginx's proxy-ssl-secret names)."""
        secret = self._spec("certificate", "ingressGateway", "secret") or {}
        return f"{secret.get('namespace', '')}/{secret.get('name', '')}" if secret else ""

    # ---- OSM's policy API (policy.openservicemesh.io/v1alpha1), as osm v1.2.4's catalog reads it ----------------
    def upstream_setting_for(self, ms: MeshService) -> dict | None:
        """The UpstreamTrafficSetting for `ms`: in its namespace, `spec.host` its FQDN (the first by name; OSM's
        webhook refuses a second one on the same host)."""
        for _key, obj in sorted(self.upstream_traffic_settings.items()):
            if obj["metadata"].get("namespace") == ms.namespace and (obj.get("spec") or {}).get("host") == ms.fqdn:
                return obj
        return None

    def upstream_setting_named(self, namespace: str, name: str) -> dict | None:
        return self.upstream_traffic_settings.get(f"{namespace}/{name}")

    def retry_for(self, source: Workload, ms: MeshService) -> dict | None:
        """The `retryPolicy` of the first Retry whose source is this workload's service account and whose
        destinations name `ms` (kind Service); none while `enableRetryPolicy` is off (OSM's `getRetryPolicy`)."""
        if not self.retry_policy:
            return None
        for _key, obj in sorted(self.retries.items()):
            spec = obj.get("spec") or {}
            src = spec.get("source") or {}
            if (src.get("kind"), src.get("name"), src.get("namespace")) != (
                "ServiceAccount",
                source.service_account,
                source.namespace,
            ):
                continue
            for dest in spec.get("destinations") or []:
                if (dest.get("kind"), dest.get("name"), dest.get("namespace")) == ("Service", ms.name, ms.namespace):
                    return spec.get("retryPolicy") or {}
        return None

    def egresses_for(self, source: Workload) -> list[dict]:
        """The Egress policies listing this workload's service account as a source; none while
        `enableEgressPolicy` is off (OSM's `GetEgressTrafficPolicy`)."""
        if not self.egress_policy:
            return []
        out = []
        for _key, obj in sorted(self.egresses.items()):
            for src in (obj.get("spec") or {}).get("sources") or []:
                if (src.get("kind"), src.get("name"), src.get("namespace")) == (
                    "ServiceAccount",
                    source.service_account,
                    source.namespace,
                ):
                    out.append(obj)
                    break
        return out

    def ingress_backend_for(self, ms: MeshService) -> dict | None:
        """The first IngressBackend in `ms`'s namespace with a backend of its name and target port."""
        for _key, obj in sorted(self.ingress_backends.items()):
            if obj["metadata"].get("namespace") != ms.namespace:
                continue
            for backend in (obj.get("spec") or {}).get("backends") or []:
                if (
                    backend.get("name") == ms.name
                    and int((backend.get("port") or {}).get("number", 0)) == ms.target_port
                ):
                    return obj
        return None

    def ingress_policy(self, ms: MeshService, endpoints: dict[str, list[str]]) -> IngressPolicy | None:
        """OSM v1.2.4's `GetIngressTrafficPolicy` for `ms` (pkg/catalog/ingress.go): a traffic match per backend of
        the IngressBackend that names it (Service sources give their endpoints' IPs as /32 ranges, IPRange sources
        their CIDR; an HTTP backend admits any principal, an HTTPS one the AuthenticatedPrincipal sources, or anyone
        when client certificates are not validated) and a wildcard route to its local cluster per backend. None when
        no IngressBackend names it, or when a Service source has no endpoints (OSM logs an error and builds none)."""
        ib = self.ingress_backend_for(ms)
        if ib is None:
            return None
        spec = ib.get("spec") or {}
        matches, rules = [], []
        for backend in spec.get("backends") or []:
            port = backend.get("port") or {}
            if backend.get("name") != ms.name or int(port.get("number", 0)) != ms.target_port:
                continue
            protocol = str(port.get("protocol") or "http")
            tls = backend.get("tls") or {}
            skip = bool(tls.get("skipClientCertValidation"))
            ranges: list[str] = []
            principals: set[str] = set()
            for source in spec.get("sources") or []:
                kind = source.get("kind")
                if kind == "Service":
                    ips = endpoints.get(f"{source.get('namespace') or ''}/{source.get('name')}") or []
                    if not ips:
                        return None
                    ranges += [f"{ip}/32" for ip in ips if f"{ip}/32" not in ranges]
                elif kind == "IPRange":
                    ranges.append(str(source.get("name")))
                elif kind == "AuthenticatedPrincipal":
                    principals.add(WILDCARD_PRINCIPAL if skip else str(source.get("name")))
            if protocol.lower() == "http":
                principals.add(WILDCARD_PRINCIPAL)
            matches.append(
                IngressMatch(
                    name=f"ingress_{ms.namespace}/{ms.name}_{ms.target_port}_{protocol}",
                    port=ms.target_port,
                    protocol=protocol,
                    server_names=tuple(tls.get("sniHosts") or ()),
                    skip_client_cert_validation=skip,
                    source_ranges=tuple(ranges),
                )
            )
            rules.append(IngressRule(ms.local_cluster, frozenset(principals)))
        if not matches:
            return None
        return IngressPolicy(f"{ms.key}_from_{ib['metadata']['name']}", matches, rules, ms.key)

    def split_for(self, ms: MeshService) -> list[tuple[str, int]] | None:
        """The backends `(service, weight)` of the TrafficSplit whose root is this service, if any."""
        names = {ms.name, f"{ms.name}.{ms.namespace}", f"{ms.name}.{ms.namespace}.svc.cluster.local"}
        for obj in sorted(self.splits.values(), key=lambda o: o["metadata"]["name"]):
            spec = obj.get("spec") or {}
            if obj["metadata"].get("namespace") == ms.namespace and spec.get("service") in names:
                return [(b["service"], int(b.get("weight", 0))) for b in spec.get("backends") or []]
        return None

    def inbound_rules(self, namespace: str, service_account: str) -> list[InboundRule]:
        """TrafficTargets whose destination is this identity, resolved against their route objects."""
        rules = []
        for key, obj in sorted(self.targets.items()):
            spec = obj.get("spec") or {}
            dest = spec.get("destination") or {}
            tt_ns = obj["metadata"].get("namespace")
            if dest.get("name") != service_account or (dest.get("namespace") or tt_ns) != namespace:
                continue
            sources = tuple(sorted(identity(s["name"], s.get("namespace") or tt_ns) for s in spec.get("sources") or []))
            http: list[HttpMatch] = []
            ports: list[int] = []
            any_http = tcp = False
            for rule in spec.get("rules") or []:
                if rule.get("kind") == "TCPRoute":
                    route = self.tcp_routes.get(f"{tt_ns}/{rule.get('name')}")
                    if route is not None:
                        tcp = True
                        ports += ((route.get("spec") or {}).get("matches") or {}).get("ports") or []
                elif rule.get("kind") == "HTTPRouteGroup":
                    group = self.http_route_groups.get(f"{tt_ns}/{rule.get('name')}")
                    if group is None:
                        continue
                    wanted = rule.get("matches")
                    for m in (group.get("spec") or {}).get("matches") or []:
                        if wanted and m.get("name") not in wanted:
                            continue
                        http.append(http_match(m))
                    any_http = any_http or not (group.get("spec") or {}).get("matches")
            tcp_ports = tuple(sorted({int(p) for p in ports}))
            rules.append(InboundRule(sources, None if any_http else tuple(http), tcp, key, tcp_ports))
        return rules

    def allows_outbound(self, source: Workload, dest: Workload) -> bool:
        """OSM's `ListOutboundServicesForIdentity`: in permissive mode every meshed service; in SMI mode the services
        of every identity a TrafficTarget lists `source` as a source of (whatever its routes say)."""
        if self.permissive:
            return True
        return any(source.identity in rule.sources for rule in self.inbound_rules(dest.namespace, dest.service_account))


def http_match(m: dict) -> HttpMatch:
    headers = m.get("headers") or {}
    # the demo writes a list of one-key maps; the spec, a map
    pairs = [(k, v) for h in headers for k, v in h.items()] if isinstance(headers, list) else list(headers.items())
    methods = tuple(x for x in m.get("methods") or [] if x != "*")
    return HttpMatch(m.get("pathRegex") or None, methods, tuple((k.lower(), str(v)) for k, v in pairs))
