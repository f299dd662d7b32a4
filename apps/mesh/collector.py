"""One collection cycle: read a cluster through the gateway, decode it into snapshot rows.

The plan of API calls does not grow with the mesh: /version, /apis, one list per kind, and one get of
default/kubernetes Endpoints; a list is one request, or one per page of PAGE_SIZE objects for the kinds listed in
pages (see PAGE_SIZE for which and why), so a kind costs ceil(objects / PAGE_SIZE) requests. In namespace-scoped mode
(a Cluster with watched namespaces, for a team whose identity has Roles in those namespaces only) it is /version,
/apis, then per watched namespace one get of the Namespace and one list per namespaced kind; cluster-scoped facts
(nodes, IngressClasses, other namespaces, the API server's Endpoints in `default`) are not read, and the run's
warnings say so. Custom resources (SMI, OSM's policy API, Flagger) and Ingresses are listed only when discovery says
their group and version are served, so a cluster without SMI costs no 404s and is reported plainly;
MeshRootCertificates, whose group OSM 1.1 serves without them, are listed whenever their group version is served, and
a 404 reads as none.
Discovery (/version, /apis) needs no grant: every authenticated identity may read it (the API server's
`system:discovery` and `system:public-info-viewer` ClusterRoles).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from apps.clusters.kube import KubeError, KubeGateway, NotFoundKubeError, PermanentKubeError, Resource
from apps.core.gc import gc_paused

from . import decode
from .decode import MalformedObject, Row

NAMESPACES = Resource("namespaces", "", "v1", "namespaces", namespaced=False)
NODES = Resource("nodes", "", "v1", "nodes", namespaced=False)
SERVICES = Resource("services", "", "v1", "services")
SERVICE_ACCOUNTS = Resource("serviceaccounts", "", "v1", "serviceaccounts")
PODS = Resource("pods", "", "v1", "pods")
DEPLOYMENTS = Resource("deployments", "apps", "v1", "deployments")
REPLICASETS = Resource("replicasets", "apps", "v1", "replicasets")
STATEFULSETS = Resource("statefulsets", "apps", "v1", "statefulsets")
DAEMONSETS = Resource("daemonsets", "apps", "v1", "daemonsets")
ENDPOINT_SLICES = Resource("endpointslices", "discovery.k8s.io", "v1", "endpointslices")
TRAFFIC_SPLITS = Resource("trafficsplits", "split.smi-spec.io", "v1alpha2", "trafficsplits")
TRAFFIC_TARGETS = Resource("traffictargets", "access.smi-spec.io", "v1alpha3", "traffictargets")
HTTP_ROUTE_GROUPS = Resource("httproutegroups", "specs.smi-spec.io", "v1alpha4", "httproutegroups")
TCP_ROUTES = Resource("tcproutes", "specs.smi-spec.io", "v1alpha4", "tcproutes")
CANARIES = Resource("canaries", "flagger.app", "v1beta1", "canaries")
METRIC_TEMPLATES = Resource("metrictemplates", "flagger.app", "v1beta1", "metrictemplates")
INGRESSES = Resource("ingresses", "networking.k8s.io", "v1", "ingresses")
INGRESS_CLASSES = Resource("ingressclasses", "networking.k8s.io", "v1", "ingressclasses", namespaced=False)
POLICY_GROUP = "policy.openservicemesh.io"
INGRESS_BACKENDS = Resource("ingressbackends", POLICY_GROUP, "v1alpha1", "ingressbackends")
EGRESSES = Resource("egresses", POLICY_GROUP, "v1alpha1", "egresses")
UPSTREAM_TRAFFIC_SETTINGS = Resource("upstreamtrafficsettings", POLICY_GROUP, "v1alpha1", "upstreamtrafficsettings")
RETRIES = Resource("retries", POLICY_GROUP, "v1alpha1", "retries")
MESHCONFIG_GROUP = "config.openservicemesh.io"
# OSM 1.2 only; OSM 1.1 serves config.openservicemesh.io/v1alpha2 too (its MeshConfig) but not this kind, so a 404 on
# its list says "not installed", not "failed".
MESH_ROOT_CERTIFICATES = Resource("meshrootcertificates", MESHCONFIG_GROUP, "v1alpha2", "meshrootcertificates")
MESHCONFIG_VERSIONS = ("v1alpha2", "v1alpha1")  # OSM 1.1+ serves v1alpha2; 1.0 only v1alpha1
# Istio's configuration kinds, each read at the newest version its group serves (v1 since Istio 1.22, v1beta1 before;
# the objects are the same, the API server converts). Listed only when discovery serves the group, and a 404 (a group
# served without that kind's CRD) reads as none, like the MeshRootCertificates.
ISTIO_NETWORKING, ISTIO_SECURITY = "networking.istio.io", "security.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1")
ISTIO_KINDS = (
    (ISTIO_NETWORKING, "virtualservices"),
    (ISTIO_NETWORKING, "destinationrules"),
    (ISTIO_NETWORKING, "serviceentries"),
    (ISTIO_NETWORKING, "gateways"),
    (ISTIO_SECURITY, "authorizationpolicies"),
    (ISTIO_SECURITY, "peerauthentications"),
)
# Where istiod runs: upstream's istio-system, the AKS add-on's aks-istio-system. Its chart labels it app=istiod and
# with its revision (`istio.io/rev`; the add-on's are asm-1-N, an unrevisioned install's "default").
ISTIO_NAMESPACES = ("istio-system", "aks-istio-system")
ISTIOD_LABEL = ("app", "istiod")
ISTIO_REVISION_LABEL = "istio.io/rev"

BUILTIN = (
    NAMESPACES,
    NODES,
    SERVICES,
    SERVICE_ACCOUNTS,
    PODS,
    DEPLOYMENTS,
    REPLICASETS,
    STATEFULSETS,
    DAEMONSETS,
    ENDPOINT_SLICES,
)
SMI = (TRAFFIC_SPLITS, TRAFFIC_TARGETS, HTTP_ROUTE_GROUPS, TCP_ROUTES)
# Kinds whose count follows the number of services or pods; paged until a collection has counted them.
GROWS_WITH_MESH = frozenset(
    {"services", "serviceaccounts", "pods", "deployments", "replicasets", "statefulsets", "endpointslices"}
    | {"trafficsplits", "traffictargets", "httproutegroups", "tcproutes"}
)
# Where the last collection's counts (snapshot table -> rows) say how many objects a kind had. The workload kinds share
# one table, so its count stands for each of them: an upper bound for StatefulSets, and a kind overestimated so costs
# a single page (from etcd rather than the cache), not more requests.
COUNTED_AS = {"deployments": "workloads", "replicasets": "workloads", "statefulsets": "workloads"}
# Kinds listed only when discovery says their group and version are served (Egress and IngressBackend since OSM 1.0,
# UpstreamTrafficSetting and Retry since 1.1; a cluster without networking.k8s.io/v1 predates Kubernetes 1.19).
OPTIONAL = (
    INGRESSES,
    INGRESS_CLASSES,
    INGRESS_BACKENDS,
    EGRESSES,
    UPSTREAM_TRAFFIC_SETTINGS,
    RETRIES,
    CANARIES,
    METRIC_TEMPLATES,
)
MESH_CONFIG_NAME = "osm-mesh-config"
FETCH_CONCURRENCY = 4

# How each kind is listed. A list with resourceVersion=0 is answered from the API server's watch cache: no etcd read,
# the cheapest list there is, but whole (the cache ignores `limit`), so the server serialises and we receive and decode
# the kind as one body, and it may be a moment old. A paged list (`limit` + `continue`) is one etcd range read per page,
# all at the revision of the first page: consistent, more work for etcd, but the server never holds more than a page
# and the collector decodes each page into rows as it arrives (`_page_decoder`), so only one page of raw JSON per list
# in flight is alive: that is what bounds the worker's memory at 5,000 services, and the decoding overlaps the wait for
# the next page. So a kind small at the last collection (at most PAGE_SIZE objects: namespaces, nodes, the MeshConfig,
# most CRDs) costs one cached request, and a kind that was larger, or that grows with the mesh and has no count yet
# (the first collection), is paged. Pages per kind are ceil(objects / PAGE_SIZE), at least one.
PAGE_SIZE = 500  # client-go's pager and kubectl's --chunk-size use 500 too
CONTROLLER_LABEL = ("app", "osm-controller")


@dataclass
class ClusterSnapshot:
    # Rows per snapshot table; a table missing here was not collected this run and keeps its previous rows.
    rows: dict[str, list[Row]] = field(default_factory=dict)
    state: Row = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    api_requests: int = 0
    # List requests per kind (one, or one per page) and the objects each kind had, for the next run's plan.
    list_requests: dict[str, int] = field(default_factory=dict)
    list_sizes: dict[str, int] = field(default_factory=dict)
    # Kinds that could not be listed at all (RBAC, ...): the run is partial, not failed.
    failed_kinds: list[str] = field(default_factory=list)
    # Something the user should know is missing: a kind not listed, an object skipped, SMI not installed.
    partial: bool = False

    @property
    def counts(self) -> dict[str, int]:
        return {key: len(rows) for key, rows in self.rows.items()}


@dataclass
class _Fetched:
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    version: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    meshconfig_version: str = ""
    smi_missing: bool = False
    # Kinds whose CRD the server does not serve: the cluster has none of them, so their tables are emptied.
    absent: list[str] = field(default_factory=list)
    apiserver_endpoints: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Namespace-scoped mode: the only namespaces read (empty: the whole cluster).
    namespaces: tuple[str, ...] = ()


def scope_warnings(namespaces: tuple[str, ...]) -> list[str]:
    """What a namespace-scoped collection cannot see, as sentences for the run's warnings (the Mesh page shows them)."""
    return [
        f"Namespace-scoped mode: Meshboard reads only the namespaces {', '.join(namespaces)}; services, pods and "
        "policies in any other namespace are not collected and not shown.",
        "Nodes are cluster-wide and are not read in namespace-scoped mode, so the checks that need them (AKS node "
        "labels, mesh pods on Windows nodes) do not run.",
        "IngressClasses are cluster-wide and are not read in namespace-scoped mode, so an Ingress's controller is "
        "known only by its class name.",
        "The API server's address (Endpoints default/kubernetes) is not read in namespace-scoped mode, so the check "
        "that the MeshConfig excludes it from sidecar interception does not run.",
    ]


