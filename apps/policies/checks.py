"""Mesh checks with codes: configuration OSM accepts silently but cannot use, and the AKS add-on's known pitfalls.

Each check has a stable code (`MB-<AREA>-<NNN>`), a severity, and yields `Finding`s naming the objects involved and
a one-line fix. `run_checks(cluster)` reads the snapshot tables only (a constant number of queries, whatever the
mesh's size) and returns every finding, worst first. The weight rules themselves are the model's
(`apps.mesh.models.weight_*`); the splits page shows the findings of `split_findings`.

Facts behind each check (OSM 1.0-1.2 and the AKS add-on) are cited in the catalog below.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from django.utils import timezone

from apps.clusters import scope
from apps.clusters.models import Cluster
from apps.mesh.models import (
    Canary,
    Egress,
    HTTPRouteGroup,
    Ingress,
    IngressBackend,
    MeshNamespace,
    MeshRootCertificate,
    MeshState,
    Node,
    Pod,
    Retry,
    Service,
    ServiceAccount,
    TCPRoute,
    TrafficSplit,
    TrafficTarget,
    UpstreamTrafficSetting,
    selects,
    weight_number,
    weight_problem,
)
from apps.mesh.protocols import TCP, osm_port_protocol

from . import osm_policy

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}

AKS_CLUSTER_LABEL = "kubernetes.azure.com/cluster"
AKS_CONTROL_PLANE_NAMESPACE = "kube-system"
IMDS = "169.254.169.254"
AZURE_DNS = "168.63.129.16"
INJECTION_OFF = {"disabled", "no", "false"}
MAX_LISTED = 20  # objects named in one finding's message; the finding still carries them all


@dataclass(frozen=True)
class Check:
    code: str
    severity: str
    title: str
    source: str  # where the rule comes from


CATALOG: dict[str, Check] = {
    c.code: c
    for c in (
        Check("MB-SPLIT-001", ERROR, "More than one TrafficSplit for the same root service",
              "OSM uses the first split and logs ErrMultipleSMISplitPerServiceUnsupported"),
        Check("MB-SPLIT-002", ERROR, "A Service the TrafficSplit names does not exist",
              "backends resolve in the root's namespace; a missing one is skipped"),
        Check("MB-SPLIT-003", ERROR, "A backend Service lacks the root service's port",
              "OSM skips it: 'Error fetching target port for leaf service'"),
        Check("MB-SPLIT-004", ERROR, "A backend weight is negative",
              "OSM casts each weight to uint32, so a negative weight wraps around"),
        Check("MB-SPLIT-005", ERROR, "A backend weight is not a whole number",
              "the CRD allows any number, OSM's informer decodes an int"),
        Check("MB-SPLIT-006", ERROR, "Backend weights sum to less than 1",
              "'Total weight of weighted cluster must be >= 1': OSM drops the route"),
        Check("MB-SPLIT-007", ERROR, "The root service's selector does not cover the backends' pods",
              "OSM 1.2 release notes: the root service must select the pods backing the leaf services"),
        Check("MB-SPLIT-008", INFO, "The TrafficSplit is managed by a Flagger Canary",
              "Flagger rewrites the weights at every analysis step"),
        Check("MB-SPLIT-009", ERROR, "A backend's pods have no sidecar",
              "OSM sends the backend's share over mTLS; a pod without the sidecar (opted out or never injected) "
              "cannot answer it"),
        Check("MB-SPLIT-010", WARNING, "A backend has no ready pod",
              "the share weighted to it fails until a pod is ready"),
        Check("MB-ACCESS-001", WARNING, "A TrafficTarget names a service account that does not exist",
              "identities are <serviceaccount>.<namespace>; nothing runs as a missing one"),
        Check("MB-ACCESS-002", ERROR, "A TrafficTarget names a route OSM cannot use",
              "rules must be HTTPRouteGroup or TCPRoute objects in the TrafficTarget's namespace"),
        Check("MB-ACCESS-003", ERROR, "A TrafficTarget's namespace differs from its destination's",
              "the webhook rejects it and the controller ignores it (isValidTrafficTarget)"),
        Check("MB-ACCESS-004", WARNING, "TrafficTargets exist but permissive mode ignores them",
              "enablePermissiveTrafficPolicyMode: true allows all in-mesh traffic"),
        Check("MB-MESH-002", WARNING, "No OSM control plane found",
              "without the osm-controller Deployment and its MeshConfig, the mesh's version, policy mode and "
              "exclusions are unknown, and the checks that need them cannot run"),
        Check("MB-MESH-001", WARNING, "Pods without a sidecar in a monitored namespace",
              "these pods are outside the mesh: no mTLS, no policy, no metrics"),
        Check("MB-AKS-001", WARNING, "OSM version differs from the one the AKS add-on installs",
              "AKS: Kubernetes >= 1.24.0 -> 1.2.5; 1.23.5-1.24.0 -> 1.1.3; below -> 1.0.0"),
        Check("MB-AKS-002", WARNING, "Outbound IP range exclusions miss IMDS (169.254.169.254/32)",
              "AKS: pods that need IMDS must have it in the global outbound IP range exclusions"),
        Check("MB-AKS-003", WARNING, "Outbound IP range exclusions miss Azure DNS (168.63.129.16/32)",
              "AKS: pods that need Azure DNS must have it in the global outbound IP range exclusions"),
        Check("MB-AKS-004", WARNING, "Outbound IP range exclusions miss the API server's address",
              "AKS: pods that need the API server must have its address in the global exclusions"),
        Check("MB-AKS-005", ERROR, "Mesh workloads on Windows nodes",
              "AKS: OSM does not support Windows Server containers"),
        Check("MB-INGRESS-001", ERROR, "An IngressBackend names a backend Service that does not exist",
              "OSM builds ingress policy per Service of the IngressBackend's namespace: this entry admits nothing"),
        Check("MB-INGRESS-002", ERROR, "An IngressBackend's port is not a target port of its backend Service",
              "OSM matches backends[].port.number with the Service port's targetPort (GetIngressBackendPolicy)"),
        Check("MB-INGRESS-003", ERROR, "An IngressBackend's protocol does not fit its backend port",
              "OSM's webhook takes http or https only, and a port with appProtocol tcp gets no HTTP route"),
        Check("MB-INGRESS-004", ERROR, "An Ingress routes to a meshed Service that no IngressBackend admits",
              "OSM 1.2 builds ingress policy only from IngressBackends (pkg/catalog/ingress.go): the backend's "
              "sidecar refuses the ingress controller"),
        Check("MB-INGRESS-005", ERROR, "An IngressBackend's source Service does not exist",
              "OSM finds no endpoints for it, sets the IngressBackend's status to error and builds no policy"),
        Check("MB-EGRESS-001", WARNING, "Egress policies exist but egress policy is off",
              "with featureFlags.enableEgressPolicy false, OSM ignores Egress resources"),
        Check("MB-EGRESS-002", ERROR, "An Egress's HTTP route match names no HTTPRouteGroup OSM can use",
              "OSM logs ErrEgressSMIHTTPRouteGroupNotFound and builds no route for it: those requests are refused"),
        Check("MB-UPSTREAM-001", ERROR, "An UpstreamTrafficSetting's host is not a Service of the mesh",
              "OSM applies it to the Service whose FQDN <name>.<namespace>.svc.cluster.local is the host, in the "
              "setting's own namespace"),
        Check("MB-UPSTREAM-002", ERROR, "Several UpstreamTrafficSettings for one host",
              "OSM's webhook refuses the second ('conflicts ... since they have the same host'); without it, "
              "OSM applies one of them"),
        Check("MB-RETRY-001", WARNING, "Retry policies exist but retry policy is off",
              "with featureFlags.enableRetryPolicy false (the chart's default), OSM ignores Retry resources"),
        Check("MB-RETRY-002", ERROR, "A Retry names a Service or service account that does not exist",
              "OSM applies a Retry to its source service account's requests to each destination Service"),
        Check("MB-CERT-001", ERROR, "A root certificate rotation is stuck in an intermediate state",
              "OSM 1.2 moves a MeshRootCertificate through validating and issuing states to active or inactive; "
              "past the service certificates' validity every leaf has been reissued, so nothing is left to wait for"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Finding:
    code: str
    message: str  # what is wrong, in one line, naming the objects (cluster strings: escape when shown)
    fix: str  # one line
    objects: tuple[ObjectRef, ...] = ()

    @property
    def check(self) -> Check:
        return CATALOG[self.code]

    @property
    def severity(self) -> str:
        return self.check.severity

    @property
    def title(self) -> str:
        return self.check.title

    def concerns(self, kind: str, namespace: str, name: str) -> bool:
        return ObjectRef(kind, namespace, name) in self.objects


def _sorted(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITY_ORDER[f.severity], f.code, f.message))


def _names(items: Iterable[object]) -> str:
    items = [str(i) for i in items]
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


# ---------------------------------------------------------------------------------------------------------------
# TrafficSplit weights (the rules themselves live with the model: apps.mesh.models.weight_*)


def split_weight_findings(split: TrafficSplit) -> list[Finding]:
    """MB-SPLIT-004, -005 (each bad weight) and -006 (the sum): the weights OSM cannot use."""
    ref = (ObjectRef("TrafficSplit", split.namespace, split.name),)
    found = []
    for backend in split.backends:
        weight = backend.get("weight")
        problem = weight_problem(weight)
        if not problem:
            continue
        w = weight_number(weight)
        code = "MB-SPLIT-004" if w is not None and w < 0 else "MB-SPLIT-005"
        found.append(
            Finding(
                code,
                f"{backend.get('service', '')}: weight {weight} is {problem}",
                "Set every weight to a whole number >= 0 (weights are relative, not percentages).",
                ref,
            )
        )
    total = split.total_weight
    if total is not None and total < 1:
        found.append(
            Finding(
                "MB-SPLIT-006",
                "weights sum to less than 1: OSM drops the route and traffic to the root fails",
                "Give at least one backend a weight of 1 or more.",
                ref,
            )
        )
    return found


# ---------------------------------------------------------------------------------------------------------------
# The snapshot, read once


_POD_FIELDS = ("namespace", "name", "labels", "annotations", "has_sidecar", "node_name", "phase", "ready")


class _Snapshot:
    """The cluster's snapshot tables, each read at most once and only when a check needs it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def _by_key(self, model: type) -> dict:
        return {(r.namespace, r.name): r for r in model.objects.filter(cluster=self.cluster)}

    @cached_property
    def state(self) -> MeshState | None:
        return MeshState.objects.filter(cluster=self.cluster).first()

    @cached_property
    def splits(self) -> list[TrafficSplit]:
        return list(TrafficSplit.objects.filter(cluster=self.cluster).order_by("namespace", "name"))

    @cached_property
    def services(self) -> dict[tuple[str, str], Service]:
        return self._by_key(Service)

    @cached_property
    def pods(self) -> list[Pod]:
        return list(Pod.objects.filter(cluster=self.cluster).only(*_POD_FIELDS))

    @cached_property
    def split_pods(self) -> dict[str, list[Pod]]:
        """Pods of the namespaces that hold a TrafficSplit, by namespace."""
        found: dict[str, list[Pod]] = defaultdict(list)
        namespaces = {s.namespace for s in self.splits}
        for pod in Pod.objects.filter(cluster=self.cluster, namespace__in=namespaces).only(*_POD_FIELDS):
            found[pod.namespace].append(pod)
        return found

    @cached_property
    def namespaces(self) -> dict[str, MeshNamespace]:
        return {n.name: n for n in MeshNamespace.objects.filter(cluster=self.cluster)}

    @cached_property
    def nodes(self) -> list[Node]:
        return list(Node.objects.filter(cluster=self.cluster))

    @cached_property
    def service_accounts(self) -> set[tuple[str, str]]:
        return set(ServiceAccount.objects.filter(cluster=self.cluster).values_list("namespace", "name"))

    @cached_property
    def targets(self) -> list[TrafficTarget]:
        return list(TrafficTarget.objects.filter(cluster=self.cluster).order_by("namespace", "name"))

    @cached_property
    def http_routes(self) -> dict[tuple[str, str], HTTPRouteGroup]:
        return self._by_key(HTTPRouteGroup)

    @cached_property
    def tcp_routes(self) -> dict[tuple[str, str], TCPRoute]:
        return self._by_key(TCPRoute)

    @cached_property
    def canaries(self) -> list[Canary]:
        return list(Canary.objects.filter(cluster=self.cluster))

    @cached_property
    def ingresses(self) -> list[Ingress]:
        return list(Ingress.objects.filter(cluster=self.cluster).order_by("namespace", "name"))

    @cached_property
    def ingress_backends(self) -> list[IngressBackend]:
        return list(IngressBackend.objects.filter(cluster=self.cluster).order_by("namespace", "name"))

    @cached_property
    def egresses(self) -> list[Egress]:
        return list(Egress.objects.filter(cluster=self.cluster).order_by("namespace", "name"))

    @cached_property
    def upstream_settings(self) -> list[UpstreamTrafficSetting]:
        return list(UpstreamTrafficSetting.objects.filter(cluster=self.cluster).order_by("namespace", "name"))

    @cached_property
    def retries(self) -> list[Retry]:
        return list(Retry.objects.filter(cluster=self.cluster).order_by("namespace", "name"))

    @cached_property
    def root_certificates(self) -> list[MeshRootCertificate]:
        return list(MeshRootCertificate.objects.filter(cluster=self.cluster).order_by("namespace", "name"))

    def sees_namespace(self, namespace: str) -> bool:
        """Whether the collector reads `namespace` (all of them cluster-wide, the watched ones otherwise) and the user
        may see it (apps/clusters/scope.py). What is not read, or hidden, cannot be called missing."""
        watched = self.cluster.watched_namespaces
        return (not watched or namespace in watched) and scope.visible(namespace)


