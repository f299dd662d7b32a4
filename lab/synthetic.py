"""One seeded, deterministic model of a synthetic OSM mesh, for the stand-in's objects and (later) Prometheus series.

`generate(services, random_seed)` returns plain dataclasses: namespaces, nodes, services with ports, workloads, pods
(which are meshed, which are not ready), TrafficSplits, TrafficTargets and the call graph (`Edge`: who calls whom, at
what rate, with what error ratio and latency). `lab.seeds.synthetic` turns it into Kubernetes objects; the metrics
side must read the same model so that pod, workload and Envoy cluster names line up (`envoy_cluster_name`).

Shape for N services (counting every Service object): about 10% are TrafficSplit roots, each with two backend
Services (`<root>-v1`, `<root>-v2`) and a Deployment per version; the rest are plain services with one Deployment
(HTTP, 4-7 replicas) or, for about 5%, a StatefulSet behind a headless Service (TCP). Namespaces hold about 50
services each; one namespace is not monitored by the mesh, one is meshed without metrics, about 3% of meshed
workloads opt out of injection, about 1% of pods are crash-looping. Each namespace also has a `loadgen` Deployment
with no Service, a pure client. The mesh runs in SMI mode; about 5% of edges have no TrafficTarget (denied).

Traffic parameters: each Service has how its pods answer (`error_ratio`, `latency`); each Edge has `rps` and what the
caller sees (`error_ratio`, `latency`), the destination's plus a little network. For an edge to a split root, use
`SyntheticMesh.backend_shares(edge)`: the traffic goes to the backends by weight, each with its own profile.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from lab.seeds import cluster, naming

MESH_NAME = "osm"
HTTP_PORT = 8080
TCP_PORT = 5432

# Strings a dashboard must render as text. Annotation values may hold anything; label values only [-_.A-Za-z0-9]
# (at most 63, alphanumeric at both ends), so the label side gets the legal-but-awkward cases.
HOSTILE_ANNOTATIONS = {
    "meshboard.lab/description": '<script>alert("owned")</script> & \'quoted\' "double" </textarea>',
    "meshboard.lab/owner": "Zoë <ops@example.com>; DROP TABLE services;--",
    "meshboard.lab/html": '<img src=x onerror="alert(1)">{{ 7*7 }}${7*7}',
    "meshboard.lab/multiline": "line one\nline two\t\u202etxt.exe",
}
HOSTILE_LABELS = {
    "meshboard.lab/empty": "",
    "meshboard.lab/dots": "a.b_c-d.script",
    "meshboard.lab/long": "x" * 61 + "-y",
}

_NAMESPACE_WORDS = (
    "payments", "catalog", "checkout", "identity", "search", "shipping", "inventory", "reviews", "ads", "analytics",
    "notifications", "billing", "media", "gateway", "pricing", "orders", "accounts", "recommend", "fraud", "support",
    "loyalty", "returns", "tax", "invoices", "partners", "wishlist", "coupons", "ratings", "delivery", "warehouse",
    "promotions", "sessions", "profiles", "content", "experiments", "telemetry", "audit", "compliance", "geo", "chat",
)  # fmt: skip
_SERVICE_HEADS = (
    "cart", "ledger", "quote", "stock", "price", "label", "route", "token", "user", "order", "item", "offer", "image",
    "email", "sms", "push", "rank", "score", "feed", "index", "match", "claim", "refund", "audit", "rate", "slot",
    "zone", "fleet", "parcel", "report",
)  # fmt: skip
_SERVICE_TAILS = (
    "api",
    "svc",
    "worker",
    "reader",
    "writer",
    "cache",
    "proxy",
    "engine",
    "store",
    "sync",
    "router",
    "gateway",
    "batcher",
    "indexer",
    "notifier",
    "resolver",
    "tracker",
    "scheduler",
    "checker",
    "view",
)
_DB_NAMES = ("postgres", "mysql", "redis", "mongo", "cassandra", "etcd")
_WEIGHTS = ((100, 0), (95, 5), (90, 10), (80, 20), (50, 50), (0, 100))


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Namespace:
    name: str
    monitored: bool  # label openservicemesh.io/monitored-by=<mesh>
    injection: bool  # annotation openservicemesh.io/sidecar-injection: enabled
    metrics: bool  # annotation openservicemesh.io/metrics: enabled
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    pod_cidr: str
    zone: str


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int
    protocol: str  # "http" or "tcp": the appProtocol OSM reads


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    app: str
    selector: dict[str, str]
    ports: tuple[ServicePort, ...]
    role: str  # "plain", "root" (of a TrafficSplit) or "backend" (of one)
    headless: bool
    error_ratio: float  # share of requests its pods answer with 5xx
    latency: Latency  # how long its pods take
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    kind: str  # "Deployment" or "StatefulSet"
    app: str
    version: str
    service_account: str
    replicas: int
    image: str
    protocol: str  # "http", "tcp", or "none" for a pure client
    injection: bool | None  # pod-template annotation overriding the namespace; None: no annotation
    service: str | None  # the headless Service of a StatefulSet (spec.serviceName)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    workload_kind: str
    workload: str
    node: str
    ip: str
    ready: bool
    meshed: bool  # carries the OSM sidecar
    proxy_uuid: str | None  # label osm-proxy-uuid when meshed


@dataclass(frozen=True)
class Backend:
    service: str
    weight: int


@dataclass(frozen=True)
class TrafficSplit:
    namespace: str
    name: str
    root_service: str
    backends: tuple[Backend, ...]


@dataclass(frozen=True)
class TrafficTarget:
    namespace: str
    name: str
    destination_sa: str
    sources: tuple[tuple[str, str], ...]  # (namespace, service account)
    route_kind: str  # "HTTPRouteGroup" or "TCPRoute"
    route_name: str
    port: int  # the TCPRoute port; unused for HTTP


@dataclass(frozen=True)
class Edge:
    source_namespace: str
    source_workload: str
    source_app: str
    source_service_account: str
    destination_namespace: str
    destination_service: str
    port: int
    protocol: str
    rps: float
    error_ratio: float
    latency: Latency
    allowed: bool  # a TrafficTarget lets the source's service account reach the destination


@dataclass(frozen=True)
class SyntheticMesh:
    random_seed: int
    mesh_name: str
    permissive: bool
    namespaces: tuple[Namespace, ...]
    nodes: tuple[Node, ...]
    services: tuple[Service, ...]
    workloads: tuple[Workload, ...]
    pods: tuple[Pod, ...]
    splits: tuple[TrafficSplit, ...]
    targets: tuple[TrafficTarget, ...]
    edges: tuple[Edge, ...]

    def service(self, namespace: str, name: str) -> Service:
        return self._services()[(namespace, name)]

    def _services(self) -> dict[tuple[str, str], Service]:
        cache = self.__dict__.get("_service_index")
        if cache is None:
            cache = {(s.namespace, s.name): s for s in self.services}
            object.__setattr__(self, "_service_index", cache)
        return cache

    def split_for(self, namespace: str, service: str) -> TrafficSplit | None:
        return next((s for s in self.splits if s.namespace == namespace and s.root_service == service), None)

    def backend_shares(self, edge: Edge) -> list[tuple[Service, float]]:
        """Where an edge's requests land: the destination itself, or a split root's backends by weight."""
        split = self.split_for(edge.destination_namespace, edge.destination_service)
        if split is None:
            return [(self.service(edge.destination_namespace, edge.destination_service), 1.0)]
        total = sum(b.weight for b in split.backends)
        return [(self.service(split.namespace, b.service), b.weight / total) for b in split.backends if b.weight]

    @staticmethod
    def envoy_cluster_name(service: Service, port: ServicePort) -> str:
        """OSM 1.x outbound cluster name, `<namespace>/<service>|<targetPort>` (osm.md §4.3)."""
        return f"{service.namespace}/{service.name}|{port.target_port}"


def _latency(rng: random.Random) -> Latency:
    p50 = round(10 ** rng.uniform(0.3, 1.8), 2)
    p95 = round(p50 * rng.uniform(2, 4), 2)
    return Latency(p50, p95, round(p95 * rng.uniform(1.3, 2.5), 2))


def _error_ratio(rng: random.Random, canary: bool = False) -> float:
    roll = rng.random()
    if canary and roll < 0.3:
        return round(rng.uniform(0.02, 0.2), 4)
    if roll < 0.85:
        return round(rng.uniform(0, 0.005), 5)
    if roll < 0.97:
        return round(rng.uniform(0.005, 0.03), 4)
    return round(rng.uniform(0.05, 0.25), 4)


def _namespace_names(count: int) -> list[str]:
    return [
        _NAMESPACE_WORDS[i % len(_NAMESPACE_WORDS)]
        + (f"-{i // len(_NAMESPACE_WORDS) + 1}" if i >= len(_NAMESPACE_WORDS) else "")
        for i in range(count)
    ]


def _service_name(index: int) -> str:
    head = _SERVICE_HEADS[index % len(_SERVICE_HEADS)]
    tail = _SERVICE_TAILS[(index // len(_SERVICE_HEADS)) % len(_SERVICE_TAILS)]
    lap = index // (len(_SERVICE_HEADS) * len(_SERVICE_TAILS))
    return f"{head}-{tail}" + (f"-{lap + 1}" if lap else "")


class _Builder:
    def __init__(self, services: int, random_seed: int) -> None:
        self.rng = random.Random(random_seed)
        self.seed = random_seed
        self.total = services
        self.namespaces: list[Namespace] = []
        self.services: list[Service] = []
        self.workloads: list[Workload] = []
        self.splits: list[TrafficSplit] = []

    def build_namespaces(self) -> None:
        meshed = max(2, min(len(_NAMESPACE_WORDS) * 3, math.ceil(self.total / 50)))
        for i, name in enumerate(_namespace_names(meshed)):
            self.namespaces.append(
                Namespace(
                    name=name,
                    monitored=True,
                    injection=True,
                    metrics=i != meshed - 1,  # one meshed namespace without `osm metrics enable`
                    labels={"team": name, **(HOSTILE_LABELS if i == 0 else {})},
                    annotations=dict(HOSTILE_ANNOTATIONS) if i == 0 else {},
                )
            )
        self.namespaces.append(
            Namespace(name="legacy", monitored=False, injection=False, metrics=False, labels={"team": "legacy"})
        )

    def _profile(self, canary: bool = False) -> tuple[float, Latency]:
        return _error_ratio(self.rng, canary), _latency(self.rng)

    def _deployment(
        self, ns: Namespace, name: str, app: str, version: str, sa: str, protocol: str, replicas: int, hostile: bool
    ) -> None:
        opt_out = ns.monitored and protocol != "none" and self.rng.random() < 0.03
        self.workloads.append(
            Workload(
                namespace=ns.name,
                name=name,
                kind="Deployment",
                app=app,
                version=version,
                service_account=sa,
                replicas=replicas,
                image=f"registry.example.com/{ns.name}/{app}:{version}.{self.rng.randint(0, 40)}",
                protocol=protocol,
                injection=False if opt_out else None,
                service=None,
                labels=dict(HOSTILE_LABELS) if hostile else {},
                annotations=dict(HOSTILE_ANNOTATIONS) if hostile else {},
            )
        )

    def build_services(self) -> None:
        roots = max(1, round(self.total * 0.10)) if self.total >= 3 else 0
        plain = self.total - 3 * roots
        meshed = [n for n in self.namespaces if n.monitored]
        legacy = self.namespaces[-1]
        # Plain services first, spread round-robin; legacy takes about 3% of them.
        per_ns_index: dict[str, int] = {}
        slots: list[tuple[Namespace, str]] = []
        for i in range(plain + roots):
            is_root = i >= plain
            ns = legacy if (not is_root and self.rng.random() < 0.03) else meshed[i % len(meshed)]
            idx = per_ns_index.get(ns.name, 0)
            per_ns_index[ns.name] = idx + 1
            slots.append((ns, "root" if is_root else "plain"))
            hostile = idx % 50 == 7
            name = _service_name(idx)
            if slots[-1][1] == "plain":
                self._plain(ns, name, hostile)
            else:
                self._root(ns, name, hostile)

    def _plain(self, ns: Namespace, name: str, hostile: bool) -> None:
        err, lat = self._profile()
        extra = {"labels": dict(HOSTILE_LABELS), "annotations": dict(HOSTILE_ANNOTATIONS)} if hostile else {}
        if self.rng.random() < 0.05:  # a database: StatefulSet behind a headless Service
            db = _DB_NAMES[self.rng.randrange(len(_DB_NAMES))]
            name = f"{name}-{db}"
            port = ServicePort("tcp-db", TCP_PORT, TCP_PORT, "tcp")
            self.services.append(Service(ns.name, name, name, {"app": name}, (port,), "plain", True, err, lat, **extra))
            self.workloads.append(
                Workload(
                    namespace=ns.name,
                    name=name,
                    kind="StatefulSet",
                    app=name,
                    version="v1",
                    service_account=name,
                    replicas=3,
                    image=f"docker.io/library/{db}:latest",
                    protocol="tcp",
                    injection=None,
                    service=name,
                )
            )
            return
        port = ServicePort("http", HTTP_PORT, HTTP_PORT, "http")
        self.services.append(Service(ns.name, name, name, {"app": name}, (port,), "plain", False, err, lat, **extra))
        self._deployment(ns, name, name, "v1", name, "http", self.rng.randint(4, 7), hostile)

    def _root(self, ns: Namespace, name: str, hostile: bool) -> None:
        port = ServicePort("http", HTTP_PORT, HTTP_PORT, "http")
        err, lat = self._profile()
        self.services.append(Service(ns.name, name, name, {"app": name}, (port,), "root", False, err, lat))
        for version, sa, canary in (("v1", name, False), ("v2", f"{name}-v2", True)):
            b_err, b_lat = (err, lat) if not canary else self._profile(canary=True)
            backend = f"{name}-{version}"
            self.services.append(
                Service(
                    ns.name,
                    backend,
                    name,
                    {"app": name, "version": version},
                    (port,),
                    "backend",
                    False,
                    b_err,
                    b_lat,
                    labels={"version": version},
                )
            )
            self._deployment(ns, backend, name, version, sa, "http", self.rng.randint(4, 7), hostile)
        w1, w2 = _WEIGHTS[self.rng.randrange(len(_WEIGHTS))]
        self.splits.append(
            TrafficSplit(ns.name, f"{name}-split", name, (Backend(f"{name}-v1", w1), Backend(f"{name}-v2", w2)))
        )

    def build_clients(self) -> None:
        for ns in self.namespaces:
            self._deployment(ns, "loadgen", "loadgen", "v1", "loadgen", "none", 2, False)


def _place(builder: _Builder) -> tuple[list[Node], list[Pod]]:
    replicas = sum(w.replicas for w in builder.workloads)
    count = max(2, math.ceil(replicas / 100))
    nodes = [
        Node(cluster.node_name(i), cluster.node_ip(i), naming.node_pod_cidr(i), cluster.node_zone(i))
        for i in range(count)
    ]
    used = [0] * count
    ns_by_name = {n.name: n for n in builder.namespaces}
    pods: list[Pod] = []
    turn = 0
    for w in builder.workloads:
        ns = ns_by_name[w.namespace]
        inject = w.injection if w.injection is not None else ns.injection
        meshed = ns.monitored and inject
        for i in range(w.replicas):
            if w.kind == "Deployment":
                name = naming.deployment_pod_name(builder.seed, w.namespace, w.name, i)
            else:
                name = naming.statefulset_pod_name(w.name, i)
            k = turn % count
            turn += 1
            used[k] += 1
            pods.append(
                Pod(
                    namespace=w.namespace,
                    name=name,
                    workload_kind=w.kind,
                    workload=w.name,
                    node=nodes[k].name,
                    ip=naming.nth_host(nodes[k].pod_cidr, used[k] + 3),
                    ready=builder.rng.random() >= 0.01,
                    meshed=meshed,
                    proxy_uuid=naming.proxy_uuid(builder.seed, w.namespace, name) if meshed else None,
                )
            )
    return nodes, pods


def _edges(builder: _Builder) -> list[Edge]:
    rng = builder.rng
    ns_by_name = {n.name: n for n in builder.namespaces}
    entry = [s for s in builder.services if s.role != "backend"]
    by_ns: dict[str, list[Service]] = {}
    for s in entry:
        by_ns.setdefault(s.namespace, []).append(s)
    meshed_entry = [s for s in entry if ns_by_name[s.namespace].monitored]
    edges: list[Edge] = []
    for w in builder.workloads:
        if w.protocol == "tcp":
            continue  # databases do not call out
        local = [s for s in by_ns.get(w.namespace, []) if s.app != w.app]
        calls = 3 if w.protocol == "none" else rng.randint(1, 3)
        chosen: dict[tuple[str, str], Service] = {}
        for _ in range(calls):
            pool = local if (rng.random() < 0.8 or not ns_by_name[w.namespace].monitored) else meshed_entry
            pool = [s for s in pool if s.app != w.app]
            if not pool:
                continue
            dest = pool[rng.randrange(len(pool))]
            chosen[(dest.namespace, dest.name)] = dest
        for dest in chosen.values():
            port = dest.ports[0]
            extra_err = rng.uniform(0.01, 0.1) if rng.random() < 0.02 else 0.0
            net = rng.uniform(0.3, 1.5)
            lat = Latency(
                round(dest.latency.p50_ms + net, 2),
                round(dest.latency.p95_ms + net * 2, 2),
                round(dest.latency.p99_ms + net * 4, 2),
            )
            edges.append(
                Edge(
                    source_namespace=w.namespace,
                    source_workload=w.name,
                    source_app=w.app,
                    source_service_account=w.service_account,
                    destination_namespace=dest.namespace,
                    destination_service=dest.name,
                    port=port.port,
                    protocol=port.protocol,
                    rps=round(10 ** rng.uniform(-0.5, 2.3), 3),
                    error_ratio=round(min(1.0, dest.error_ratio + extra_err), 5),
                    latency=lat,
                    allowed=not ns_by_name[dest.namespace].monitored or rng.random() >= 0.05,
                )
            )
    return edges


def _targets(builder: _Builder, edges: list[Edge]) -> list[TrafficTarget]:
    """One TrafficTarget per destination service account in the mesh, listing the callers the policy allows."""
    ns_by_name = {n.name: n for n in builder.namespaces}
    workloads_of: dict[tuple[str, str], list[Workload]] = {}
    for w in builder.workloads:
        workloads_of.setdefault((w.namespace, w.app), []).append(w)
    services = {(s.namespace, s.name): s for s in builder.services}
    sources: dict[tuple[str, str], set[tuple[str, str]]] = {}
    meta: dict[tuple[str, str], tuple[str, str, int]] = {}
    for e in edges:
        if not e.allowed or not ns_by_name[e.destination_namespace].monitored:
            continue
        dest = services[(e.destination_namespace, e.destination_service)]
        for w in workloads_of[(dest.namespace, dest.app)]:
            key = (dest.namespace, w.service_account)
            sources.setdefault(key, set()).add((e.source_namespace, e.source_service_account))
            kind = "TCPRoute" if dest.ports[0].protocol == "tcp" else "HTTPRouteGroup"
            meta[key] = (kind, f"{dest.app}-routes" if kind == "HTTPRouteGroup" else dest.app, dest.ports[0].port)
    return [
        TrafficTarget(
            namespace=ns,
            name=sa,
            destination_sa=sa,
            sources=tuple(sorted(sources[(ns, sa)])),
            route_kind=meta[(ns, sa)][0],
            route_name=meta[(ns, sa)][1],
            port=meta[(ns, sa)][2],
        )
        for ns, sa in sorted(sources)
    ]


def generate(services: int = 1000, random_seed: int = 7) -> SyntheticMesh:
    """The synthetic mesh for `services` Service objects; the same arguments always give the same model."""
    builder = _Builder(services, random_seed)
    builder.build_namespaces()
    builder.build_services()
    builder.build_clients()
    nodes, pods = _place(builder)
    edges = _edges(builder)
    return SyntheticMesh(
        random_seed=random_seed,
        mesh_name=MESH_NAME,
        permissive=False,
        namespaces=tuple(builder.namespaces),
        nodes=tuple(nodes),
        services=tuple(builder.services),
        workloads=tuple(builder.workloads),
        pods=tuple(pods),
        splits=tuple(builder.splits),
        targets=tuple(_targets(builder, edges)),
        edges=tuple(edges),
    )
