"""Before and after a cut-over on ONE cluster: OSM uninstalled and Istio installed in the same cluster (the AKS Istio
add-on cannot run beside the OSM add-on, so many users move in place rather than to a new cluster).

- When: the last time the configuration history saw OSM's MeshConfig go away on a cluster now read as Istio (the
  collector stores the MeshConfig while OSM runs, none once it is gone), or a time the user gives.
- KPIs: each Service of the namespace over the last OSM week before the cut-over (OSM's catalog: the callers'
  Envoy cluster stats) beside the first Istio days after it (Istio's catalog: istio_requests_total, destination
  reporter), both asked of the cluster's one Prometheus as the pages' "as of" asks it (`kpis_at`: the cycle's
  fixed set of queries, each a rate over the whole window, within the charts' deadline; "metrics unavailable"
  when Prometheus cannot answer).
- Policy: the SMI policy as the history last held it before the cut-over (what the migration assistant's report
  was made from) against the live AuthorizationPolicies judged by the Istio evaluator, pair by pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from apps.clusters.models import Cluster
from apps.history import services as history
from apps.history.models import Change, Kind, Version
from apps.mesh.models import MeshState
from apps.metrics import istio_catalog
from apps.metrics.as_of import PastKPIs, kpis_at
from apps.metrics.catalog import Available
from apps.policies.istio_access import IstioAccess, current_policy
from apps.policies.smi_access import load_policy_as_of
from apps.policies.snapshot import load as load_mesh

from .before_after import PolicyCompare, ServiceCompare, ServiceSide, _answer, _served

WEEK = timedelta(days=7)
# What both sides can be compared on: requests, bytes and latency. OSM's TLS, refusal and resilience stats have no
# Istio counterpart in the standard metrics, so they are not asked.
OSM_COMPARABLE = Available("envoy", tls=False, denials=False, passthrough=False, resilience=frozenset(), ingress=False)
ISTIO_COMPARABLE = istio_catalog.available({istio_catalog.LATENCY})


def detected_cutover(cluster: Cluster) -> datetime | None:
    """When the history saw OSM's MeshConfig deleted, if the cluster is read as Istio now; else None."""
    state = MeshState.objects.filter(cluster=cluster).only("istio_revisions", "osm_version", "mesh_name").first()
    if state is None or not state.is_istio:
        return None
    # Unscoped: the MeshConfig lives in OSM's control-plane namespace, which a namespace-limited user does not see,
    # but when the mesh changed is no secret of that namespace.
    deleted = (
        Version._base_manager.filter(cluster=cluster, kind=Kind.MESH_CONFIG, change=Change.DELETED)
        .order_by("-recorded_at")
        .values_list("recorded_at", flat=True)
        .first()
    )
    return deleted


@dataclass(frozen=True)
class Cutover:
    cluster: Cluster
    namespace: str
    at: datetime
    detected: bool  # from the history (True) or given by the user
    before_from: datetime
    after_until: datetime
    before_unavailable: str  # why the OSM side has no KPIs ("" when it has)
    after_unavailable: str
    services: list[ServiceCompare]
    before_mesh: str
    after_mesh: str
    policies: list[PolicyCompare]
    policy_unavailable: str  # why no policy answers ("" when there are)
    queries: int

    @property
    def differences(self) -> list[PolicyCompare]:
        return [p for p in self.policies if not p.agrees]

    @property
    def after_days(self) -> float:
        return (self.after_until - self.at).total_seconds() / 86400


def _sides(kpis: PastKPIs, namespace: str) -> dict[str, ServiceSide]:
    return {
        svc: ServiceSide(row.get("request_rate"), row.get("success_rate"), row.get("p99_ms"))
        for (ns, svc), row in kpis.services.items()
        if ns == namespace
    }


def _policies(cluster: Cluster, namespace: str, at: datetime) -> tuple[str, str, list[PolicyCompare], str]:
    """The SMI policy of just before `at` (from the history) against the live Istio policy, for every meshed caller
    and every service account behind a Service of the namespace (pods as last collected: the history keeps none)."""
    after = current_policy(cluster)
    start = history.complete_from(cluster)
    just_before = at - timedelta(microseconds=1)
    if start is None or start > just_before:
        why = f"the configuration history of cluster {cluster.name} holds nothing before {at:%Y-%m-%d %H:%M:%S} UTC"
        return "unknown", after.mode, [], why
    before = load_policy_as_of(cluster, just_before)
    if not isinstance(after, IstioAccess):
        return before.mode, after.mode, [], f"cluster {cluster.name} is not read as an Istio mesh now"
    mesh = load_mesh(cluster)
    callers = sorted({g.identity for g in mesh.groups if g.meshed})
    destinations = sorted(_served(mesh.groups, namespace))
    pairs = [
        PolicyCompare(src, dst, _answer(before, src, dst), _answer(after, src, dst))
        for dst in destinations
        for src in callers
    ]
    return before.mode, after.mode, pairs, ""


def compare(cluster: Cluster, namespace: str, at: datetime, *, detected: bool, now: datetime | None = None) -> Cutover:
    now = now or timezone.now()
    before_from = at - WEEK
    after_until = min(now, at + WEEK)
    # The TrafficSplits as last collected before the cut-over (the collection that saw OSM go saw them go too).
    splits = history.splits_as_of(cluster, at - timedelta(microseconds=1))
    old = kpis_at(cluster, at, splits, mesh="osm", available=OSM_COMPARABLE, window=WEEK.total_seconds())
    if after_until > at:
        span = (after_until - at).total_seconds()
        new = kpis_at(cluster, after_until, None, mesh="istio", available=ISTIO_COMPARABLE, window=span)
    else:
        new = PastKPIs(at=after_until, unavailable="no Istio days yet: the cut-over is now")
    old_sides, new_sides = _sides(old, namespace), _sides(new, namespace)
    names = sorted({s.name for s in load_mesh(cluster).services if s.namespace == namespace} | set(old_sides))
    names = sorted(set(names) | set(new_sides))
    services = [ServiceCompare(n, old_sides.get(n), new_sides.get(n)) for n in names]
    before_mesh, after_mesh, policies, policy_unavailable = _policies(cluster, namespace, at)
    return Cutover(
        cluster=cluster,
        namespace=namespace,
        at=at,
        detected=detected,
        before_from=before_from,
        after_until=after_until,
        before_unavailable=old.unavailable or "; ".join(old.failed),
        after_unavailable=new.unavailable or "; ".join(new.failed),
        services=services,
        before_mesh=before_mesh,
        after_mesh=after_mesh,
        policies=policies,
        policy_unavailable=policy_unavailable,
        queries=old.queries + new.queries,
    )