# ---------------------------------------------------------------------------------------------------------------
# TrafficSplit checks


def _split_checks(snap: _Snapshot) -> Iterator[Finding]:
    by_root: dict[tuple[str, str], list[TrafficSplit]] = defaultdict(list)
    for split in snap.splits:
        by_root[(split.namespace, split.root_service_name)].append(split)
    for (namespace, root), splits in by_root.items():
        if len(splits) > 1:
            yield Finding(
                "MB-SPLIT-001",
                f"{len(splits)} TrafficSplits for root {namespace}/{root}: {_names(s.name for s in splits)};"
                " OSM uses only one of them",
                "Keep one TrafficSplit per root service and delete the others.",
                (
                    *(ObjectRef("TrafficSplit", s.namespace, s.name) for s in splits),
                    ObjectRef("Service", namespace, root),
                ),
            )
    for split in snap.splits:
        yield from split_weight_findings(split)
        yield from _split_service_checks(snap, split)
        yield from _flagger_check(snap, split)


def _split_service_checks(snap: _Snapshot, split: TrafficSplit) -> Iterator[Finding]:
    ns = split.namespace
    ref = ObjectRef("TrafficSplit", ns, split.name)
    root = snap.services.get((ns, split.root_service_name))
    if root is None:
        yield Finding(
            "MB-SPLIT-002",
            f"root service {ns}/{split.root_service_name} does not exist",
            f"Create Service {split.root_service_name} in {ns}, or point spec.service at an existing one.",
            (ref, ObjectRef("Service", ns, split.root_service_name)),
        )
    pods = snap.split_pods.get(ns, [])
    for backend in split.backends:
        name = str(backend.get("service", ""))
        service = snap.services.get((ns, name))
        backend_ref = ObjectRef("Service", ns, name)
        if service is None:
            yield Finding(
                "MB-SPLIT-002",
                f"backend service {ns}/{name} does not exist; OSM skips it",
                f"Create Service {name} in {ns} (backends must be in the root's namespace) or remove the backend.",
                (ref, backend_ref),
            )
            continue
        if root is None:
            continue
        missing = service.port_gap(root)
        if missing:
            yield Finding(
                "MB-SPLIT-003",
                f"backend service {ns}/{name} has no port {', '.join(missing)} of root {ns}/{root.name}; OSM skips it",
                f"Add port {', '.join(missing)} to Service {name}.",
                (ref, backend_ref, ObjectRef("Service", ns, root.name)),
            )
        backing = [p for p in pods if selects(service.selector, p.labels)]
        yield from _backend_pod_checks(ref, backend_ref, name, backing)
        if backing:
            uncovered = [p.name for p in backing if not selects(root.selector, p.labels)]
        else:  # no pods yet: compare the selectors themselves
            covered = bool(root.selector) and all(service.selector.get(k) == v for k, v in root.selector.items())
            uncovered = [] if covered else [f"(selector {service.selector})"]
        if uncovered:
            yield Finding(
                "MB-SPLIT-007",
                f"root {ns}/{root.name} (selector {root.selector}) does not select the pods of backend {name}:"
                f" {_names(uncovered)}",
                f"Make Service {root.name}'s selector a subset of the labels of {name}'s pods (e.g. only `app`).",
                (ref, ObjectRef("Service", ns, root.name), backend_ref),
            )


