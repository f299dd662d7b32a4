"""KPI rows for the synthetic mesh (`lab.synthetic.generate`), as the metrics collector would store them from its
Prometheus: for the graph benchmark and the graph tests, without a Prometheus."""

from __future__ import annotations

from typing import Any


def fill_kpis(cluster: Any, mesh: Any) -> tuple[int, int]:
    """EdgeKPI and ServiceKPI rows as the metrics collector stores them for the synthetic mesh, and its MetricsState
    (the cycle's version: the graph's entity tag is made of it).

    Envoy reports a split root's traffic under its backends' clusters, so an edge to a root becomes one row per
    backend (by weight); the caller is named by its pods' `app` label (OSM's `source_service`).
    """
    from django.utils import timezone

    from apps.metrics.models import EdgeKPI, ServiceKPI, success_ratio

    now = timezone.now()
    edges: dict[tuple[str, str, str, str], list[float]] = {}
    for e in mesh.edges:
        for backend, share in mesh.backend_shares(e):
            acc = edges.setdefault((e.source_namespace, e.source_app, backend.namespace, backend.name), [0.0, 0.0, 0.0])
            acc[0] += e.rps * share
            acc[1] += e.rps * share * e.error_ratio
            acc[2] = max(acc[2], e.latency.p99_ms)
    EdgeKPI.objects.bulk_create(
        [
            EdgeKPI(
                cluster=cluster,
                source_namespace=sns,
                source_service=ssvc,
                destination_namespace=dns,
                destination_service=dsvc,
                collected_at=now,
                request_rate=rps,
                rate_2xx=rps - r5,
                rate_4xx=0.0,
                rate_5xx=r5,
                success_rate=success_ratio(rps, r5),
                p99_ms=p99,
                denied_rate=0.0,
            )
            for (sns, ssvc, dns, dsvc), (rps, r5, p99) in edges.items()
        ],
        batch_size=500,
    )
    inbound: dict[tuple[str, str], list[float]] = {}
    for (_sns, _ssvc, dns, dsvc), (rps, r5, p99) in edges.items():
        acc = inbound.setdefault((dns, dsvc), [0.0, 0.0, 0.0])
        acc[0], acc[1], acc[2] = acc[0] + rps, acc[1] + r5, max(acc[2], p99)
    ServiceKPI.objects.bulk_create(
        [
            ServiceKPI(
                cluster=cluster,
                namespace=ns,
                service=svc,
                collected_at=now,
                request_rate=rps,
                rate_2xx=rps - r5,
                rate_4xx=0.0,
                rate_5xx=r5,
                success_rate=success_ratio(rps, r5),
                p99_ms=p99,
            )
            for (ns, svc), (rps, r5, p99) in inbound.items()
        ],
        batch_size=500,
    )
    metrics_cycle_ended(cluster, now)
    return len(edges), len(inbound)


def metrics_cycle_ended(cluster: Any, at: Any = None) -> None:
    """What a metrics cycle's commit leaves besides its rows (apps.metrics.services.store): MetricsState's time, the
    version the graph's entity tag is made of. A bench or test that changes KPI rows calls it in the same commit."""
    from django.utils import timezone

    from apps.metrics.models import MetricsState

    MetricsState.objects.update_or_create(
        cluster=cluster,
        defaults={"collected_at": at or timezone.now(), "latency_source": MetricsState.LatencySource.ENVOY},
    )
