"""What the Mesh page shows about one cluster's mesh: key MeshConfig settings, namespaces, the checks, and the
metrics pre-flight (which series and labels Meshboard reads its Prometheus keeps: apps.metrics.preflight)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import Count, Q

from apps.clusters.freshness import Freshness, freshness
from apps.clusters.models import Cluster, CollectionRun
from apps.mesh.models import Egress, MeshNamespace, MeshState, Node, Pod
from apps.metrics import preflight as metrics_preflight
from apps.metrics.models import MetricsState

from . import osm_policy
from .checks import Finding, aks_evidence, run_checks
from .smi_access import PERMISSIVE, SMI, policy_mode

# (label, path in MeshConfig spec): the settings that change what the mesh allows, intercepts or reports.
KEY_SETTINGS = (
    ("Permissive traffic policy mode", ("traffic", "enablePermissiveTrafficPolicyMode")),
    ("Egress", ("traffic", "enableEgress")),
    ("Outbound IP range exclusions", ("traffic", "outboundIPRangeExclusionList")),
    ("Outbound IP range inclusions", ("traffic", "outboundIPRangeInclusionList")),
    ("Outbound port exclusions", ("traffic", "outboundPortExclusionList")),
    ("Inbound port exclusions", ("traffic", "inboundPortExclusionList")),
    ("Service certificate validity", ("certificate", "serviceCertValidityDuration")),
    ("Envoy log level", ("sidecar", "logLevel")),
    ("Local proxy mode", ("sidecar", "localProxyMode")),
    ("WASM stats", ("featureFlags", "enableWASMStats")),
    ("Egress policy", ("featureFlags", "enableEgressPolicy")),
    ("Retry policy", ("featureFlags", "enableRetryPolicy")),
    ("Debug server", ("observability", "enableDebugServer")),
    ("Tracing", ("observability", "tracing", "enable")),
)


def setting_text(value: object) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(empty)"
    return str(value)


def key_settings(meshconfig: dict) -> list[tuple[str, str]]:
    rows = []
    for label, path in KEY_SETTINGS:
        value: object = meshconfig or {}
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        rows.append((label, setting_text(value)))
    return rows


@dataclass(frozen=True)
class NamespaceRow:
    namespace: MeshNamespace
    pods: int
    meshed: int


@dataclass(frozen=True)
class MeshReport:
    state: MeshState | None
    mode: str
    settings: list[tuple[str, str]]
    namespaces: list[NamespaceRow]
    findings: list[Finding]
    aks: str  # why the cluster counts as AKS, "" if it does not
    egresses: list[osm_policy.EgressRow] = field(default_factory=list)
    certificates: osm_policy.Certificates | None = None

    @property
    def mode_text(self) -> str:
        return {PERMISSIVE: "permissive", SMI: "SMI (deny by default)"}.get(self.mode, "unknown")

    @property
    def egress_text(self) -> str:
        """Global egress (traffic.enableEgress): what pods may reach outside the mesh without an Egress policy."""
        value = osm_policy.flag(self.state.meshconfig if self.state else None, "traffic", "enableEgress")
        if value is None:
            return "unknown (no MeshConfig setting)"
        if value:
            return "on: meshed pods may reach any destination outside the mesh"
        return "off: meshed pods reach outside the mesh only where an Egress policy allows it"

    @property
    def egress_policy_text(self) -> str:
        value = osm_policy.flag(self.state.meshconfig if self.state else None, "featureFlags", "enableEgressPolicy")
        if value is None:
            return "unknown (no MeshConfig setting)"
        return "on: OSM applies Egress policies" if value else "off: OSM ignores Egress policies"


@dataclass(frozen=True)
class PreflightRow:
    kind: str  # "series" or "label"
    name: str
    status: str  # apps.metrics.preflight: present, missing, unchecked, not needed
    cost: str  # what goes blank without it
    reason: str  # why it could not be checked

    @property
    def status_text(self) -> str:
        return metrics_preflight.STATUS_TEXT.get(self.status, self.status)

    @property
    def css(self) -> str:
        return self.status.replace(" ", "-")


@dataclass(frozen=True)
class Preflight:
    """The last metrics pre-flight stored for a cluster (`checked_at` None: no metrics run has stored one)."""

    checked_at: datetime | None = None
    window_seconds: int = 0
    summary: str = ""
    rows: list[PreflightRow] = field(default_factory=list)
    advice: metrics_preflight.Advice | None = None

    @property
    def checked(self) -> bool:
        return self.checked_at is not None


def preflight_of(report: dict | None) -> Preflight:
    """The stored pre-flight (`MetricsState.preflight`) as the page shows it; anything unreadable is "not checked"."""
    if not isinstance(report, dict) or report.get("version") != metrics_preflight.VERSION:
        return Preflight()
    try:
        checked_at = datetime.fromtimestamp(float(report["checked_at"]), UTC)
        rows = [
            PreflightRow(
                str(i.get("kind", "")),
                str(i.get("name", "")),
                str(i.get("status", "")),
                str(i.get("cost", "")),
                str(i.get("reason", "")),
            )
            for i in report.get("items") or []
        ]
    except (KeyError, TypeError, ValueError, OverflowError, OSError, AttributeError):
        return Preflight()
    return Preflight(
        checked_at=checked_at,
        window_seconds=round(float(report.get("window_seconds") or 0)),
        summary=str(report.get("summary", "")),
        rows=rows,
        advice=metrics_preflight.advice(report),
    )


@dataclass(frozen=True)
class ClusterStatus:
    """One cluster on the Mesh page: how fresh each collection is, the mesh report once a snapshot exists, and the
    metrics pre-flight once a metrics run has stored one."""

    cluster: Cluster
    objects: Freshness
    metrics: Freshness
    report: MeshReport | None
    preflight: Preflight = field(default_factory=Preflight)


def cluster_statuses() -> list[ClusterStatus]:
    clusters = list(Cluster.objects.all())
    with_state = set(MeshState.objects.filter(cluster__in=clusters).values_list("cluster_id", flat=True))
    preflights = dict(MetricsState.objects.filter(cluster__in=clusters).values_list("cluster_id", "preflight"))
    return [
        ClusterStatus(
            cluster=cluster,
            objects=freshness(cluster, CollectionRun.Kind.CLUSTER),
            metrics=freshness(cluster, CollectionRun.Kind.METRICS),
            report=mesh_report(cluster) if cluster.pk in with_state else None,
            preflight=preflight_of(preflights.get(cluster.pk)),
        )
        for cluster in clusters
    ]


def mesh_report(cluster: Cluster) -> MeshReport:
    state = MeshState.objects.filter(cluster=cluster).first()
    counts = {
        row["namespace"]: row
        for row in Pod.objects.filter(cluster=cluster)
        .values("namespace")
        .annotate(total=Count("id"), meshed=Count("id", filter=Q(has_sidecar=True)))
    }
    namespaces = [
        NamespaceRow(ns, counts.get(ns.name, {}).get("total", 0), counts.get(ns.name, {}).get("meshed", 0))
        for ns in MeshNamespace.objects.filter(cluster=cluster).order_by("name")
    ]
    return MeshReport(
        state=state,
        mode=policy_mode(state),
        settings=key_settings(state.meshconfig) if state and state.meshconfig else [],  # none: no MeshConfig
        namespaces=namespaces,
        findings=run_checks(cluster),
        aks=aks_evidence(state, Node.objects.filter(cluster=cluster).only("labels")),
        egresses=[
            osm_policy.EgressRow(e) for e in Egress.objects.filter(cluster=cluster).order_by("namespace", "name")
        ],
        certificates=osm_policy.certificates(cluster, state),
    )
