"""Quantiles from histogram buckets, computed as Prometheus 2.42's `histogram_quantile` computes them.

The metrics cycle fetches the bucket rates once per (edge, le) and sums them into services and split roots here,
instead of asking Prometheus for a quantile per grouping: one query instead of six, and a split root's quantile from
its backends' summed buckets. The rules (promql/quantile.go, `bucketQuantile`):
- the buckets are sorted by upper bound; the highest must be +Inf, else there is no answer;
- buckets with the same upper bound are merged (their counts added);
- counts are made monotonic (a count lower than an earlier one is raised to it), as `rate()` of separate counters can
  give slightly non-monotonic buckets;
- fewer than two buckets, or no observations, give no answer;
- rank = q x observations; the first bucket whose count reaches the rank holds the quantile; in the +Inf bucket the
  answer is the second-highest bound; in the first bucket with a bound <= 0 it is that bound; otherwise the answer is
  interpolated linearly inside the bucket, from the previous bound (0 for the first bucket).
"No answer" (NaN in Prometheus) is None here: unknown, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Buckets = dict[float, float]  # upper bound -> cumulative count (or rate)


def parse_le(value: str) -> float | None:
    """A bucket's `le` label as a float ("+Inf" included); None when it is not a number (Prometheus skips those)."""
    try:
        bound = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(bound) else bound


def add(into: Buckets, buckets: Mapping[float, float]) -> None:
    """Adds `buckets` to `into`, bound by bound (how `sum by (..., le)` aggregates)."""
    for bound, count in buckets.items():
        into[bound] = into.get(bound, 0.0) + count


def quantile(q: float, buckets: Mapping[float, float] | Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative `buckets` ({upper bound: count}); None where Prometheus answers NaN."""
    return quantiles((q,), buckets)[0]


def quantiles(
    qs: Iterable[float], buckets: Mapping[float, float] | Iterable[tuple[float, float]]
) -> list[float | None]:
    """Several quantiles of the same buckets, sorting and smoothing them once (the cycle asks three per series)."""
    prepared = _prepare(buckets)
    return [_quantile(q, prepared) for q in qs]


def _prepare(buckets: Mapping[float, float] | Iterable[tuple[float, float]]) -> list[tuple[float, float]] | None:
    """Sorted (bound, count) pairs with equal bounds merged and counts made monotonic; None when no quantile can
    be read from them (no +Inf bucket, fewer than two buckets, no observations)."""
    pairs = buckets.items() if isinstance(buckets, Mapping) else buckets
    merged: dict[float, float] = {}
    for bound, count in pairs:
        if count is None or math.isnan(count):
            continue
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or ordered[-1][0] != math.inf:
        return None
    highest = -math.inf
    monotonic = []
    for bound, count in ordered:
        highest = max(highest, count)
        monotonic.append((bound, highest))
    return monotonic if monotonic[-1][1] != 0 else None


def _quantile(q: float, monotonic: list[tuple[float, float]] | None) -> float | None:
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if monotonic is None:
        return None
    rank = q * monotonic[-1][1]
    b = next((i for i in range(len(monotonic) - 1) if monotonic[i][1] >= rank), len(monotonic) - 1)
    if b == len(monotonic) - 1:
        return monotonic[-2][0]
    if b == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    start, end, count = 0.0, monotonic[b][0], monotonic[b][1]
    if b > 0:
        start = monotonic[b - 1][0]
        count -= monotonic[b - 1][1]
        rank -= monotonic[b - 1][1]
    if count == 0:  # only for q = 0 over an empty first bucket: 0/0, NaN in Prometheus
        return None
    return start + (end - start) * (rank / count)
