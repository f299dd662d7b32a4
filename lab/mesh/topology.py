"""What the lab builds, read from the stand-in through the official `kubernetes` client.

`read_workloads` turns the meshed pods (label `osm-proxy-uuid`) and their Services into `Workload`s, each with the
OSM `MeshService`s it backs. A headless Service gives one MeshService per pod, named `<hostname>.<service>` as OSM
does, so the mysql StatefulSet's cluster is `bookwarehouse/mysql-0.mysql|3306`. `Policy` holds the SMI objects and the
MeshConfig the controller watches, and answers the two questions a sidecar's config needs: may this identity call that
service (outbound), and which identities and routes does this service admit (inbound).
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
    def sni(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def stat_name(self) -> str:
        """`<ns>_<svc>_<port>` with dots made underscores, for listener and connection-manager stat prefixes."""
        return f"{self.namespace}_{self.name}_{self.port}".replace(".", "_").replace("/", "_")


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
    """Who may call a destination identity, and on which HTTP routes (None: any route; TCP has no routes)."""

    sources: tuple[str, ...]
    http_matches: tuple[HttpMatch, ...] | None
    tcp: bool


@dataclass
class Policy:
    """The SMI objects and MeshConfig, as dicts keyed by `<ns>/<name>`."""

    splits: dict[str, dict] = field(default_factory=dict)
    targets: dict[str, dict] = field(default_factory=dict)
    http_route_groups: dict[str, dict] = field(default_factory=dict)
    tcp_routes: dict[str, dict] = field(default_factory=dict)
    mesh_configs: dict[str, dict] = field(default_factory=dict)

    @property
    def permissive(self) -> bool:
        for mc in self.mesh_configs.values():
            traffic = (mc.get("spec") or {}).get("traffic") or {}
            return bool(traffic.get("enablePermissiveTrafficPolicyMode", False))
        return False

    @property
    def tls_max_version(self) -> str:
        for mc in self.mesh_configs.values():
            return ((mc.get("spec") or {}).get("sidecar") or {}).get("tlsMaxProtocolVersion") or "TLSv1_3"
        return "TLSv1_3"

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
        for obj in self.targets.values():
            spec = obj.get("spec") or {}
            dest = spec.get("destination") or {}
            tt_ns = obj["metadata"].get("namespace")
            if dest.get("name") != service_account or (dest.get("namespace") or tt_ns) != namespace:
                continue
            sources = tuple(sorted(identity(s["name"], s.get("namespace") or tt_ns) for s in spec.get("sources") or []))
            http: list[HttpMatch] = []
            any_http = tcp = False
            for rule in spec.get("rules") or []:
                if rule.get("kind") == "TCPRoute":
                    tcp = tcp or f"{tt_ns}/{rule.get('name')}" in self.tcp_routes
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
            rules.append(InboundRule(sources, None if any_http else tuple(http), tcp))
        return rules

    def allows(self, source: Workload, dest: Workload, ms: MeshService) -> bool:
        """May `source` reach `ms` on `dest`? Permissive: any meshed identity; SMI: a TrafficTarget must say so."""
        if self.permissive:
            return True
        for rule in self.inbound_rules(dest.namespace, dest.service_account):
            if source.identity not in rule.sources:
                continue
            if (ms.protocol == "tcp" and rule.tcp) or (
                ms.protocol == "http" and (rule.http_matches is None or rule.http_matches)
            ):
                return True
        return False


def _http_match(m: dict) -> HttpMatch:
    headers = m.get("headers") or {}
    # the demo writes a list of one-key maps; the spec, a map
    pairs = [(k, v) for h in headers for k, v in h.items()] if isinstance(headers, list) else list(headers.items())
    methods = tuple(x for x in m.get("methods") or [] if x != "*")
    return HttpMatch(m.get("pathRegex") or None, methods, tuple((k.lower(), str(v)) for k, v in pairs))
