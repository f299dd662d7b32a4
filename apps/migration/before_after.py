"""Before and after the move, for one namespace, between two clusters Meshboard collects (blue/green: the OSM cluster
and the new Istio one; the AKS Istio add-on cannot run beside the OSM add-on, so both are never one cluster at once).

- KPIs: each Service of the namespace with its latest collected KPIs in both clusters, side by side.
- Policy: for every caller's service account meshed in both clusters and every service account behind a Service
  of the namespace, what each cluster's live policy answers (`istio_access.current_policy`: SMI on OSM, the Istio
  evaluator over the AuthorizationPolicies on Istio), and whether they agree: the migration report's equivalence,
  checked against the objects the cluster really holds rather than the bundle.
Pure reads of the two snapshots; nothing is sent to either cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.clusters.models import Cluster
from apps.metrics.models import ServiceKPI
from apps.policies.istio_access import IstioAccess, current_policy
from apps.policies.model import WorkloadGroup
from apps.policies.smi_access import Identity, Policy, pair_policy
from apps.policies.snapshot import load as load_mesh


@dataclass(frozen=True)
class ServiceSide:
    request_rate: float | None
    success_rate: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class ServiceCompare:
    name: str
    before: ServiceSide | None  # None: no such Service (or no KPIs) in that cluster
    after: ServiceSide | None


@dataclass(frozen=True)
class PolicyCompare:
    source: Identity
    destination: Identity
    before: str  # allowed / denied / partly / "" (cannot be told)
    after: str

    @property
    def agrees(self) -> bool:
        return self.before == self.after


@dataclass(frozen=True)
class BeforeAfter:
    namespace: str
    before: Cluster
    after: Cluster
    before_mesh: str  # the mode each cluster's policy reports: smi, permissive, unknown, istio
    after_mesh: str
    services: list[ServiceCompare]
    policies: list[PolicyCompare]

    @property
    def differences(self) -> list[PolicyCompare]:
        return [p for p in self.policies if not p.agrees]


def _answer(policy: Policy | IstioAccess, source: Identity, destination: Identity) -> str:
    if isinstance(policy, IstioAccess):
        return policy.pair([source], [destination])
    return pair_policy(policy, [source], [destination])


def _sides(cluster: Cluster, namespace: str) -> dict[str, ServiceSide]:
    rows = ServiceKPI.objects.filter(cluster=cluster, namespace=namespace)
    return {r.service: ServiceSide(r.request_rate, r.success_rate, r.p99_ms) for r in rows}


def _served(groups: tuple[WorkloadGroup, ...], namespace: str) -> set[Identity]:
    return {g.identity for g in groups if g.namespace == namespace and g.ports}


def compare(before: Cluster, after: Cluster, namespace: str) -> BeforeAfter:
    old_mesh, new_mesh = load_mesh(before), load_mesh(after)
    old_policy, new_policy = current_policy(before), current_policy(after)
    old_kpis, new_kpis = _sides(before, namespace), _sides(after, namespace)
    names = sorted({s.name for s in (*old_mesh.services, *new_mesh.services) if s.namespace == namespace})
    services = [ServiceCompare(n, old_kpis.get(n), new_kpis.get(n)) for n in names]
    # Callers meshed on both sides: a caller outside one mesh (OSM's ingress controller, admitted by IngressBackends
    # rather than SMI) has no comparable answer there.
    meshed_before = {g.identity for g in old_mesh.groups if g.meshed}
    callers = sorted(meshed_before & {g.identity for g in new_mesh.groups if g.meshed})
    destinations = sorted(_served(old_mesh.groups, namespace) | _served(new_mesh.groups, namespace))
    policies = [
        PolicyCompare(src, dst, _answer(old_policy, src, dst), _answer(new_policy, src, dst))
        for dst in destinations
        for src in callers
    ]
    return BeforeAfter(namespace, before, after, old_policy.mode, new_policy.mode, services, policies)
