"""Snapshot tables: the latest normalized view of each cluster's mesh, written by the collector, read by pages.

Rows are keyed by (cluster, namespace, name) and kept in step with the cluster each run: new and changed rows are
upserted, rows whose object is gone are deleted, unchanged rows (same `digest`) are not touched, so ids stay stable
while an object lives and a quiet cluster costs one read per table.
Every string from the cluster is stored as-is (escaping is the pages' job).
"""

from __future__ import annotations

import uuid

from django.db import models

from apps.clusters.models import Cluster
from apps.clusters.scope import NamespaceRowsScoped, NamespaceScoped


def selects(selector: dict, labels: dict) -> bool:
    """A Service selector picks a pod when every key=value of a non-empty selector is among the pod's labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def sidecar_coverage(pods_total: int, pods_meshed: int) -> str:
    """How many of a group's pods carry the sidecar: "all", "some", "none", or "unknown" (no pods)."""
    if not pods_total:
        return "unknown"
    if pods_meshed == pods_total:
        return "all"
    return "some" if pods_meshed else "none"


def mtls_state(pods_total: int, pods_meshed: int) -> str:
    """OSM encrypts all in-mesh traffic, so a service is mTLS when every pod behind it has the sidecar."""
    return {"all": "mtls", "some": "partial", "none": "off"}.get(sidecar_coverage(pods_total, pods_meshed), "unknown")


def edge_lock(source_coverage: str, destination_coverage: str) -> str:
    """An edge's encryption from both ends' sidecar coverage: "mtls" when every pod at both ends is meshed, "plain"
    when an end has none, "partial" between, "unknown" when an end is not in the snapshot."""
    ends = (source_coverage, destination_coverage)
    if "unknown" in ends:
        return "unknown"
    if ends == ("all", "all"):
        return "mtls"
    return "plain" if "none" in ends else "partial"


# TrafficSplit weights. The CRD types a weight as a number, so negatives and fractions are what clusters really hold;
# a string ("50") is not a weight. Every page and check reads weights through these functions.


def weight_number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def weight_problem(weight: object) -> str:
    """Why OSM cannot use this backend weight, or "" when it can."""
    w = weight_number(weight)
    if w is None:
        return "not a number"
    if w < 0:
        return "negative: OSM casts it to uint32 and it wraps around"
    if w != int(w):
        return "not a whole number: OSM cannot decode it"
    return ""


def weight_total(backends: list[dict]) -> float | None:
    """The sum of the weights when every one is a number >= 0, else None (no meaningful total)."""
    weights = [weight_number(b.get("weight")) for b in backends]
    if any(w is None or w < 0 for w in weights):
        return None
    return sum(weights)  # type: ignore[arg-type]


def weight_percents(backends: list[dict]) -> list[float | None]:
    """Each backend's share of the total weight, 0..100; all None when the weights have no meaningful total."""
    total = weight_total(backends)
    return [weight_number(b.get("weight")) / total * 100 if total else None for b in backends]  # type: ignore[operator]


def port_numbers(ports: list | tuple) -> set[object]:
    """The `port` of each of a Service's ports as stored ([{name, port, targetPort, protocol, appProtocol}])."""
    return {p.get("port") for p in ports if isinstance(p, dict)}


def port_gap(root_ports: list | tuple, backend_ports: list | tuple) -> list[str]:
    """The port numbers of a TrafficSplit's root Service that a backend Service lacks (OSM skips the backend on
    those ports), sorted as text. For `Service.port_gap` and the migration assistant's `ServiceInfo.port_gap`."""
    return sorted(map(str, port_numbers(root_ports) - port_numbers(backend_ports)))


def root_service_name(spec_service: str) -> str:
    """The apex's Service name: OSM accepts `svc`, `svc.ns`, `svc.ns.svc` ... `svc.ns.svc.cluster.local`."""
    return spec_service.split(".", 1)[0]


