"""Counts behind a canary comparison: per backend of a split, what happened over one window, from Prometheus.

Three instant queries whatever the number of backends, each an `increase()` over the window grouped by Envoy's
cluster name (the callers' sidecars, so the traffic as routed): requests by response class, the latency histogram's
buckets, and TCP bytes. Cluster names are mapped to backends as the metrics cycle maps them (`Resolver`), so a
StatefulSet's truncated names and the alt-stat forms count too. Pages call this on demand, as the charts ask
Prometheus: within the chart deadline in total, and not at all while the charts' breaker is open (ranges.PageDeadline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from apps.clusters.models import Cluster

from . import catalog, histogram
from .prometheus import PrometheusError
from .ranges import PageDeadline, service_pods
from .resolve import Resolver


@dataclass
class BackendCounts:
    """What one backend served over the window (counts are Prometheus's extrapolated increases, so fractional)."""

    service: str
    requests: float = 0.0
    by_class: dict[str, float] = field(default_factory=dict)  # "2", "4", "5" ...
    latency_buckets: histogram.Buckets = field(default_factory=dict)  # cumulative counts by upper bound (ms)
    bytes_sent: float | None = None
    bytes_received: float | None = None

    @property
    def errors(self) -> float:
        return self.by_class.get("5", 0.0)

    def quantile(self, q: float) -> float | None:
        return histogram.quantile(q, self.latency_buckets)


@dataclass
class WindowCounts:
    backends: dict[str, BackendCounts]
    seconds: int
    at: float
    latency_source: str  # "envoy" or "none" (OSM's WASM histogram is per workload, not per backend cluster)
    problem: str = ""  # why some or all counts are missing ("" when every query answered)


def _selector(cluster: Cluster, namespace: str, backends: list[str]) -> str:
    # Each backend's pods too: a headless StatefulSet's cluster names are truncated to `<ns>/<pod>`.
    regexes = [catalog.service_cluster_regex(namespace, b, service_pods(cluster, namespace, b)[0]) for b in backends]
    return f'envoy_cluster_name=~"{catalog.promql_string("|".join(regexes))}"'


def window_counts(
    cluster: Cluster, namespace: str, backends: list[str], seconds: int, *, at: float | None = None
) -> WindowCounts:
    """Per backend, the requests, 5xx, latency buckets and TCP bytes over the `seconds` before `at`. Never raises for
    Prometheus trouble: what failed is named in `problem` and its counts stay empty."""
    at = float(at if at is not None else time.time())
    out = WindowCounts({b: BackendCounts(b) for b in backends}, seconds, at, "envoy")
    if not cluster.prometheus_url:
        out.problem = "this cluster has no Prometheus URL"
        return out
    deadline = PageDeadline(cluster)
    if held_back := deadline.held_back():
        out.problem = held_back
        return out
    selector = _selector(cluster, namespace, backends)
    queries = catalog.window_totals(selector, catalog.duration(seconds))
    resolver = Resolver.for_cluster(cluster)
    problems = []
    for key, expr in queries.items():
        try:
            samples = deadline.ask(lambda gateway, expr=expr, key=key: gateway.instant(expr, at, what=f"compare {key}"))
        except PrometheusError as exc:
            problems.append(deadline.why(exc))
            if exc.status is None:  # timed out, unreachable or out of time: the other queries would fare no better
                break
            continue
        for s in samples:
            dest = resolver.destination(s.labels.get("envoy_cluster_name", ""))
            row = out.backends.get(dest[1]) if dest and dest[0] == namespace else None
            if row is None or s.value is None:
                continue
            if key == "requests":
                cls = s.labels.get("envoy_response_code_class", "")
                row.by_class[cls] = row.by_class.get(cls, 0.0) + s.value
                row.requests += s.value
            elif key == "latency":
                bound = histogram.parse_le(s.labels.get("le", ""))
                if bound is not None:
                    histogram.add(row.latency_buckets, {bound: s.value})
            elif key == "sent":
                row.bytes_sent = (row.bytes_sent or 0.0) + s.value
            else:
                row.bytes_received = (row.bytes_received or 0.0) + s.value
    if not any(b.latency_buckets for b in out.backends.values()) and "latency" not in " ".join(problems):
        out.latency_source = "none"
    out.problem = "; ".join(problems)
    return out