def _backend_pod_checks(ref: ObjectRef, backend_ref: ObjectRef, name: str, backing: list[Pod]) -> Iterator[Finding]:
    """MB-SPLIT-009 and -010: a backend whose pods cannot take its share. Pods that opted out of injection count:
    backing a split puts them on the mesh's path whatever their annotation says."""
    running = [p for p in backing if p.phase not in ("Succeeded", "Failed")]
    unmeshed = [p.name for p in running if not p.has_sidecar]
    if unmeshed:
        yield Finding(
            "MB-SPLIT-009",
            f"backend {backend_ref.namespace}/{name}: {len(unmeshed)} of {len(running)} pod(s) have no sidecar:"
            f" {_names(unmeshed)}",
            f"Inject the sidecar into {name}'s pods (remove an opt-out annotation, restart them), or give the backend"
            " weight 0.",
            (ref, backend_ref, *(ObjectRef("Pod", backend_ref.namespace, p) for p in unmeshed)),
        )
    if running and not any(p.ready for p in running):
        yield Finding(
            "MB-SPLIT-010",
            f"backend {backend_ref.namespace}/{name} has no ready pod (0/{len(running)})",
            f"Fix {name}'s pods before sending it traffic, or give it weight 0.",
            (ref, backend_ref),
        )


