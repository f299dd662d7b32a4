"""Is the canary as good as the baseline? Verdicts per metric, each with the evidence it rests on.

- Success rate: a two-proportion z-test on the 5xx counts of each side over the window. A difference is called when
  it is larger than chance explains (two-sided p < ALPHA). When it is not, the sample size decides what can be said:
  if a difference of DETECTABLE_POINTS would likely have been seen (80 % power at ALPHA), "no difference larger than
  …"; otherwise "not enough traffic to tell", with the number of requests per side it would take.
- Latency: the histograms' buckets over the window. The bound is the first bucket bound at or above the baseline's
  p95; the share of each side's requests slower than it is compared with the same test (5 % for the baseline by
  construction, so a slower canary shows as a larger share), beside p50/p95/p99 from the buckets.
No verdict on request rate or TCP: they follow the weights and the callers, not the canary's quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from apps.metrics.compare import BackendCounts

ALPHA = 0.01  # a verdict is called when chance would explain the difference less than 1 time in 100
Z_ALPHA = 2.576  # two-sided, ALPHA = 0.01
Z_POWER = 0.842  # 80 % power
DETECTABLE_POINTS = {"success": 1.0, "latency": 5.0}  # the smallest difference worth telling apart, in points
MIN_RATE = 0.01  # a floor for the expected proportion, so "0 errors on both sides" still needs a real sample


@dataclass(frozen=True)
class ProportionTest:
    """A two-proportion z-test: `hits` of `total` on each side."""

    baseline_hits: float
    baseline_total: float
    canary_hits: float
    canary_total: float

    @property
    def baseline_share(self) -> float | None:
        return self.baseline_hits / self.baseline_total if self.baseline_total > 0 else None

    @property
    def canary_share(self) -> float | None:
        return self.canary_hits / self.canary_total if self.canary_total > 0 else None

    @property
    def pooled(self) -> float:
        total = self.baseline_total + self.canary_total
        return (self.baseline_hits + self.canary_hits) / total if total > 0 else 0.0

    @property
    def z(self) -> float | None:
        if self.baseline_share is None or self.canary_share is None:
            return None
        p = self.pooled
        se = math.sqrt(p * (1 - p) * (1 / self.baseline_total + 1 / self.canary_total))
        diff = self.canary_share - self.baseline_share
        if se == 0:
            return 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return diff / se

    @property
    def p_value(self) -> float | None:
        z = self.z
        return None if z is None else math.erfc(abs(z) / math.sqrt(2))

    @property
    def detectable(self) -> float | None:
        """The smallest difference (0..1) this sample would likely reveal: (z_alpha + z_power) x the standard error
        at the pooled rate (floored at MIN_RATE)."""
        if self.baseline_total <= 0 or self.canary_total <= 0:
            return None
        p = min(max(self.pooled, MIN_RATE), 1 - MIN_RATE)
        return (Z_ALPHA + Z_POWER) * math.sqrt(p * (1 - p) * (1 / self.baseline_total + 1 / self.canary_total))

    def needed_per_side(self, points: float) -> int:
        """Requests per side for a difference of `points` to be detectable at the pooled rate."""
        p = min(max(self.pooled, MIN_RATE), 1 - MIN_RATE)
        d = points / 100
        return math.ceil(2 * p * (1 - p) * ((Z_ALPHA + Z_POWER) / d) ** 2)


@dataclass(frozen=True)
class Verdict:
    metric: str  # "success" or "latency"
    outcome: str  # "worse", "better", "same", "not enough traffic", "no data"
    sentence: str
    test: ProportionTest | None = None
    bound_ms: float | None = None  # latency: the bucket bound compared

    @property
    def css(self) -> str:
        return self.outcome.replace(" ", "-")


def _points(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.2f} %".replace(".00 %", " %")


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _decide(metric: str, test: ProportionTest, name: str, baseline: str, worse_when_higher: bool, what: str) -> Verdict:
    p, detectable = test.p_value, test.detectable
    if p is None or detectable is None:
        return Verdict(
            metric,
            "no data",
            f"no data: {baseline if test.baseline_total <= 0 else name} had no requests in the window",
            test,
        )
    evidence = (
        f"{what}: {name} {_points(test.canary_share)} of {_count(test.canary_total)} requests, "
        f"{baseline} {_points(test.baseline_share)} of {_count(test.baseline_total)}"
    )
    limit = DETECTABLE_POINTS[metric]
    if p < ALPHA:
        higher = (test.canary_share or 0) > (test.baseline_share or 0)
        outcome = "worse" if higher == worse_when_higher else "better"
        diff = abs((test.canary_share or 0) - (test.baseline_share or 0)) * 100
        return Verdict(
            metric,
            outcome,
            f"{name} {outcome} than {baseline} by {diff:.2f} points ({evidence}); chance would explain a gap this "
            f"large with p = {p:.2g}",
            test,
        )
    if detectable * 100 > limit:
        return Verdict(
            metric,
            "not enough traffic",
            f"not enough traffic to tell: {evidence}; with these counts only a gap above {detectable * 100:.1f} "
            f"points would show, and a {limit:g}-point gap needs about {_count(test.needed_per_side(limit))} "
            f"requests per side",
            test,
        )
    return Verdict(
        metric,
        "same",
        f"no difference larger than {detectable * 100:.1f} points ({evidence}; p = {p:.2g})",
        test,
    )


def success_verdict(baseline: BackendCounts, canary: BackendCounts) -> Verdict:
    test = ProportionTest(baseline.errors, baseline.requests, canary.errors, canary.requests)
    return _decide("success", test, canary.service, baseline.service, True, "5xx responses")


def _at_or_below(buckets: dict[float, float], bound: float) -> float:
    """The cumulative count at `bound` (the largest bucket bound not above it), made monotonic as Prometheus does."""
    count = 0.0
    for b, c in sorted(buckets.items()):
        if b > bound:
            break
        count = max(count, c)
    return count


def latency_verdict(baseline: BackendCounts, canary: BackendCounts) -> Verdict:
    p95 = baseline.quantile(0.95)
    if p95 is None or canary.quantile(0.5) is None:
        return Verdict("latency", "no data", "no data: no latency histogram for one side in the window")
    bound = min((b for b in baseline.latency_buckets if b >= p95 and math.isfinite(b)), default=None)
    if bound is None:
        return Verdict("latency", "no data", "no data: the baseline's p95 lies in the +Inf bucket")
    totals = [max(b.latency_buckets.values()) for b in (baseline, canary)]
    slower = [t - _at_or_below(b.latency_buckets, bound) for t, b in zip(totals, (baseline, canary), strict=True)]
    test = ProportionTest(slower[0], totals[0], slower[1], totals[1])
    verdict = _decide("latency", test, canary.service, baseline.service, True, f"requests slower than {bound:g} ms")
    return Verdict(verdict.metric, verdict.outcome, verdict.sentence, test, bound)