class SnapshotRow(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    namespace = models.CharField(max_length=253, blank=True)  # blank for cluster-scoped kinds
    name = models.CharField(max_length=253)
    uid = models.CharField(max_length=64, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    digest = models.CharField(max_length=32, blank=True)  # of the row's content, to skip unchanged rows

    objects = NamespaceScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta:
        abstract = True
        ordering = ["namespace", "name"]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def _unique(model: str) -> list[models.UniqueConstraint]:
    return [models.UniqueConstraint(fields=["cluster", "namespace", "name"], name=f"uniq_{model}_per_cluster")]


class MeshNamespace(SnapshotRow):
    monitored_by = models.CharField(max_length=253, blank=True)  # mesh name from openservicemesh.io/monitored-by
    sidecar_injection = models.CharField(max_length=32, blank=True)  # annotation value: enabled/disabled/blank
    # Istio's injection labels: `istio.io/rev` (a revision: the AKS add-on's asm-1-N) and upstream's
    # `istio-injection` (enabled/disabled), as written.
    istio_revision = models.CharField(max_length=63, blank=True)
    istio_injection = models.CharField(max_length=32, blank=True)
    metrics_enabled = models.BooleanField(default=False)
    ignored = models.BooleanField(default=False)  # openservicemesh.io/ignore label
    phase = models.CharField(max_length=32, blank=True)

    objects = NamespaceRowsScoped()  # a namespace-limited user reads only their namespaces (apps/clusters/scope.py)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("namespace")

    @property
    def injection_enabled(self) -> bool:
        return self.sidecar_injection.strip().lower() in {"enabled", "yes", "true"} or self.istio_injection_enabled

    @property
    def istio_injection_enabled(self) -> bool:
        """Istio's injector injects here: `istio-injection=enabled`, or a revision label without
        `istio-injection=disabled` (which wins over the revision, as in Istio's injector webhook selectors)."""
        injection = self.istio_injection.strip().lower()
        return injection == "enabled" or (bool(self.istio_revision) and injection != "disabled")


class Node(SnapshotRow):
    os = models.CharField(max_length=32, blank=True)
    architecture = models.CharField(max_length=32, blank=True)
    kubelet_version = models.CharField(max_length=64, blank=True)
    os_image = models.CharField(max_length=253, blank=True)
    ready = models.BooleanField(default=False)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("node")


class Service(SnapshotRow):
    type = models.CharField(max_length=32, blank=True)
    cluster_ip = models.CharField(max_length=64, blank=True)
    headless = models.BooleanField(default=False)
    ports = models.JSONField(default=list, blank=True)  # [{name, port, targetPort, protocol, appProtocol}]
    selector = models.JSONField(default=dict, blank=True)
    # Pods the selector picks in the service's namespace, counted by the collector so pages need no join.
    pods_total = models.PositiveIntegerField(default=0)
    pods_ready = models.PositiveIntegerField(default=0)
    pods_meshed = models.PositiveIntegerField(default=0)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("service")

    @property
    def mtls(self) -> str:
        return mtls_state(self.pods_total, self.pods_meshed)

    @property
    def port_numbers(self) -> set[object]:
        return port_numbers(self.ports)

    def port_gap(self, root: Service | None) -> list[str]:
        """The port numbers of a TrafficSplit's root that this backend Service lacks (OSM skips such a backend);
        none when the root is unknown."""
        return port_gap(root.ports, self.ports) if root is not None else []


class ServiceAccount(SnapshotRow):
    class Meta(SnapshotRow.Meta):
        constraints = _unique("serviceaccount")


class Workload(SnapshotRow):
    """A Deployment, StatefulSet, or a ReplicaSet that no Deployment owns."""

    kind = models.CharField(max_length=32)
    replicas = models.IntegerField(default=0)
    ready_replicas = models.IntegerField(default=0)
    selector = models.JSONField(default=dict, blank=True)
    service_account = models.CharField(max_length=253, blank=True)
    template_labels = models.JSONField(default=dict, blank=True)

    class Meta(SnapshotRow.Meta):
        constraints = [
            models.UniqueConstraint(fields=["cluster", "namespace", "kind", "name"], name="uniq_workload_per_cluster")
        ]


class Pod(SnapshotRow):
    phase = models.CharField(max_length=32, blank=True)
    ready = models.BooleanField(default=False)
    has_sidecar = models.BooleanField(default=False)
    proxy_uuid = models.CharField(max_length=64, blank=True)
    service_account = models.CharField(max_length=253, blank=True)
    node_name = models.CharField(max_length=253, blank=True)
    pod_ip = models.CharField(max_length=64, blank=True)
    workload_kind = models.CharField(max_length=32, blank=True)
    workload_name = models.CharField(max_length=253, blank=True)
    containers = models.JSONField(default=list, blank=True)  # [{name, image, ready, restartCount}]
    restarts = models.IntegerField(default=0)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("pod")


class EndpointSlice(SnapshotRow):
    service_name = models.CharField(max_length=253, blank=True)
    address_type = models.CharField(max_length=16, blank=True)
    ports = models.JSONField(default=list, blank=True)
    endpoints = models.JSONField(default=list, blank=True)  # [{addresses, ready, pod, node}]

    class Meta(SnapshotRow.Meta):
        constraints = _unique("endpointslice")


class TrafficSplit(SnapshotRow):
    root_service = models.CharField(max_length=253)  # spec.service as written (may be an FQDN form)
    backends = models.JSONField(default=list, blank=True)  # [{service, weight}] as stored in the cluster
    resource_version = models.CharField(max_length=64, blank=True)
    api_version = models.CharField(max_length=64, blank=True)
    owners = models.JSONField(default=list, blank=True)  # [{kind, name, apiVersion}] from ownerReferences
    # [{manager, operation, time}] from metadata.managedFields, oldest first: who wrote the split, and when.
    managers = models.JSONField(default=list, blank=True)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("trafficsplit")

    def gitops_managers(self) -> list[str]:
        """The GitOps controllers whose markers the split carries: they put the weights in Git back on their next sync.
        Argo CD tracks by the `argocd.argoproj.io/tracking-id` annotation (or its instance label); Flux's
        kustomize- and helm-controllers label what they apply."""
        labels, annotations = self.labels or {}, self.annotations or {}
        found = []
        argo = annotations.get(ARGO_TRACKING_ANNOTATION) or labels.get(ARGO_INSTANCE_LABEL)
        if argo:
            found.append(f"Argo CD (application {argo.split(':', 1)[0]})")
        for controller, prefix in FLUX_LABEL_PREFIXES.items():
            if any(key.startswith(f"{prefix}/") for key in labels):
                name = labels.get(f"{prefix}/name")
                where = f" ({labels.get(f'{prefix}/namespace', '')}/{name})" if name else ""
                found.append(f"Flux {controller}{where}")
        return found

    @property
    def last_writer(self) -> dict[str, str] | None:
        """The managedFields entry written last (manager, operation, RFC 3339 time), if the server keeps them."""
        return self.managers[-1] if self.managers else None

    @property
    def root_service_name(self) -> str:
        return root_service_name(self.root_service)

    @property
    def backend_services(self) -> list[str]:
        """The backends' Service names, in the split's order, leaving out malformed entries."""
        return [b["service"] for b in self.backends or [] if isinstance(b, dict) and b.get("service")]

    @property
    def total_weight(self) -> float | None:
        return weight_total(self.backends)

    def weight_percents(self) -> list[float | None]:
        return weight_percents(self.backends)


ARGO_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE_LABEL = "argocd.argoproj.io/instance"
FLUX_LABEL_PREFIXES = {"Kustomization": "kustomize.toolkit.fluxcd.io", "HelmRelease": "helm.toolkit.fluxcd.io"}


class TrafficTarget(SnapshotRow):
    destination = models.JSONField(default=dict, blank=True)  # {kind, name, namespace}
    sources = models.JSONField(default=list, blank=True)
    rules = models.JSONField(default=list, blank=True)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("traffictarget")


class HTTPRouteGroup(SnapshotRow):
    matches = models.JSONField(default=list, blank=True)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("httproutegroup")


class TCPRoute(SnapshotRow):
    matches = models.JSONField(default=dict, blank=True)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("tcproute")


class Canary(SnapshotRow):
    """A Flagger Canary: when one drives a TrafficSplit, Flagger rewrites its weights at every step."""

    target_ref = models.JSONField(default=dict, blank=True)
    service = models.JSONField(default=dict, blank=True)
    phase = models.CharField(max_length=64, blank=True)
    canary_weight = models.IntegerField(null=True, blank=True)
    provider = models.CharField(max_length=64, blank=True)  # spec.provider ("osm", "smi:v1alpha2", ...)
    metrics_server = models.CharField(max_length=512, blank=True)  # spec.metricsServer: Flagger's Prometheus for it
    ingress_ref = models.CharField(max_length=253, blank=True)  # spec.ingressRef.name ({{ ingress }} in queries)
    route_ref = models.CharField(max_length=253, blank=True)  # spec.routeRef.name ({{ route }})
    # spec.analysis (or the older spec.canaryAnalysis) as written: interval, threshold, maxWeight, stepWeight(s),
    # iterations, metrics [{name, interval, threshold, thresholdRange, templateRef, templateVariables, query}].
    analysis = models.JSONField(default=dict, blank=True)
    # status as written, but the large spec copies: failedChecks, iterations, lastTransitionTime, conditions.
    status = models.JSONField(default=dict, blank=True)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("canary")


class MetricTemplate(SnapshotRow):
    """A Flagger MetricTemplate: a query a Canary's analysis names, with the provider Flagger asks."""

    provider = models.JSONField(default=dict, blank=True)  # {type, address, secretRef: {name}, ...} as written
    query = models.TextField(blank=True)  # a Go template (apps/canary/flagger.py renders it)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("metrictemplate")


# OSM's policy API (policy.openservicemesh.io/v1alpha1), its MeshRootCertificate and the networking.k8s.io ingress
# kinds. Nothing admits these strings but OSM's validating webhook, which may be off: each field keeps the cluster's
# text as it is (typed: a list where the CRD has a list, text where it has a string) and pages escape it.


class Ingress(SnapshotRow):
    """A networking.k8s.io/v1 Ingress: which host and path an ingress controller sends to which backend Service."""

    ingress_class = models.CharField(max_length=253, blank=True)  # spec.ingressClassName, else the old annotation
    # One per rule path, and the default backend as host "" path "": [{host, path, path_type, service, port}], where
    # port is the Service port's number or name, as the Ingress names it.
    routes = models.JSONField(default=list, blank=True)
    tls = models.JSONField(default=list, blank=True)  # [{hosts, secret}]

    class Meta(SnapshotRow.Meta):
        constraints = _unique("ingress")


class IngressClass(SnapshotRow):
    controller = models.CharField(max_length=253, blank=True)  # spec.controller, e.g. k8s.io/ingress-nginx
    is_default = models.BooleanField(default=False)  # ingressclass.kubernetes.io/is-default-class: "true"

    class Meta(SnapshotRow.Meta):
        constraints = _unique("ingressclass")


class IngressBackend(SnapshotRow):
    """Which sources may reach which backend Service port from outside the mesh (OSM builds no ingress policy for
    a backend without one)."""

    # [{name, port (number or None), protocol, tls: {skipClientCertValidation, sniHosts} or None}]
    backends = models.JSONField(default=list, blank=True)
    # [{kind, name, namespace}], kind one of Service, AuthenticatedPrincipal, IPRange
    sources = models.JSONField(default=list, blank=True)
    matches = models.JSONField(default=list, blank=True)  # [{apiGroup, kind, name}]
    status = models.CharField(max_length=64, blank=True)  # status.currentStatus: committed, error
    status_reason = models.CharField(max_length=512, blank=True)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("ingressbackend")


class Egress(SnapshotRow):
    """Traffic the listed service accounts may send out of the mesh (only with featureFlags.enableEgressPolicy)."""

    sources = models.JSONField(default=list, blank=True)  # [{kind, name, namespace}]
    hosts = models.JSONField(default=list, blank=True)  # [str]
    ip_addresses = models.JSONField(default=list, blank=True)  # [str] CIDRs
    ports = models.JSONField(default=list, blank=True)  # [{number, protocol}]
    matches = models.JSONField(default=list, blank=True)  # [{apiGroup, kind, name}]: HTTPRouteGroups, for HTTP

    class Meta(SnapshotRow.Meta):
        constraints = _unique("egress")


class UpstreamTrafficSetting(SnapshotRow):
    """Connection limits, timeouts and local rate limits of one upstream host (a Service's FQDN)."""

    host = models.CharField(max_length=253, blank=True)
    connection_settings = models.JSONField(default=dict, blank=True)  # {tcp: {...}, http: {...}} as written
    rate_limit = models.JSONField(default=dict, blank=True)  # {local: {tcp: {...}, http: {...}}} as written
    http_routes = models.JSONField(default=list, blank=True)  # [{path, rateLimit: {local: {...}}}] as written
    status = models.CharField(max_length=64, blank=True)  # status.currentStatus

    class Meta(SnapshotRow.Meta):
        constraints = _unique("upstreamtrafficsetting")


class Retry(SnapshotRow):
    """How one service account's sidecars retry their requests to the listed Services (OSM applies it only with
    featureFlags.enableRetryPolicy)."""

    source = models.JSONField(default=dict, blank=True)  # {kind, name, namespace}
    destinations = models.JSONField(default=list, blank=True)  # [{kind, name, namespace}]
    retry_policy = models.JSONField(default=dict, blank=True)  # {retryOn, perTryTimeout, numRetries, ...}

    class Meta(SnapshotRow.Meta):
        constraints = _unique("retry")


# Istio's configuration kinds (networking.istio.io, security.istio.io). Each is kept as the cluster holds it: the
# spec as written (every reader tolerates missing or mistyped fields), and the apiVersion it was read at.


class IstioConfig(SnapshotRow):
    api_version = models.CharField(max_length=64, blank=True)
    spec = models.JSONField(default=dict, blank=True)

    class Meta(SnapshotRow.Meta):
        abstract = True

    def as_object(self, kind: str) -> dict:
        """The object as Istio's evaluators read it (`apps.policies.istio_eval`): metadata and spec."""
        return {
            "apiVersion": self.api_version,
            "kind": kind,
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels or {}},
            "spec": self.spec if isinstance(self.spec, dict) else {},
        }


class IstioVirtualService(IstioConfig):
    class Meta(IstioConfig.Meta):
        constraints = _unique("istiovirtualservice")


class IstioDestinationRule(IstioConfig):
    class Meta(IstioConfig.Meta):
        constraints = _unique("istiodestinationrule")


class IstioAuthorizationPolicy(IstioConfig):
    class Meta(IstioConfig.Meta):
        constraints = _unique("istioauthorizationpolicy")


class IstioPeerAuthentication(IstioConfig):
    class Meta(IstioConfig.Meta):
        constraints = _unique("istiopeerauthentication")


class IstioServiceEntry(IstioConfig):
    class Meta(IstioConfig.Meta):
        constraints = _unique("istioserviceentry")


class IstioGateway(IstioConfig):
    class Meta(IstioConfig.Meta):
        constraints = _unique("istiogateway")


# MeshRootCertificate status.state values (OSM v1.2.4 pkg/constants): a rotation goes through the validating and
# issuing states, in one direction for a rollout and back for a rollback.
MRC_ACTIVE, MRC_INACTIVE, MRC_ERROR = "active", "inactive", "error"
MRC_INTERMEDIATE_STATES = ("validatingRollout", "issuingRollout", "issuingRollback", "validatingRollback")


class MeshRootCertificate(SnapshotRow):
    """A root certificate of the mesh (OSM 1.2, config.openservicemesh.io/v1alpha2). v1.2.4's CRD has no role or
    intent field: what it has is the provider, the trust domain and the status's state."""

    trust_domain = models.CharField(max_length=253, blank=True)
    provider = models.CharField(max_length=32, blank=True)  # tresor, certManager, vault: the key spec.provider sets
    provider_spec = models.JSONField(default=dict, blank=True)  # that provider's settings, as written
    state = models.CharField(max_length=64, blank=True)  # status.state
    # When the state was last set, as far as the object tells: its newest status condition's lastTransitionTime, else
    # the last write of its status (managedFields), else its creation.
    state_since = models.DateTimeField(null=True, blank=True)

    class Meta(SnapshotRow.Meta):
        constraints = _unique("meshrootcertificate")

    @property
    def in_rotation(self) -> bool:
        return self.state in MRC_INTERMEDIATE_STATES


class MeshState(models.Model):
    """Cluster-wide facts from the last run: versions, the control plane, MeshConfig, installed CRDs."""

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="mesh_state")
    collected_at = models.DateTimeField()
    kubernetes_version = models.CharField(max_length=64, blank=True)
    kubernetes_platform = models.CharField(max_length=64, blank=True)
    control_plane_namespace = models.CharField(max_length=253, blank=True)
    mesh_name = models.CharField(max_length=253, blank=True)
    osm_version = models.CharField(max_length=64, blank=True)
    certificate_provider = models.CharField(max_length=64, blank=True)
    # The controller's --enable-mesh-root-certificate (OSM 1.2): None when it has no such flag (or no controller seen).
    mesh_root_certificates_enabled = models.BooleanField(null=True, blank=True)
    meshconfig_api_version = models.CharField(max_length=128, blank=True)
    meshconfig = models.JSONField(default=dict, blank=True)  # MeshConfig spec, as stored
    served_groups = models.JSONField(default=dict, blank=True)  # {group: [versions]} of the CRD groups we use
    apiserver_addresses = models.JSONField(default=list, blank=True)  # from default/kubernetes Endpoints
    is_aks = models.BooleanField(default=False)
    # Istio's control plane: the istiod Deployments' revisions (`istio.io/rev`; "default" for an unrevisioned one),
    # their namespace (istio-system, or aks-istio-system on the AKS add-on) and the first one's version (image tag).
    istio_revisions = models.JSONField(default=list, blank=True)
    istio_namespace = models.CharField(max_length=253, blank=True)
    istio_version = models.CharField(max_length=64, blank=True)
    # Drawn anew by every commit that changes the cluster's snapshot rows (a collection that wrote or deleted any, a
    # canary write's refresh of its split): what was read of the snapshot at one version holds while it is current.
    # Random rather than counted, so that no other cluster's or database's snapshot ever has the same version.
    snapshot_version = models.UUIDField(default=uuid.uuid4)

    def __str__(self) -> str:
        return f"{self.cluster}: {self.mesh_name or 'no mesh'} {self.osm_version}"

    @property
    def permissive_mode(self) -> bool | None:
        traffic = (self.meshconfig or {}).get("traffic") or {}
        value = traffic.get("enablePermissiveTrafficPolicyMode")
        return value if isinstance(value, bool) else None

    @property
    def is_istio(self) -> bool:
        """The mesh is Istio's: an istiod runs and no OSM controller does (the AKS add-ons cannot run together; a
        cluster with both is read as OSM, the mesh Meshboard knew first)."""
        return bool(self.istio_revisions) and not (self.osm_version or self.mesh_name)

    @property
    def mesh_kind(self) -> str:
        return "istio" if self.is_istio else "osm"

    @property
    def smi_installed(self) -> bool:
        return "split.smi-spec.io" in (self.served_groups or {})