def flagger_canaries(split: TrafficSplit, canaries: Iterable[Canary]) -> list[str]:
    """Names of the Flagger Canaries that drive `split`: its owners, or a Canary of its namespace whose apex (its
    service name, else its target's name) is the split's name (Flagger names the split after it) or its root."""
    names = {o.get("name", "") for o in split.owners if o.get("kind") == "Canary"}
    for canary in canaries:
        apex = (canary.service or {}).get("name") or (canary.target_ref or {}).get("name")
        if canary.namespace == split.namespace and apex in (split.name, split.root_service_name):
            names.add(canary.name)
    return sorted(n for n in names if n)


def _flagger_check(snap: _Snapshot, split: TrafficSplit) -> Iterator[Finding]:
    for name in flagger_canaries(split, snap.canaries):
        yield Finding(
            "MB-SPLIT-008",
            f"TrafficSplit {split.namespace}/{split.name} is managed by Flagger Canary {split.namespace}/{name}",
            "Change the Canary's analysis, not the weights: Flagger overwrites manual edits.",
            (ObjectRef("TrafficSplit", split.namespace, split.name), ObjectRef("Canary", split.namespace, name)),
        )


# ---------------------------------------------------------------------------------------------------------------
# TrafficTarget checks


def _access_checks(snap: _Snapshot) -> Iterator[Finding]:
    for target in snap.targets:
        ref = ObjectRef("TrafficTarget", target.namespace, target.name)
        dest = target.destination or {}
        dest_ns = str(dest.get("namespace") or "")
        if dest_ns != target.namespace:
            yield Finding(
                "MB-ACCESS-003",
                f"TrafficTarget {target.namespace}/{target.name} has destination namespace {dest_ns or '(none)'};"
                " OSM ignores it",
                f"Set spec.destination.namespace to {target.namespace} or move the TrafficTarget to {dest_ns or '?'}.",
                (ref,),
            )
        if snap.service_accounts:  # the collector saw service accounts: a missing one is really missing
            named = [(str(dest.get("namespace") or ""), str(dest.get("name") or ""))]
            named += [
                (str(s.get("namespace") or ""), str(s.get("name") or ""))
                for s in target.sources
                if s.get("kind", "ServiceAccount") == "ServiceAccount"
            ]
            missing = [
                key for key in dict.fromkeys(named) if snap.sees_namespace(key[0]) and key not in snap.service_accounts
            ]
            if missing:
                yield Finding(
                    "MB-ACCESS-001",
                    f"TrafficTarget {target.namespace}/{target.name} names missing service account"
                    f"{'s' if len(missing) > 1 else ''} {_names(f'{ns}/{n}' for ns, n in missing)}",
                    "Fix the name or namespace, or create the ServiceAccount the workload runs as.",
                    (ref, *(ObjectRef("ServiceAccount", ns, n) for ns, n in missing)),
                )
        problems = route_problems(target, snap.http_routes, snap.tcp_routes)
        if problems:
            yield Finding(
                "MB-ACCESS-002",
                f"TrafficTarget {target.namespace}/{target.name}: {'; '.join(problems)}",
                f"Point each rule at an HTTPRouteGroup or TCPRoute in {target.namespace} and at match names it has.",
                (ref,),
            )
    if snap.targets and snap.state is not None and snap.state.permissive_mode:
        yield Finding(
            "MB-ACCESS-004",
            f"{len(snap.targets)} TrafficTarget(s) are ignored because the mesh is in permissive mode:"
            f" {_names(f'{t.namespace}/{t.name}' for t in snap.targets)}",
            "Set MeshConfig traffic.enablePermissiveTrafficPolicyMode to false to enforce them (deny by default),"
            " or delete them.",
            tuple(ObjectRef("TrafficTarget", t.namespace, t.name) for t in snap.targets),
        )


