"""The compare page's data: every backend of a split over one window, verdicts against a baseline, chart markers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from apps.core.windows import WINDOWS as CHART_WINDOWS
from apps.mesh.models import TrafficSplit, weight_number
from apps.metrics.compare import BackendCounts, WindowCounts, window_counts
from apps.metrics.models import success_ratio

from .evidence import Verdict, latency_verdict, success_verdict
from .markers import split_markers

# The windows a comparison can span (seconds): the charts' up to 6h, and shorter ones of its own because a canary
# step is minutes long.
WINDOWS = {"1m": 60, "5m": 300} | {key: CHART_WINDOWS[key].seconds for key in ("15m", "1h", "6h")}
DEFAULT_WINDOW = "15m"


@dataclass(frozen=True)
class BackendRow:
    service: str
    weight: object
    percent: float | None
    counts: BackendCounts
    seconds: int
    is_baseline: bool
    verdicts: tuple[Verdict, ...] = ()

    @property
    def request_rate(self) -> float | None:
        return self.counts.requests / self.seconds if self.seconds else None

    @property
    def p50_ms(self) -> float | None:
        return self.counts.quantile(0.5)

    @property
    def p95_ms(self) -> float | None:
        return self.counts.quantile(0.95)

    @property
    def p99_ms(self) -> float | None:
        return self.counts.quantile(0.99)

    @property
    def success_rate(self) -> float | None:
        return success_ratio(self.counts.requests, self.counts.errors)


@dataclass(frozen=True)
class Comparison:
    split: TrafficSplit
    window: str
    seconds: int
    baseline: str
    rows: list[BackendRow]
    counts: WindowCounts

    @property
    def until(self) -> datetime:
        return datetime.fromtimestamp(self.counts.at, UTC)


def pick_window(value: str) -> tuple[str, str]:
    """The window key to use and, for a value we do not offer, the message saying what was used instead."""
    if not value or value in WINDOWS:
        return value or DEFAULT_WINDOW, ""
    return (
        DEFAULT_WINDOW,
        f"unknown window {value[:20]!r}; showing {DEFAULT_WINDOW} (choose one of {', '.join(WINDOWS)})",
    )


def pick_until(value: str) -> tuple[float | None, str]:
    """`?until=` as unix seconds (None: now), so a link shows the window its sender saw; a bad value is said."""
    if not value:
        return None, ""
    try:
        until = float(value)
    except ValueError:
        until = None
    if until is None or not math.isfinite(until) or until <= 0:
        return None, f"until={value[:30]!r} is not a time in unix seconds; showing the window up to now"
    return until, ""


def default_baseline(split: TrafficSplit) -> str:
    """The backend with the largest weight (the first of equals): what the others are compared against."""
    best, best_weight = "", None
    for b in split.backends or []:
        weight = weight_number(b.get("weight")) if isinstance(b, dict) else None
        usable = weight is not None and b.get("service")
        if usable and (best_weight is None or weight > best_weight):
            best, best_weight = b["service"], weight
    return best or (split.backend_services[0] if split.backend_services else "")


def compare(split: TrafficSplit, window: str, baseline: str = "", *, at: float | None = None) -> Comparison:
    seconds = WINDOWS[window]
    backends = list(dict.fromkeys(split.backend_services))
    if baseline not in backends:
        baseline = default_baseline(split)
    counts = window_counts(split.cluster, split.namespace, backends, seconds, at=at)
    base = counts.backends.get(baseline)
    percents = dict(zip([b.get("service") for b in split.backends], split.weight_percents(), strict=True))
    weights = {b.get("service"): b.get("weight") for b in split.backends}
    rows = []
    for service in backends:
        mine = counts.backends[service]
        verdicts: tuple[Verdict, ...] = ()
        if base is not None and service != baseline and not counts.problem:
            verdicts = (success_verdict(base, mine), latency_verdict(base, mine))
        rows.append(
            BackendRow(
                service, weights.get(service), percents.get(service), mine, seconds, service == baseline, verdicts
            )
        )
    return Comparison(split, window, seconds, baseline, rows, counts)


def markers(split: TrafficSplit, since: datetime, until: datetime | None = None) -> list[dict]:
    """Weight changes since `since` for the charts: Meshboard's own writes from the audit, and every other writer's
    from the configuration history ("changed outside Meshboard by …", or Flagger's steps); see markers.py."""
    return split_markers(split.cluster, split.namespace, split.name, since, until, split=split)