def page_size_for(resource: Resource, sizes: Mapping[str, int], page_size: int = PAGE_SIZE) -> int:
    """0 (one request from the watch cache) or `page_size` (pages from etcd) for `resource`, given the counts of the
    last collection (`sizes`: snapshot table -> rows; empty before the first). Why: see PAGE_SIZE."""
    known = sizes.get(COUNTED_AS.get(resource.key, resource.key))
    if known is None:
        return page_size if resource.key in GROWS_WITH_MESH else 0
    return page_size if known > page_size else 0


def prune_item(item: dict[str, Any]) -> dict[str, Any]:
    """Drop what no reader of a kept raw object uses: each managedFields entry's `fieldsV1` (a third to a half of a
    real pod's JSON; the decoders read only manager, operation, time and subresource)."""
    meta = item.get("metadata")
    entries = meta.get("managedFields") if isinstance(meta, dict) else None
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict):
                entry.pop("fieldsV1", None)
    return item


@dataclass
class _Decoded:
    """One listed object, decoded as its page arrived (the raw JSON is dropped with its page): its row, or why it
    was skipped, and what the later steps need of the raw object (`extra`, per kind: see `_page_decoder`)."""

    row: Row | None
    warning: str = ""
    extra: Any = None


def _decode_one(kind: str, item: Any, fn: Callable[..., Row], *args: Any) -> _Decoded:
    try:
        return _Decoded(fn(item, *args))
    except (MalformedObject, AttributeError, TypeError, ValueError) as exc:
        where = "/".join(filter(None, _loose_key(item)))
        return _Decoded(None, f"skipped a malformed object in {kind} ({where or 'no name'}): {exc}")