def route_problems(
    target: TrafficTarget,
    http_routes: dict[tuple[str, str], HTTPRouteGroup],
    tcp_routes: dict[tuple[str, str], TCPRoute],
) -> list[str]:
    """What in a TrafficTarget's rules OSM cannot use: no rules, a kind it ignores, a missing route or match name."""
    if not target.rules:
        return ["no rules: OSM ignores a TrafficTarget without rules"]
    problems = []
    for rule in target.rules:
        kind, name = str(rule.get("kind", "")), str(rule.get("name", ""))
        key = (target.namespace, name)
        if kind == "HTTPRouteGroup":
            group = http_routes.get(key)
            if group is None:
                problems.append(f"HTTPRouteGroup {target.namespace}/{name} does not exist")
                continue
            have = {m.get("name") for m in group.matches if isinstance(m, dict)}
            absent = [m for m in rule.get("matches") or [] if m not in have]
            if absent:
                problems.append(f"HTTPRouteGroup {target.namespace}/{name} has no match {_names(absent)}")
        elif kind == "TCPRoute":
            if key not in tcp_routes:
                problems.append(f"TCPRoute {target.namespace}/{name} does not exist")
        else:
            problems.append(f"rule kind {kind or '(none)'} is not HTTPRouteGroup or TCPRoute: OSM ignores the target")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# Sidecars


def _sidecar_checks(snap: _Snapshot) -> Iterator[Finding]:
    control_plane = snap.state.control_plane_namespace if snap.state else ""
    missing: dict[str, list[Pod]] = defaultdict(list)
    for pod in snap.pods:
        namespace = snap.namespaces.get(pod.namespace)
        if namespace is None or not namespace.monitored_by or namespace.ignored or pod.namespace == control_plane:
            continue
        if pod.has_sidecar or pod.phase in ("Succeeded", "Failed"):
            continue
        opt_out = str((pod.annotations or {}).get("openservicemesh.io/sidecar-injection", "")).strip().lower()
        if opt_out in INJECTION_OFF:
            continue  # the pod opted out on purpose
        if namespace.sidecar_injection.strip().lower() in INJECTION_OFF:
            # `osm namespace add --disable-sidecar-injection`: monitored (OSM reads its Services' endpoints, as an
            # ingress controller's IngressBackend source needs) but outside the mesh on purpose.
            continue
        missing[pod.namespace].append(pod)
    for ns, pods in sorted(missing.items()):
        namespace = snap.namespaces[ns]
        if namespace.injection_enabled:
            fix = "Restart the workloads (kubectl rollout restart) so the injector adds the sidecar."
        else:
            fix = (
                f"Enable injection (kubectl annotate namespace {ns} openservicemesh.io/sidecar-injection=enabled),"
                " then restart the workloads."
            )
        yield Finding(
            "MB-MESH-001",
            f"{len(pods)} pod(s) in {ns} (monitored by {namespace.monitored_by}) have no sidecar:"
            f" {_names(p.name for p in pods)}",
            fix,
            (ObjectRef("Namespace", "", ns), *(ObjectRef("Pod", ns, p.name) for p in pods)),
        )


# ---------------------------------------------------------------------------------------------------------------
# AKS add-on


def aks_evidence(state: MeshState | None, nodes: Iterable[Node]) -> str:
    """Why this cluster counts as AKS ("" when it does not): node labels, or the add-on's control-plane namespace."""
    if any(AKS_CLUSTER_LABEL in (n.labels or {}) for n in nodes):
        return f"nodes labelled {AKS_CLUSTER_LABEL}"
    if state is not None and state.control_plane_namespace == AKS_CONTROL_PLANE_NAMESPACE:
        return "OSM control plane in kube-system, as the AKS add-on installs it"
    return ""


_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.match((text or "").strip())
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def aks_osm_version(kubernetes_version: str) -> str:
    """The OSM version the AKS add-on installs for this Kubernetes version ("" if unparseable)."""
    k8s = parse_version(kubernetes_version)
    if k8s is None:
        return ""
    if k8s >= (1, 24, 0):
        return "1.2.5"
    if k8s >= (1, 23, 5):
        return "1.1.3"
    return "1.0.0"


