"""What the weight editor shows beside the form, read from the snapshot: per backend the observed share, success,
p99, health and what would make its share fail; the Services that could join the split; the split's own findings."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from apps.mesh.models import Service, TrafficSplit
from apps.metrics.health import DEGRADED, FAILING, assess
from apps.metrics.models import ServiceKPI, SplitShare
from apps.policies.checks import Finding, split_findings


@dataclass(frozen=True)
class BackendFacts:
    observed_short: float | None  # 0..100
    success_rate: float | None
    p99_ms: float | None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EditorFacts:
    backends: dict[str, BackendFacts]
    candidates: list[str]  # Services of the namespace that carry the root's port and are not backends yet
    findings: list[Finding]  # the mesh checks on the split as stored (another split on the root, ...)


def backend_warnings(name: str, service: Service | None, kpi: ServiceKPI | None) -> list[str]:
    """Why traffic weighted to this backend would fail or suffer now."""
    if service is None:
        return [f"There is no Service {name}: OSM skips this backend."]
    warnings = []
    if service.pods_total == 0:
        warnings.append("No pod behind this Service: its share of the traffic fails.")
    else:
        if service.pods_meshed < service.pods_total:
            missing = service.pods_total - service.pods_meshed
            warnings.append(f"{missing} of {service.pods_total} pods have no sidecar: they cannot answer mesh traffic.")
        if service.pods_ready == 0:
            warnings.append(f"No ready pod (0/{service.pods_total}): its share of the traffic fails.")
    health = assess(
        request_rate=kpi.request_rate if kpi else None,
        rate_4xx=kpi.rate_4xx if kpi else None,
        rate_5xx=kpi.rate_5xx if kpi else None,
        pods_total=service.pods_total,
        pods_ready=service.pods_ready,
        tolerances=settings.MESHBOARD_HEALTH,
    )
    if health.status in (DEGRADED, FAILING) and service.pods_ready:
        warnings.append(f"{health.status.capitalize()} now: {'; '.join(health.reasons)}.")
    return warnings


def editor_facts(split: TrafficSplit, names: list[str]) -> EditorFacts:
    """Facts for the backends `names` (the form's rows, which may differ from the split's) in a fixed number of
    queries."""
    services = {s.name: s for s in Service.objects.filter(cluster=split.cluster, namespace=split.namespace)}
    shares = {
        s.backend: s.share_short
        for s in SplitShare.objects.filter(cluster=split.cluster, namespace=split.namespace, split=split.name)
    }
    kpis = {
        k.service: k
        for k in ServiceKPI.objects.filter(cluster=split.cluster, namespace=split.namespace, service__in=names)
    }
    backends = {
        name: BackendFacts(
            observed_short=shares[name] * 100 if shares.get(name) is not None else None,
            success_rate=kpis[name].success_rate if name in kpis else None,
            p99_ms=kpis[name].p99_ms if name in kpis else None,
            warnings=backend_warnings(name, services.get(name), kpis.get(name)),
        )
        for name in names
    }
    root = services.get(split.root_service_name)
    candidates = sorted(
        s.name
        for s in services.values()
        if s.name not in names and s.name != split.root_service_name and not s.port_gap(root)
    )
    findings = [
        f
        for f in split_findings(split.cluster).get((split.namespace, split.name), [])
        if f.code in ("MB-SPLIT-001", "MB-SPLIT-007")  # about the split as a whole; backends are judged above
    ]
    return EditorFacts(backends=backends, candidates=candidates, findings=findings)