def _page_decoder(kind: str) -> Callable[[list[dict[str, Any]]], list[Any]]:
    """What the collector keeps of one page of `kind`, made as the page arrives (by the decoding thread, while the
    API server serialises the next page): rows, and for the few readers of raw objects only what they read. The
    MeshConfig is kept raw (one object, read whole by `_mesh_state`)."""
    if kind in _DECODERS:
        fn = _DECODERS[kind]
        return lambda page: [_decode_one(kind, item, fn) for item in page]
    if kind in _WORKLOAD_KINDS:
        workload_kind = _WORKLOAD_KINDS[kind]

        def workloads(page: list[dict[str, Any]]) -> list[_Decoded]:
            out = []
            for item in page:
                decoded = _decode_one(kind, item, decode.workload_row, workload_kind)
                if kind == "replicasets" and _safe_key(item):  # whose Deployment it is, for its pods
                    decoded.extra = (decode.object_key(item), decode.controller_of(item))
                elif kind == "deployments" and (_is_controller(item) or _is_istiod(item)):  # read by _mesh_state
                    decoded.extra = prune_item(item)
                out.append(decoded)
            return out

        return workloads
    if kind == "pods":
        # Owners resolved to Deployments once every ReplicaSet is known (`_decode`).
        return lambda page: [_decode_one(kind, item, decode.pod_row, {}) for item in page]
    return lambda page: [prune_item(item) for item in page]


