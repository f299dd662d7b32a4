"""TrafficSplits as the splits page shows them: configured weights beside the observed share of each backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from apps.clusters.models import Cluster
from apps.mesh.decode import k8s_time
from apps.mesh.istio_splits import VirtualServiceSplit, virtual_service_splits
from apps.mesh.models import Canary, Service, TrafficSplit, weight_problem
from apps.metrics.catalog import windows
from apps.metrics.models import MetricsState, ServiceKPI, SplitShare
from apps.policies.checks import Finding, flagger_canaries, split_findings

from .editor import backend_warnings
from .followup import SET_BACK_WINDOW
from .models import WeightChange

DISAGREEMENT_POINTS = 10.0


@dataclass(frozen=True)
class BackendView:
    service: str
    weight: object  # as stored: may be 33.5 or -1, which the page shows and flags
    percent: float | None  # the weight's share of the total, 0..100
    observed_short: float | None  # 0..100
    observed_5m: float | None
    request_rate: float | None
    waiting: bool = False  # no short window lies wholly after the last weight change yet
    sampled: bool = True  # False: no metrics cycle has measured this backend (no data, not "no traffic")
    success_rate: float | None = None  # the backend service's own KPIs, 0..1
    p99_ms: float | None = None
    # While the 5-minute window still reaches back before the last change, its share mixes both configurations
    # (a removed backend's traffic is not in the total): the time it will be clean, else None.
    long_clean_at: datetime | None = None
    warnings: tuple[str, ...] = ()  # why its share would fail or suffer now (no sidecar, no ready pod, degraded)

    @property
    def weight_problem(self) -> str:
        return weight_problem(self.weight)

    @property
    def disagrees(self) -> bool:
        """Configured and observed (short window) differ by more than 10 points, in a window after the change."""
        if self.waiting or self.percent is None or self.observed_short is None:
            return False
        return abs(self.percent - self.observed_short) > DISAGREEMENT_POINTS


@dataclass(frozen=True)
class SplitView:
    split: TrafficSplit
    backends: list[BackendView]
    total_weight: float | None
    short_window_seconds: int | None
    # The mesh checks (apps.policies.checks) that concern this split: weights, duplicate roots, backends, Flagger.
    findings: tuple[Finding, ...] = field(default=())
    waiting: bool = False  # "waiting for the first sample after the change"
    changed_at: datetime | None = None
    undone_notice: str = ""  # a recent Meshboard write another manager replaced
    canaries: tuple[str, ...] = ()  # the Flagger Canaries driving it that the snapshot holds (their pages are linked)

    @property
    def problems(self) -> list[str]:
        return [f"{f.code} {f.message}. Fix: {f.fix}" for f in self.findings if f.severity != "info"]


def _last_changes(cluster: Cluster) -> dict[tuple[str, str], WeightChange]:
    """The latest Meshboard write of each split within the set-back window."""
    recent = WeightChange.objects.filter(
        WeightChange.changed(), cluster=cluster, created_at__gte=timezone.now() - SET_BACK_WINDOW
    ).order_by("created_at")
    return {(c.namespace, c.split): c for c in recent}


def _changed_at(split: TrafficSplit, ours: WeightChange | None) -> datetime | None:
    """When the weights last changed, by anyone: the latest managedFields time, or our own record of a write."""
    times = [t for t in (k8s_time((split.last_writer or {}).get("time", "")), ours and ours.created_at) if t]
    return max(times) if times else None


def _waiting(changed_at: datetime | None, shares: list[SplitShare]) -> bool:
    if changed_at is None:
        return False
    windows = [s.collected_at - timedelta(seconds=s.short_window_seconds or 0) for s in shares]
    return not windows or min(windows) < changed_at


def _canaries(split: TrafficSplit, canaries: list[Canary]) -> tuple[str, ...]:
    """The Canaries driving `split` that have a page: an ownerReference may name one the snapshot does not hold (the
    mesh check MB-SPLIT-008 still names it)."""
    held = {c.name for c in canaries}
    return tuple(name for name in flagger_canaries(split, canaries) if name in held)


def split_views(cluster: Cluster) -> list[SplitView]:
    shares = {(s.namespace, s.split, s.backend): s for s in SplitShare.objects.filter(cluster=cluster)}
    services = {(s.namespace, s.name): s for s in Service.objects.filter(cluster=cluster)}
    kpis = {(k.namespace, k.service): k for k in ServiceKPI.objects.filter(cluster=cluster)}
    findings = split_findings(cluster)
    changes = _last_changes(cluster)
    state = MetricsState.objects.filter(cluster=cluster).only("scrape_interval_seconds").first()
    long_window = timedelta(seconds=windows(state.scrape_interval_seconds if state else 15.0).long)
    canaries = list(Canary.objects.filter(cluster=cluster))
    views = []
    for split in TrafficSplit.objects.filter(cluster=cluster).order_by("namespace", "name"):
        mine = [
            shares[k] for b in split.backends if (k := (split.namespace, split.name, b.get("service", ""))) in shares
        ]
        ours = changes.get((split.namespace, split.name))
        changed_at = _changed_at(split, ours)
        waiting = _waiting(changed_at, mine)
        backends = []
        window = None
        for backend, percent in zip(split.backends, split.weight_percents(), strict=True):
            name = str(backend.get("service", ""))
            share = shares.get((split.namespace, split.name, name))
            window = window or (share.short_window_seconds if share else None)
            kpi = kpis.get((split.namespace, name))
            clean_at = changed_at + long_window if changed_at else None
            backends.append(
                BackendView(
                    service=backend.get("service", ""),
                    weight=backend.get("weight"),
                    percent=percent,
                    observed_short=share.share_short * 100 if share and share.share_short is not None else None,
                    observed_5m=share.share_5m * 100 if share and share.share_5m is not None else None,
                    request_rate=share.request_rate if share else None,
                    waiting=waiting,
                    sampled=share is not None,
                    success_rate=kpi.success_rate if kpi else None,
                    p99_ms=kpi.p99_ms if kpi else None,
                    long_clean_at=clean_at if share and clean_at and share.collected_at < clean_at else None,
                    warnings=tuple(backend_warnings(name, services.get((split.namespace, name)), kpi)),
                )
            )
        views.append(
            SplitView(
                split=split,
                backends=backends,
                total_weight=split.total_weight,
                short_window_seconds=window,
                findings=tuple(findings.get((split.namespace, split.name), ())),
                waiting=waiting,
                changed_at=changed_at,
                undone_notice=ours.undone_notice if ours else "",
                canaries=_canaries(split, [c for c in canaries if c.namespace == split.namespace]),
            )
        )
    return views


@dataclass(frozen=True)
class IstioSplitView:
    """A VirtualService that splits a root (apps.mesh.istio_splits): weights beside observed shares, read-only
    (Meshboard writes TrafficSplits only)."""

    split: VirtualServiceSplit
    backends: list[BackendView]
    total_weight: float | None
    short_window_seconds: int | None


def istio_split_views(cluster: Cluster) -> list[IstioSplitView]:
    shares = {(s.namespace, s.split, s.backend): s for s in SplitShare.objects.filter(cluster=cluster)}
    kpis = {(k.namespace, k.service): k for k in ServiceKPI.objects.filter(cluster=cluster)}
    views = []
    for split in virtual_service_splits(cluster):
        backends, window = [], None
        for backend, percent in zip(split.backends, split.weight_percents(), strict=True):
            share = shares.get((split.namespace, split.name, backend["service"]))
            window = window or (share.short_window_seconds if share else None)
            kpi = kpis.get((split.namespace, backend["service"]))
            backends.append(
                BackendView(
                    service=backend["service"],
                    weight=backend["weight"],
                    percent=percent,
                    observed_short=share.share_short * 100 if share and share.share_short is not None else None,
                    observed_5m=share.share_5m * 100 if share and share.share_5m is not None else None,
                    request_rate=share.request_rate if share else None,
                    sampled=share is not None,
                    success_rate=kpi.success_rate if kpi else None,
                    p99_ms=kpi.p99_ms if kpi else None,
                )
            )
        views.append(IstioSplitView(split, backends, split.total_weight, window))
    return views
