"""What the lab builds, read from the stand-in through the official `kubernetes` client.

`read_workloads` turns the meshed pods (label `osm-proxy-uuid`) and their Services into `Workload`s, each with the
OSM `MeshService`s it backs. A headless Service gives one MeshService per pod, named `<hostname>.<service>` as OSM
does, so the mysql StatefulSet's cluster is `bookwarehouse/mysql-0.mysql|3306`. `Policy` holds the SMI objects and the
MeshConfig the controller watches, and answers the two questions a sidecar's config needs, as OSM does: which services
may this identity call (outbound: those of the identities whose TrafficTargets list it), and which identities and
routes does this identity admit (inbound).
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


def read_workloads(api_client: Any) -> list[Workload]:
    """List pods and services with the official client and build the workloads."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    pods = api_client.sanitize_for_serialization(core.list_pod_for_all_namespaces(label_selector=MESHED_POD_LABEL))
    services = api_client.sanitize_for_serialization(core.list_service_for_all_namespaces())
    return build_workloads(pods["items"], services["items"])


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


@dataclass
class Policy:
    """The SMI objects and MeshConfig, as dicts keyed by `<ns>/<name>`."""

    splits: dict[str, dict] = field(default_factory=dict)
    targets: dict[str, dict] = field(default_factory=dict)
    http_route_groups: dict[str, dict] = field(default_factory=dict)
    tcp_routes: dict[str, dict] = field(default_factory=dict)
    mesh_configs: dict[str, dict] = field(default_factory=dict)

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
    def tls_max_version(self) -> str:
        return self._spec("sidecar", "tlsMaxProtocolVersion") or "TLSv1_3"

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
                        http.append(_http_match(m))
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


def _http_match(m: dict) -> HttpMatch:
    headers = m.get("headers") or {}
    # the demo writes a list of one-key maps; the spec, a map
    pairs = [(k, v) for h in headers for k, v in h.items()] if isinstance(headers, list) else list(headers.items())
    methods = tuple(x for x in m.get("methods") or [] if x != "*")
    return HttpMatch(m.get("pathRegex") or None, methods, tuple((k.lower(), str(v)) for k, v in pairs))