def _fetch(gateway: KubeGateway, namespaces: tuple[str, ...], sizes: Mapping[str, int], page_size: int) -> _Fetched:
    """Transient errors propagate (the whole run is retried); a permanent error on one kind only loses that kind."""
    out = _Fetched(namespaces=namespaces)
    out.version = gateway.version()
    out.groups = gateway.served_groups()

    if namespaces:
        wanted = [r for r in BUILTIN if r.namespaced]
        # Unknown, not kept from an earlier cluster-wide run.
        out.absent += [NODES.key, INGRESS_CLASSES.key]
        out.warnings += scope_warnings(namespaces)
    else:
        wanted = list(BUILTIN)
    smi_missing = [r for r in SMI if r.version not in out.groups.get(r.group, [])]
    # An Istio cluster has no SMI, and needs none: nothing is missing there.
    istio_served = any(group in out.groups for group in ISTIO_GROUPS)
    out.smi_missing = bool(smi_missing) and not (istio_served and len(smi_missing) == len(SMI))
    if len(smi_missing) == len(SMI) and istio_served:
        pass
    elif len(smi_missing) == len(SMI):
        out.warnings.append(
            "SMI CRDs are not installed (no split.smi-spec.io, access.smi-spec.io, specs.smi-spec.io): "
            "traffic splits and access policies cannot be shown"
        )
    else:
        for r in smi_missing:
            served = ", ".join(out.groups.get(r.group, [])) or "none"
            out.warnings.append(f"{r.plural}.{r.group} {r.version} is not served (served versions: {served})")
    wanted += [r for r in SMI if r not in smi_missing]
    out.absent += [r.key for r in smi_missing]
    for r in OPTIONAL:
        if r.version not in out.groups.get(r.group, []):
            out.absent.append(r.key)
        elif not (namespaces and not r.namespaced):
            wanted.append(r)
    served_mc = [v for v in MESHCONFIG_VERSIONS if v in out.groups.get(MESHCONFIG_GROUP, [])]
    if served_mc:
        out.meshconfig_version = served_mc[0]
        wanted.append(Resource("meshconfigs", MESHCONFIG_GROUP, served_mc[0], "meshconfigs"))
    elif not any(group in out.groups for group in ISTIO_GROUPS):
        out.warnings.append("MeshConfig CRD (config.openservicemesh.io) is not served: is OSM installed?")
    if MESH_ROOT_CERTIFICATES.version in out.groups.get(MESHCONFIG_GROUP, []):
        wanted.append(MESH_ROOT_CERTIFICATES)
    else:
        out.absent.append(MESH_ROOT_CERTIFICATES.key)
    istio, istio_absent = istio_resources(out.groups)
    wanted += istio
    out.absent += istio_absent

    # A few lists in flight at once, so the server's serialising of one overlaps our decoding of another; paged kinds
    # first, the longest chains of requests (pods) starting at once.
    scopes = namespaces or ("",)
    pages = {r: page_size_for(r, sizes, page_size) for r in wanted}
    wanted.sort(key=lambda r: (not pages[r], -sizes.get(COUNTED_AS.get(r.key, r.key), 0)))
    # Pages are decoded by one thread of their own as they arrive: a list's thread asks for its next page at once, so
    # decoding a page overlaps the server's serialising of the next (pods: ceil(pods / PAGE_SIZE) pages in a row).
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="kube-decode") as decoding,
        ThreadPoolExecutor(max_workers=FETCH_CONCURRENCY, thread_name_prefix="kube-list") as pool,
    ):
        # At most this many pages wait for the decoder, so a decoder slower than the server holds back the lists
        # instead of piling raw pages up.
        waiting = threading.BoundedSemaphore(2 * FETCH_CONCURRENCY)

        def pipelined(kind: str) -> Callable[[list[dict[str, Any]]], list[Future]]:
            decoder = _page_decoder(kind)

            def submit(page: list[dict[str, Any]]) -> list[Future]:
                waiting.acquire()
                future = decoding.submit(decoder, page)
                future.add_done_callback(lambda _: waiting.release())
                return [future]

            return submit

        futures = {
            r: [pool.submit(gateway.list, r, ns, page_size=pages[r], transform=pipelined(r.key)) for ns in scopes]
            for r in wanted
        }
        own = {ns: pool.submit(gateway.get_namespace, ns) for ns in namespaces}
    for resource, parts in futures.items():
        # A kind missing in one watched namespace is missing as a whole: its table keeps the previous rows rather
        # than losing that namespace's.
        items, reasons = _gather(
            parts, not_found_is_empty=resource is MESH_ROOT_CERTIFICATES or resource.group in ISTIO_GROUPS
        )
        if reasons:
            out.failed.append(resource.key)
            out.warnings += reasons
        else:
            out.lists[resource.key] = items
    if namespaces:
        _gather_namespaces(own, out)
        return out
    try:
        out.apiserver_endpoints = gateway.get_core_endpoints("default", "kubernetes")
    except KubeError as exc:
        if exc.transient:
            raise
        out.warnings.append(exc.reason)
    return out


