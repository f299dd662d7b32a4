"""TrafficSplits as the splits page shows them: configured weights beside the observed share of each backend."""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.clusters.models import Cluster
from apps.mesh.models import TrafficSplit, weight_problem
from apps.metrics.models import SplitShare
from apps.policies.checks import Finding, split_findings

DISAGREEMENT_POINTS = 10.0


@dataclass(frozen=True)
class BackendView:
    service: str
    weight: object  # as stored: may be 33.5 or -1, which the page shows and flags
    percent: float | None  # the weight's share of the total, 0..100
    observed_short: float | None  # 0..100
    observed_5m: float | None
    request_rate: float | None

    @property
    def weight_problem(self) -> str:
        return weight_problem(self.weight)

    @property
    def disagrees(self) -> bool:
        """Configured and observed (short window) differ by more than 10 points."""
        if self.percent is None or self.observed_short is None:
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

    @property
    def problems(self) -> list[str]:
        return [f"{f.code} {f.message}. Fix: {f.fix}" for f in self.findings if f.severity != "info"]


def split_views(cluster: Cluster) -> list[SplitView]:
    shares = {(s.namespace, s.split, s.backend): s for s in SplitShare.objects.filter(cluster=cluster)}
    findings = split_findings(cluster)
    views = []
    for split in TrafficSplit.objects.filter(cluster=cluster).order_by("namespace", "name"):
        backends = []
        window = None
        for backend, percent in zip(split.backends, split.weight_percents(), strict=True):
            share = shares.get((split.namespace, split.name, backend.get("service", "")))
            window = window or (share.short_window_seconds if share else None)
            backends.append(
                BackendView(
                    service=backend.get("service", ""),
                    weight=backend.get("weight"),
                    percent=percent,
                    observed_short=share.share_short * 100 if share and share.share_short is not None else None,
                    observed_5m=share.share_5m * 100 if share and share.share_5m is not None else None,
                    request_rate=share.request_rate if share else None,
                )
            )
        views.append(
            SplitView(
                split=split,
                backends=backends,
                total_weight=split.total_weight,
                short_window_seconds=window,
                findings=tuple(findings.get((split.namespace, split.name), ())),
            )
        )
    return views
