"""Our quantiles (apps.metrics.histogram) against the real Prometheus's `histogram_quantile`.

Two ways: every bucket series of the backfilled TSDBs (per edge and summed per destination, at two windows), and
hand-made bucket sets for the edge cases, given to Prometheus as literal vectors so it answers for exactly the same
buckets (non-monotonic counts, no +Inf, only +Inf, empty, duplicate bounds, a negative first bound, q of 0 and 1).
"""

from __future__ import annotations

import math

import pytest

from apps.metrics import catalog, histogram
from apps.metrics.prometheus import PrometheusGateway, to_float

from .conftest import AT

QS = (0.0, 0.5, 0.95, 0.99, 1.0)


def _same(ours: float | None, theirs: float | None) -> bool:
    ours = to_float(ours) if ours is not None else None  # Prometheus's NaN and ±Inf read as None on both sides
    if ours is None or theirs is None:
        return ours is None and theirs is None
    return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9)


def _group(samples, keep: tuple[str, ...]) -> dict[tuple, histogram.Buckets]:
    groups: dict[tuple, histogram.Buckets] = {}
    for s in samples:
        bound = histogram.parse_le(s.labels["le"])
        if bound is not None and s.value is not None:
            key = tuple(s.labels.get(k, "") for k in keep)
            histogram.add(groups.setdefault(key, {}), {bound: s.value})
    return groups


@pytest.mark.parametrize("window", ["60s", "300s"])
def test_it_computes_every_backfilled_series_as_prometheus_does(proms, synthetic_proms, window):
    edge = tuple(k.strip() for k in catalog.EDGE.split(","))
    compared = 0
    for server in (proms.byo, synthetic_proms[50]):
        with PrometheusGateway(server.url) as gateway:
            buckets = gateway.instant(catalog.envoy_latency_buckets(window), AT)
            per_edge = _group(buckets, edge)
            per_destination = _group(buckets, ("envoy_cluster_name",))
            assert per_edge
            for q in QS:
                for by, ours in ((catalog.EDGE, per_edge), (catalog.DEST, per_destination)):
                    keep = tuple(k.strip() for k in by.split(","))
                    theirs = {
                        tuple(s.labels.get(k, "") for k in keep): s.value
                        for s in gateway.instant(catalog.envoy_quantile(q, window, by=by), AT)
                    }
                    assert theirs.keys() == ours.keys()
                    for key, bucket_set in ours.items():
                        assert _same(histogram.quantile(q, bucket_set), theirs[key]), (q, key, bucket_set)
                        compared += 1
    assert compared > 500


def test_the_parts_of_the_bucket_query_are_the_whole_answer_with_each_edge_in_one_part(synthetic_proms):
    """The cycle asks the latency buckets in two parts (catalog.PARTS); joined they must be exactly the whole query's
    answer, and every edge's buckets must come from one part (two parts run at slightly different moments)."""
    edge = tuple(k.strip() for k in catalog.EDGE.split(","))
    with PrometheusGateway(synthetic_proms[50].url) as gateway:
        whole = gateway.instant(catalog.envoy_latency_buckets("60s"), AT)
        queries = catalog.in_parts(
            "latency_buckets", "source_workload_name", lambda m: catalog.envoy_latency_buckets("60s", m)
        )
        parts = {key: gateway.instant(expr, AT) for key, expr in queries.items()}
    assert len(parts) == 2 and all(parts.values())

    def labelled(samples) -> list[tuple]:
        return sorted((tuple(sorted(s.labels.items())), s.value) for s in samples)

    results: dict[str, list] = dict(parts)
    catalog.join_parts(results, {})
    assert labelled(results["latency_buckets"]) == labelled(whole)
    where = {}
    for key, samples in parts.items():
        for s in samples:
            assert where.setdefault(tuple(s.labels.get(k, "") for k in edge), key) == key
    assert min(len(samples) for samples in parts.values()) > len(whole) / 5  # both parts carry a share


EDGE_CASES = {
    "ordinary": [("5", 1), ("10", 4), ("25", 9), ("+Inf", 10)],
    "non-monotonic": [("5", 3), ("10", 2), ("25", 9), ("50", 8), ("+Inf", 10)],
    "no +Inf bucket": [("5", 1), ("10", 4)],
    "only +Inf": [("+Inf", 10)],
    "empty": [("5", 0), ("10", 0), ("+Inf", 0)],
    "all in +Inf": [("5", 0), ("10", 0), ("+Inf", 7)],
    "empty first bucket": [("5", 0), ("10", 5), ("+Inf", 5)],
    "duplicate bound": [("5", 1), ("5.0", 2), ("10", 4), ("+Inf", 6)],
    "negative first bound": [("-1", 2), ("0", 3), ("10", 5), ("+Inf", 6)],
    "zero bound": [("0", 4), ("10", 5), ("+Inf", 6)],
    "unsorted fractional": [("+Inf", 1.5), ("0.25", 0.25), ("1e1", 1.0), ("2.5", 0.5)],
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_it_handles_the_edge_cases_as_prometheus_does(proms, case):
    buckets = EDGE_CASES[case]
    vector = " or ".join(f'label_replace(vector({count}), "le", "{le}", "", "")' for le, count in buckets)
    with PrometheusGateway(proms.byo.url) as gateway:
        for q in QS:
            [theirs] = gateway.instant(f"histogram_quantile({q}, {vector})", AT) or [None]
            ours = histogram.quantile(q, [(histogram.parse_le(le), float(c)) for le, c in buckets])
            assert _same(ours, theirs.value if theirs else None), (case, q, ours, theirs)