ISTIO_GROUPS = frozenset(group for group, _plural in ISTIO_KINDS)


def istio_resources(groups: Mapping[str, list[str]]) -> tuple[list[Resource], list[str]]:
    """Istio's kinds to list, at the newest version their group serves, and the keys of those not installed."""
    wanted, absent = [], []
    for group, plural in ISTIO_KINDS:
        versions = [v for v in ISTIO_VERSIONS if v in groups.get(group, [])]
        if versions:
            wanted.append(Resource(plural, group, versions[0], plural))
        else:
            absent.append(plural)
    return wanted, absent


def _gather(parts: list[Future], *, not_found_is_empty: bool = False) -> tuple[list[Any], list[str]]:
    """The decoded items of every part (each part's pages, decoded), and the reasons of the parts that failed
    permanently (a transient error raises). With `not_found_is_empty`, a 404 (the server does not serve that kind)
    counts as no objects."""
    items: list[Any] = []
    reasons: list[str] = []
    for future in parts:
        try:
            items += [item for page in future.result() for item in page.result()]
        except KubeError as exc:
            if exc.transient:
                raise
            if not (not_found_is_empty and isinstance(exc, NotFoundKubeError)):
                reasons.append(exc.reason)
    return items, reasons


def _gather_namespaces(own: dict[str, Future], out: _Fetched) -> None:
    """The watched namespaces' own objects (their labels say which mesh monitors them and whether it injects)."""
    found, reasons = [], []
    for name, future in own.items():
        try:
            obj = future.result()
        except KubeError as exc:
            if exc.transient:
                raise
            reasons.append(exc.reason)
            continue
        if obj is None:
            out.warnings.append(f"The watched namespace {name} does not exist in the cluster.")
        else:
            found.append(obj)
    if reasons:
        out.failed.append(NAMESPACES.key)
        out.warnings += reasons
    else:
        out.lists[NAMESPACES.key] = _page_decoder(NAMESPACES.key)(found)


_DECODERS = {
    "namespaces": decode.namespace_row,
    "nodes": decode.node_row,
    "services": decode.service_row,
    "serviceaccounts": decode.service_account_row,
    "endpointslices": decode.endpoint_slice_row,
    "trafficsplits": decode.traffic_split_row,
    "traffictargets": decode.traffic_target_row,
    "httproutegroups": decode.http_route_group_row,
    "tcproutes": decode.tcp_route_row,
    "canaries": decode.canary_row,
    "metrictemplates": decode.metric_template_row,
    "ingresses": decode.ingress_row,
    "ingressclasses": decode.ingress_class_row,
    "ingressbackends": decode.ingress_backend_row,
    "egresses": decode.egress_row,
    "upstreamtrafficsettings": decode.upstream_traffic_setting_row,
    "retries": decode.retry_row,
    "meshrootcertificates": decode.mesh_root_certificate_row,
    **{plural: decode.istio_config_row for _group, plural in ISTIO_KINDS},
}