def _covered(address: str, ranges: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True  # not an address we can judge
    return any(ip.version == r.version and ip in r for r in ranges)


def apiserver_ips(addresses: Iterable[str]) -> list[str]:
    """The API server's IPs from the collector's `ip:port` (or bare ip) entries, without duplicates."""
    ips = []
    for entry in addresses:
        text = str(entry).strip()
        for candidate in (text, text.rsplit(":", 1)[0].strip("[]")):
            try:
                ips.append(str(ipaddress.ip_address(candidate)))
                break
            except ValueError:
                continue
    return list(dict.fromkeys(ips))


def exclusion_ranges(meshconfig: dict) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    traffic = (meshconfig or {}).get("traffic") or {}
    ranges = []
    for item in traffic.get("outboundIPRangeExclusionList") or []:
        try:
            ranges.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            continue
    return ranges


def _aks_checks(snap: _Snapshot) -> Iterator[Finding]:
    state = snap.state
    if not aks_evidence(state, snap.nodes):
        return
    if state is not None:
        yield from _aks_version_check(state)
        yield from _aks_exclusion_checks(state)
    windows = {n.name for n in snap.nodes if n.os.strip().lower() == "windows"}
    if windows:
        monitored = {n for n, ns in snap.namespaces.items() if ns.monitored_by and not ns.ignored}
        pods = [p for p in snap.pods if p.node_name in windows and (p.has_sidecar or p.namespace in monitored)]
        if pods:
            yield Finding(
                "MB-AKS-005",
                f"{len(pods)} mesh pod(s) run on Windows nodes: {_names(f'{p.namespace}/{p.name}' for p in pods)}",
                "Schedule mesh workloads on Linux nodes (nodeSelector kubernetes.io/os: linux).",
                (
                    *(ObjectRef("Pod", p.namespace, p.name) for p in pods),
                    *(ObjectRef("Node", "", n) for n in sorted({p.node_name for p in pods})),
                ),
            )


def _aks_version_check(state: MeshState) -> Iterator[Finding]:
    expected = aks_osm_version(state.kubernetes_version)
    actual = parse_version(state.osm_version)
    if not expected or actual is None or actual == parse_version(expected):
        return
    where = state.control_plane_namespace or "?"
    yield Finding(
        "MB-AKS-001",
        f"OSM {state.osm_version} (in {where}) on Kubernetes {state.kubernetes_version}: the AKS add-on installs"
        f" OSM {expected} for this Kubernetes version",
        "Use the add-on's version (az aks enable-addons --addons open-service-mesh) or upgrade OSM to match;"
        " OSM is archived, plan the move to Istio.",
        (ObjectRef("Deployment", where, "osm-controller"),),
    )


def _aks_exclusion_checks(state: MeshState) -> Iterator[Finding]:
    if not state.meshconfig:
        return  # no MeshConfig in the snapshot: nothing to judge
    ranges = exclusion_ranges(state.meshconfig)
    ref = (ObjectRef("MeshConfig", state.control_plane_namespace, "osm-mesh-config"),)
    wanted = [("MB-AKS-002", "IMDS", IMDS), ("MB-AKS-003", "Azure DNS", AZURE_DNS)]
    wanted += [("MB-AKS-004", "the API server", a) for a in apiserver_ips(state.apiserver_addresses)]
    for code, what, address in wanted:
        if _covered(address, ranges):
            continue
        yield Finding(
            code,
            f"traffic.outboundIPRangeExclusionList does not exclude {what} ({address}/32): pods that call it"
            " go through the sidecar and fail",
            f"Add {address}/32 to spec.traffic.outboundIPRangeExclusionList (kubectl edit meshconfig osm-mesh-config"
            f" -n {state.control_plane_namespace or 'kube-system'}), then restart the meshed pods.",
            ref,
        )


# ---------------------------------------------------------------------------------------------------------------
# OSM's policy API (the rules it follows are apps.policies.osm_policy's)


def _ingress_checks(snap: _Snapshot) -> Iterator[Finding]:
    for policy in snap.ingress_backends:
        yield from _ingress_backend_checks(snap, policy)
    yield from _unadmitted_ingress_paths(snap)


def _ingress_backend_checks(snap: _Snapshot, policy: IngressBackend) -> Iterator[Finding]:
    ns = policy.namespace
    ref = ObjectRef("IngressBackend", ns, policy.name)
    for backend in policy.backends or []:
        name, number = str(backend.get("name", "")), backend.get("port")
        protocol = str(backend.get("protocol") or "")
        service = snap.services.get((ns, name))
        if service is None:
            yield Finding(
                "MB-INGRESS-001",
                f"IngressBackend {ns}/{policy.name} admits traffic to Service {ns}/{name}, which does not exist",
                f"Create Service {name} in {ns} or fix backends[].name (the backend must be in the IngressBackend's"
                " namespace).",
                (ref, ObjectRef("Service", ns, name)),
            )
            continue
        ports = [p for p in service.ports or [] if isinstance(p, dict)]
        matching = [p for p in ports if osm_policy.admits(backend, name, osm_policy.target_port(p))]
        if not matching:
            targets = ", ".join(str(osm_policy.target_port(p)) for p in ports) or "none"
            yield Finding(
                "MB-INGRESS-002",
                f"IngressBackend {ns}/{policy.name}: port {number} is not a target port of Service {ns}/{name}"
                f" (its target ports: {targets}); OSM admits nothing to it",
                f"Set backends[].port.number to the target port (the container port) of Service {name}, not its"
                " service port.",
                (ref, ObjectRef("Service", ns, name)),
            )
            continue
        if protocol.lower() not in osm_policy.INGRESS_PROTOCOLS:
            problem = f"protocol {protocol or '(none)'} is not http or https, which OSM's webhook refuses"
        elif any(osm_port_protocol(p) == TCP for p in matching):
            app = ", ".join(str(p.get("appProtocol")) for p in matching if osm_port_protocol(p) == TCP)
            problem = f"protocol {protocol} on a port with appProtocol {app}, which OSM serves as TCP, not HTTP"
        else:
            continue
        yield Finding(
            "MB-INGRESS-003",
            f"IngressBackend {ns}/{policy.name} for Service {ns}/{name} port {number}: {problem}",
            f"Use http or https (https for mTLS from the ingress controller), and an HTTP port (appProtocol http or"
            f" none) on Service {name}.",
            (ref, ObjectRef("Service", ns, name)),
        )
    yield from _ingress_source_checks(snap, policy, ref)


def _ingress_source_checks(snap: _Snapshot, policy: IngressBackend, ref: ObjectRef) -> Iterator[Finding]:
    for source in policy.sources or []:
        if source.get("kind") != "Service":
            continue
        ns, name = str(source.get("namespace") or ""), str(source.get("name") or "")
        if not snap.sees_namespace(ns) or (ns, name) in snap.services:
            continue
        yield Finding(
            "MB-INGRESS-005",
            f"IngressBackend {policy.namespace}/{policy.name} admits source Service {ns or '(no namespace)'}/{name},"
            " which does not exist; OSM builds no policy from this IngressBackend",
            "Name the ingress controller's Service (namespace and name, e.g. ingress-nginx/ingress-nginx-controller)"
            " and add its namespace to the mesh (osm namespace add --disable-sidecar-injection).",
            (ref, ObjectRef("Service", ns, name)),
        )


def _unadmitted_ingress_paths(snap: _Snapshot) -> Iterator[Finding]:
    for ingress in snap.ingresses:
        ns = ingress.namespace
        missing: dict[str, list[str]] = defaultdict(list)
        for route in ingress.routes or []:
            name = str(route.get("service") or "")
            service = snap.services.get((ns, name))
            if service is None or service.pods_meshed == 0:
                continue  # no sidecar to refuse it
            port = osm_policy.service_port(service, route.get("port"))
            if port is None:
                continue
            target = osm_policy.target_port(port)
            policies = [p for p in snap.ingress_backends if p.namespace == ns]
            if not osm_policy.admissions(policies, service, target):
                missing[name].append(f"{route.get('host') or '*'}{route.get('path') or '/'} -> port {target}")
        for name, paths in missing.items():
            yield Finding(
                "MB-INGRESS-004",
                f"Ingress {ns}/{ingress.name} routes {_names(paths)} to meshed Service {ns}/{name}, and no"
                " IngressBackend admits it: its sidecar refuses the ingress controller",
                f"Create an IngressBackend in {ns} with backends [{{name: {name}, port: {{number: <target port>,"
                " protocol: http}}]} and the ingress controller's Service as source.",
                (ObjectRef("Ingress", ns, ingress.name), ObjectRef("Service", ns, name)),
            )


def _egress_checks(snap: _Snapshot) -> Iterator[Finding]:
    if not snap.egresses:
        return
    state = snap.state
    enabled = osm_policy.flag(state.meshconfig if state else None, "featureFlags", "enableEgressPolicy")
    if enabled is False:
        yield Finding(
            "MB-EGRESS-001",
            f"{len(snap.egresses)} Egress polic{'ies are' if len(snap.egresses) > 1 else 'y is'} ignored because"
            f" featureFlags.enableEgressPolicy is off: {_names(f'{e.namespace}/{e.name}' for e in snap.egresses)}",
            "Set MeshConfig featureFlags.enableEgressPolicy to true (kubectl edit meshconfig osm-mesh-config -n"
            f" {state.control_plane_namespace if state else 'osm-system'}), or delete the Egress policies.",
            (
                ObjectRef("MeshConfig", state.control_plane_namespace if state else "", "osm-mesh-config"),
                *(ObjectRef("Egress", e.namespace, e.name) for e in snap.egresses),
            ),
        )
    for egress in snap.egresses:
        problems = []
        for match in egress.matches or []:
            kind, name, group = (str(match.get(k) or "") for k in ("kind", "name", "apiGroup"))
            if kind == "HTTPRouteGroup" and group == osm_policy.HTTP_ROUTE_GROUP_API:
                if (egress.namespace, name) not in snap.http_routes:
                    problems.append(f"HTTPRouteGroup {egress.namespace}/{name} does not exist")
            elif kind == "HTTPRouteGroup":
                problems.append(
                    f"match {name} names apiGroup {group or '(none)'}, not {osm_policy.HTTP_ROUTE_GROUP_API}"
                )
        if problems:
            yield Finding(
                "MB-EGRESS-002",
                f"Egress {egress.namespace}/{egress.name}: {'; '.join(problems)}",
                f"Create the HTTPRouteGroup in {egress.namespace} (matches name objects of the Egress's namespace),"
                " or remove the match to allow every HTTP request to its hosts.",
                (ObjectRef("Egress", egress.namespace, egress.name),),
            )


def _resilience_checks(snap: _Snapshot) -> Iterator[Finding]:
    by_host: dict[str, list[UpstreamTrafficSetting]] = defaultdict(list)
    for setting in snap.upstream_settings:
        by_host[setting.host].append(setting)
        ref = ObjectRef("UpstreamTrafficSetting", setting.namespace, setting.name)
        target = osm_policy.fqdn_service(setting.host)
        if target and target[0] == setting.namespace and target in snap.services:
            continue
        if target and not snap.sees_namespace(target[0]):
            continue
        if target is None:
            why = "is not a Service FQDN (<name>.<namespace>.svc.cluster.local)"
        elif target[0] != setting.namespace:
            why = f"names a Service of namespace {target[0]}, and OSM only applies a setting in the Service's namespace"
        else:
            why = f"names Service {target[0]}/{target[1]}, which does not exist"
        yield Finding(
            "MB-UPSTREAM-001",
            f"UpstreamTrafficSetting {setting.namespace}/{setting.name}: host {setting.host or '(none)'} {why};"
            " OSM applies it to nothing",
            f"Set spec.host to <service>.{setting.namespace}.svc.cluster.local for a Service of {setting.namespace}.",
            (ref,),
        )
    for host, settings in by_host.items():
        if len(settings) > 1:
            yield Finding(
                "MB-UPSTREAM-002",
                f"{len(settings)} UpstreamTrafficSettings for host {host}: "
                f"{_names(f'{s.namespace}/{s.name}' for s in settings)}; OSM applies only one",
                "Merge them into one UpstreamTrafficSetting per host and delete the others.",
                tuple(ObjectRef("UpstreamTrafficSetting", s.namespace, s.name) for s in settings),
            )
    yield from _retry_checks(snap)


def _retry_checks(snap: _Snapshot) -> Iterator[Finding]:
    if not snap.retries:
        return
    state = snap.state
    if osm_policy.flag(state.meshconfig if state else None, "featureFlags", "enableRetryPolicy") is False:
        yield Finding(
            "MB-RETRY-001",
            f"{len(snap.retries)} Retry polic{'ies are' if len(snap.retries) > 1 else 'y is'} ignored because"
            f" featureFlags.enableRetryPolicy is off: {_names(f'{r.namespace}/{r.name}' for r in snap.retries)}",
            "Set MeshConfig featureFlags.enableRetryPolicy to true (kubectl edit meshconfig osm-mesh-config -n"
            f" {state.control_plane_namespace if state else 'osm-system'}), or delete the Retry policies.",
            (
                ObjectRef("MeshConfig", state.control_plane_namespace if state else "", "osm-mesh-config"),
                *(ObjectRef("Retry", r.namespace, r.name) for r in snap.retries),
            ),
        )
    for retry in snap.retries:
        missing: list[ObjectRef] = []
        source = retry.source if isinstance(retry.source, dict) else {}
        key = (str(source.get("namespace") or ""), str(source.get("name") or ""))
        if snap.service_accounts and snap.sees_namespace(key[0]) and key not in snap.service_accounts:
            missing.append(ObjectRef("ServiceAccount", *key))
        for dest in retry.destinations or []:
            key = (str(dest.get("namespace") or ""), str(dest.get("name") or ""))
            if snap.sees_namespace(key[0]) and key not in snap.services:
                missing.append(ObjectRef("Service", *key))
        if missing:
            yield Finding(
                "MB-RETRY-002",
                f"Retry {retry.namespace}/{retry.name} names {_names(missing)}, which"
                f" {'do' if len(missing) > 1 else 'does'} not exist; OSM retries nothing for"
                f" {'them' if len(missing) > 1 else 'it'}",
                "Fix spec.source (a ServiceAccount) and spec.destinations (Services) to name existing objects.",
                (ObjectRef("Retry", retry.namespace, retry.name), *missing),
            )


DEFAULT_CERT_VALIDITY_SECONDS = 24 * 3600  # the chart's serviceCertValidityDuration


def _certificate_checks(snap: _Snapshot) -> Iterator[Finding]:
    state = snap.state
    validity = osm_policy.go_duration_seconds(
        ((state.meshconfig or {}).get("certificate") or {}).get("serviceCertValidityDuration") if state else None
    )
    limit = validity if validity and validity > 0 else DEFAULT_CERT_VALIDITY_SECONDS
    now = timezone.now()
    for root in snap.root_certificates:
        if not root.in_rotation or root.state_since is None:
            continue
        stuck_for = (now - root.state_since).total_seconds()
        if stuck_for <= limit:
            continue
        yield Finding(
            "MB-CERT-001",
            f"MeshRootCertificate {root.namespace}/{root.name} has been in state {root.state} since"
            f" {root.state_since:%Y-%m-%d %H:%M} UTC ({stuck_for / 3600:.0f} h), longer than the service"
            f" certificates' validity ({limit / 3600:g} h)",
            f"Read osm-controller's log (kubectl logs -n {root.namespace} deploy/osm-controller) for why the rotation"
            " does not advance, and fix the root's provider it names (its CA Secret, cert-manager issuer or Vault).",
            (ObjectRef("MeshRootCertificate", root.namespace, root.name),),
        )


# ---------------------------------------------------------------------------------------------------------------


# The checks that read the control plane's Deployment or its MeshConfig, and so cannot run without them.
NEED_CONTROL_PLANE = (
    "MB-ACCESS-004",
    "MB-AKS-001",
    "MB-AKS-002",
    "MB-AKS-003",
    "MB-AKS-004",
    "MB-EGRESS-001",
    "MB-RETRY-001",
    "MB-CERT-001",
)


def _control_plane_check(snap: _Snapshot) -> Iterator[Finding]:
    """MB-MESH-002: say what was looked for and where, and which checks could not run."""
    state = snap.state
    controller = bool(state and state.mesh_name and state.osm_version)
    meshconfig = bool(state and state.meshconfig)
    if controller and meshconfig:
        return
    missing = " and ".join(
        what
        for what, found in (
            ("no Deployment labelled app=osm-controller", controller),
            ("no MeshConfig osm-mesh-config", meshconfig),
        )
        if not found
    )
    where = f"in {state.control_plane_namespace}" if state and state.control_plane_namespace else "in any namespace"
    yield Finding(
        "MB-MESH-002",
        f"{missing} {where}; checks that could not run: {', '.join(NEED_CONTROL_PLANE)}",
        "Install OSM (or enable the AKS add-on), or point Meshboard at its namespace with "
        "add_cluster --control-plane-namespace.",
        (ObjectRef("Deployment", state.control_plane_namespace if state else "", "osm-controller"),),
    )


def _mesh_checks(snap: _Snapshot) -> Iterator[Finding]:
    yield from _control_plane_check(snap)
    yield from _sidecar_checks(snap)


AREAS = {
    "split": _split_checks,
    "access": _access_checks,
    "mesh": _mesh_checks,
    "aks": _aks_checks,
    "ingress": _ingress_checks,
    "egress": _egress_checks,
    "resilience": _resilience_checks,
    "certificates": _certificate_checks,
}


def run_checks(cluster: Cluster, areas: Iterable[str] = tuple(AREAS)) -> list[Finding]:
    """Every finding for the cluster's latest snapshot (or only those of some `areas`), errors first."""
    snap = _Snapshot(cluster)
    findings: list[Finding] = []
    for area in areas:
        findings.extend(AREAS[area](snap))
    return _sorted(findings)


def split_findings(cluster: Cluster) -> dict[tuple[str, str], list[Finding]]:
    """The TrafficSplit findings by (namespace, split name), for the splits page (reads only what they need)."""
    by_split: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in run_checks(cluster, ["split"]):
        for ref in finding.objects:
            if ref.kind == "TrafficSplit":
                by_split[(ref.namespace, ref.name)].append(finding)
    return by_split


def findings_for(findings: Iterable[Finding], kind: str, namespace: str, name: str) -> list[Finding]:
    """The findings that concern one object, to show next to it."""
    return [f for f in findings if f.concerns(kind, namespace, name)]
