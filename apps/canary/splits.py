"""TrafficSplits as the splits page shows them: configured weights beside the observed share of each backend."""

from __future__ import annotations

from dataclasses import dataclass

from apps.clusters.models import Cluster
from apps.mesh.models import TrafficSplit
from apps.metrics.models import SplitShare

DISAGREEMENT_POINTS = 10.0


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
        w = _number(self.weight)
        if w is None:
            return "not a number"
        if w < 0:
            return "negative: OSM casts it to uint32 and it wraps around"
        if w != int(w):
            return "not a whole number: OSM cannot decode it"
        return ""

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

    @property
    def problems(self) -> list[str]:
        found = [f"{b.service}: weight {b.weight} is {b.weight_problem}" for b in self.backends if b.weight_problem]
        if self.total_weight is not None and self.total_weight < 1:
            found.append("weights sum to less than 1: OSM drops the route and traffic to the root fails")
        return found


def split_views(cluster: Cluster) -> list[SplitView]:
    shares = {(s.namespace, s.split, s.backend): s for s in SplitShare.objects.filter(cluster=cluster)}
    views = []
    for split in TrafficSplit.objects.filter(cluster=cluster).order_by("namespace", "name"):
        weights = [_number(b.get("weight")) for b in split.backends]
        valid = [w for w in weights if w is not None and w >= 0]
        total = sum(valid) if len(valid) == len(weights) else None
        backends = []
        window = None
        for backend, weight in zip(split.backends, weights, strict=True):
            share = shares.get((split.namespace, split.name, backend.get("service", "")))
            window = window or (share.short_window_seconds if share else None)
            backends.append(
                BackendView(
                    service=backend.get("service", ""),
                    weight=backend.get("weight"),
                    percent=(weight / total * 100) if total and weight is not None else None,
                    observed_short=share.share_short * 100 if share and share.share_short is not None else None,
                    observed_5m=share.share_5m * 100 if share and share.share_5m is not None else None,
                    request_rate=share.request_rate if share else None,
                )
            )
        views.append(SplitView(split=split, backends=backends, total_weight=total, short_window_seconds=window))
    return views