def _loose_key(item: Any) -> tuple[str, str]:
    meta = item.get("metadata") if isinstance(item, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    return (str(meta.get("namespace") or "")[:253], str(meta.get("name") or "")[:253])


def _decode(fetched: _Fetched, control_plane_namespace: str) -> ClusterSnapshot:
    """The snapshot from the lists, each already decoded page by page (`_page_decoder`): what is left is what needs
    several kinds (a pod's Deployment through its ReplicaSet, the bare ReplicaSets, pods per service, the mesh)."""
    snap = ClusterSnapshot(
        warnings=list(fetched.warnings),
        failed_kinds=list(fetched.failed),
        partial=bool(fetched.failed) or fetched.smi_missing,
    )
    lists = fetched.lists
    for kind in fetched.absent:
        snap.rows[kind] = []
    for kind in _DECODERS:
        if kind in lists:
            snap.rows[kind] = _rows(kind, lists, snap)

    if {"deployments", "replicasets", "statefulsets"} <= lists.keys():
        rs_rows = _rows("replicasets", lists, snap)
        owners = dict(d.extra for d in lists["replicasets"] if d.extra is not None)
        workloads = _rows("deployments", lists, snap)
        workloads += _rows("statefulsets", lists, snap)
        # Listed like the others; a cluster whose RBAC predates it (403) keeps the other kinds, with the warning.
        workloads += _rows("daemonsets", lists, snap)
        # A ReplicaSet under a Deployment is an implementation detail; a bare one is a workload of its own.
        workloads += [row for row in rs_rows if not owners.get((row["namespace"], row["name"]), ("", ""))[0]]
        snap.rows["workloads"] = workloads
        if "pods" in lists:
            snap.rows["pods"] = _owned_by_deployments(_rows("pods", lists, snap), owners)
    elif "pods" in lists:
        snap.rows["pods"] = _rows("pods", lists, snap)

    if "services" in snap.rows and "pods" in snap.rows:
        count_pods_per_service(snap.rows["services"], snap.rows["pods"])
    snap.state = _mesh_state(fetched, control_plane_namespace, snap)
    return snap


def _rows(kind: str, lists: dict[str, list[Any]], snap: ClusterSnapshot) -> list[Row]:
    """The rows of a decoded kind, and a warning for each object skipped (the run is then partial)."""
    rows = []
    for decoded in lists.get(kind, []):
        if decoded.row is not None:
            rows.append(decoded.row)
        else:
            snap.warnings.append(decoded.warning)
            snap.partial = True
    return rows


def _owned_by_deployments(pods: list[Row], owners: dict[tuple[str, str], tuple[str, str]]) -> list[Row]:
    """A pod of a ReplicaSet that a Deployment controls belongs to that Deployment (what `decode.pod_row` does
    when it is given the owners, done here because pods are decoded before every ReplicaSet is known)."""
    for row in pods:
        if row["workload_kind"] == "ReplicaSet":
            parent = owners.get((row["namespace"], row["workload_name"]))
            if parent and parent[0]:
                row["workload_kind"], row["workload_name"] = parent
    return pods


def count_pods_per_service(services: list[Row], pods: list[Row]) -> None:
    """Set pods_total/ready/meshed on each service row from the pods its selector picks.

    An index of (namespace, label, value) -> pods makes this one set intersection per selector term, instead of
    testing every pod of the namespace against every service.
    """
    index: dict[tuple[str, str, str], set[int]] = {}
    for i, pod in enumerate(pods):
        for key, value in pod["labels"].items():
            index.setdefault((pod["namespace"], key, value), set()).add(i)
    for service in services:
        selector = service["selector"]
        picked: set[int] = set()
        if selector:
            sets = sorted((index.get((service["namespace"], k, v), set()) for k, v in selector.items()), key=len)
            picked = set.intersection(*sets) if sets[0] else set()
        chosen = [pods[i] for i in picked]
        service["pods_total"] = len(chosen)
        service["pods_ready"] = sum(1 for p in chosen if p["ready"])
        service["pods_meshed"] = sum(1 for p in chosen if p["has_sidecar"])


_WORKLOAD_KINDS = {
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
}


def _is_controller(obj: Any) -> bool:
    """An OSM controller Deployment (labelled app=osm-controller), whose flags and labels say what the mesh is."""
    if not _safe_key(obj):
        return False
    return (obj.get("metadata", {}).get("labels") or {}).get(CONTROLLER_LABEL[0]) == CONTROLLER_LABEL[1]


def _is_istiod(obj: Any) -> bool:
    """An istiod Deployment (labelled app=istiod) in one of Istio's control-plane namespaces."""
    if not _safe_key(obj):
        return False
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    return meta.get("namespace") in ISTIO_NAMESPACES and labels.get(ISTIOD_LABEL[0]) == ISTIOD_LABEL[1]


def _istio_state(fetched: _Fetched) -> Row:
    """Istio's control plane from the istiod Deployments: revisions, namespace, version."""
    istiods = sorted(
        (d.extra for d in fetched.lists.get("deployments", []) if d.extra is not None and _is_istiod(d.extra)),
        key=lambda d: (d["metadata"]["namespace"], d["metadata"]["name"]),
    )
    revisions = sorted(
        {str((d["metadata"].get("labels") or {}).get(ISTIO_REVISION_LABEL) or "default")[:63] for d in istiods}
    )
    return {
        "istio_revisions": revisions,
        "istio_namespace": istiods[0]["metadata"]["namespace"] if istiods else "",
        "istio_version": decode.image_tag(istiods[0])[:64] if istiods else "",
    }


def _safe_key(obj: Any) -> bool:
    try:
        decode.object_key(obj)
    except (MalformedObject, AttributeError):
        return False
    return True


def _mesh_state(fetched: _Fetched, control_plane_namespace: str, snap: ClusterSnapshot) -> Row:
    version = fetched.version
    controllers = [
        d.extra
        for d in fetched.lists.get("deployments", [])
        if d.extra is not None
        and _is_controller(d.extra)
        and (not control_plane_namespace or d.extra["metadata"].get("namespace") == control_plane_namespace)
    ]
    controllers.sort(key=lambda d: (d["metadata"].get("namespace", ""), d["metadata"]["name"]))
    if len(controllers) > 1:
        where = ", ".join(f"{d['metadata'].get('namespace')}/{d['metadata']['name']}" for d in controllers)
        snap.warnings.append(f"several OSM controllers found ({where}); showing the first")
    controller = controllers[0] if controllers else None
    state: Row = {
        "kubernetes_version": str(version.get("gitVersion") or "")[:64],
        "kubernetes_platform": str(version.get("platform") or "")[:64],
        "meshconfig_api_version": f"{MESHCONFIG_GROUP}/{fetched.meshconfig_version}"
        if fetched.meshconfig_version
        else "",
        "served_groups": {
            g: v
            for g, v in fetched.groups.items()
            if g in {r.group for r in (*SMI, *OPTIONAL)} | {MESHCONFIG_GROUP} | ISTIO_GROUPS
        },
        "control_plane_namespace": control_plane_namespace,
        "mesh_name": "",
        "osm_version": "",
        "certificate_provider": "",
        "mesh_root_certificates_enabled": None,
        "meshconfig": {},
        "apiserver_addresses": _endpoint_addresses(fetched.apiserver_endpoints),
        **_istio_state(fetched),
    }
    if controller:
        labels = controller["metadata"].get("labels") or {}
        flags = decode.container_args(controller)
        state.update(
            control_plane_namespace=controller["metadata"].get("namespace", ""),
            mesh_name=str(labels.get("meshName") or flags.get("mesh-name") or "")[:253],
            osm_version=str(labels.get("app.kubernetes.io/version") or decode.image_tag(controller))[:64],
            certificate_provider=flags.get("certificate-manager", "")[:64],
            # OSM 1.2 reads MeshRootCertificates only with this flag on; older controllers have no such flag.
            mesh_root_certificates_enabled=_flag_on(flags.get("enable-mesh-root-certificate")),
        )
    elif "deployments" in fetched.lists and fetched.namespaces:
        snap.warnings.append(
            f"No OSM controller in the watched namespaces ({', '.join(fetched.namespaces)}), so the mesh's name, "
            "version and certificate provider are unknown; add the control-plane namespace (osm-system, or "
            "kube-system on the AKS add-on) to the watched namespaces to see them."
        )
    elif "deployments" in fetched.lists and not state["istio_revisions"]:
        snap.warnings.append("no OSM controller found (no Deployment labelled app=osm-controller)")

    meshconfigs = [m for m in fetched.lists.get("meshconfigs", []) if _safe_key(m)]
    namespace = state["control_plane_namespace"]
    chosen = [
        m
        for m in meshconfigs
        if m["metadata"]["name"] == MESH_CONFIG_NAME and m["metadata"].get("namespace") == namespace
    ]
    chosen = chosen or [m for m in meshconfigs if m["metadata"]["name"] == MESH_CONFIG_NAME]
    if chosen:
        spec = chosen[0].get("spec")
        state["meshconfig"] = spec if isinstance(spec, dict) else {}
        if not state["control_plane_namespace"]:
            state["control_plane_namespace"] = chosen[0]["metadata"].get("namespace", "")
    elif "meshconfigs" in fetched.lists and fetched.namespaces:
        snap.warnings.append(
            f"MeshConfig {MESH_CONFIG_NAME} is not in the watched namespaces, so the mesh's configuration (policy "
            "mode, exclusions) is unknown; add the control-plane namespace to the watched namespaces to see it."
        )
    elif "meshconfigs" in fetched.lists:
        snap.warnings.append(f"MeshConfig {MESH_CONFIG_NAME} not found in {namespace or 'any namespace'}")

    nodes = snap.rows.get("nodes", [])
    state["is_aks"] = any(k.startswith("kubernetes.azure.com/") for row in nodes for k in row["labels"])
    return state


def _flag_on(value: str | None) -> bool | None:
    """A Go boolean flag's value as the controller parses it (strconv.ParseBool), None when absent or unreadable;
    a bare `--flag` reads as "" and means true."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("", "1", "t", "true"):
        return True
    return False if text in ("0", "f", "false") else None


def _endpoint_addresses(endpoints: dict[str, Any] | None) -> list[str]:
    if not isinstance(endpoints, dict):
        return []
    addresses = []
    for subset in endpoints.get("subsets") or []:
        ports = [p.get("port") for p in (subset.get("ports") or []) if isinstance(p, dict)]
        for address in subset.get("addresses") or []:
            ip = address.get("ip") if isinstance(address, dict) else None
            if isinstance(ip, str):
                addresses.extend(f"{ip}:{port}" for port in ports) if ports else addresses.append(ip)
    return addresses


def collect(
    gateway: KubeGateway,
    *,
    control_plane_namespace: str = "",
    namespaces: Iterable[str] = (),
    sizes: Mapping[str, int] | None = None,
    page_size: int = PAGE_SIZE,
) -> ClusterSnapshot:
    """Read the whole cluster once, or only `namespaces` (namespace-scoped mode). `sizes`: the last collection's
    counts, which decide how each kind is listed (`page_size_for`); `page_size`: objects per page of a paged list.
    Raises KubeError (transient or permanent) when nothing useful could be read."""
    started = time.perf_counter()
    with gc_paused():
        fetched = _fetch(gateway, tuple(namespaces), sizes or {}, page_size)
        list_sizes = {key: len(items) for key, items in fetched.lists.items()}
        fetched_at = time.perf_counter()
        essential = {"namespaces", "pods", "services"}
        if essential <= set(fetched.failed):
            raise PermanentKubeError(f"cannot read the cluster: {'; '.join(fetched.warnings[-3:])}")
        snap = _decode(fetched, control_plane_namespace)
        # Freed while the GC is still off: the raw lists are acyclic, and freeing them first keeps the GC from
        # scanning millions of doomed objects the moment it is switched back on.
        del fetched
    snap.timings = {"fetch": fetched_at - started, "decode": time.perf_counter() - fetched_at}
    snap.api_requests = gateway.requests
    snap.list_requests = dict(gateway.list_requests)
    snap.list_sizes = list_sizes
    return snap
