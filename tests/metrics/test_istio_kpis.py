"""KPIs of an Istio mesh: the synthetic mesh (`lab.synthetic.generate`) on Istio in the stand-in (`istio-synthetic`),
its traffic as istio-proxy sidecars report it, both reporters, backfilled with promtool into a real Prometheus
(`lab.metrics_data.istio_synthetic_openmetrics`). The rates must match the generator, not twice it."""

from __future__ import annotations

import pytest

from apps.clusters.models import Cluster, CollectionRun
from apps.mesh.models import MeshState
from apps.mesh.services import collect_and_record as collect_objects
from apps.metrics.models import EdgeKPI, MetricsState, ServiceKPI, SplitShare
from apps.metrics.services import collect_and_record
from lab.metrics_data import istio_synthetic_openmetrics
from lab.seeds.loader import load_seed
from lab.synthetic import generate

from .conftest import AT, TIMES
from .faultproxy import FaultProxy

pytestmark = pytest.mark.django_db

SIZES = (5, 50)
TOLERANCE = 0.10


@pytest.fixture(scope="session")
def istio_proms(prometheus_factory) -> dict[int, object]:
    return {n: prometheus_factory(istio_synthetic_openmetrics(n, 7, TIMES), name=f"istio-{n}") for n in SIZES}


def _expected(services: int) -> tuple[dict, dict, dict]:
    """From the generator: requests/s per destination service and per edge (with the 4xx the destination's
    AuthorizationPolicy answers a denied caller), and TCP bytes/s the callers sent per service."""
    mesh = generate(services, 7)
    per_service: dict[tuple[str, str], float] = {}
    per_edge: dict[tuple, list[float]] = {}
    tcp_sent: dict[tuple[str, str], float] = {}
    for edge in mesh.edges:
        for service, share in mesh.backend_shares(edge):
            key = (service.namespace, service.name)
            rps = edge.rps * share
            if service.ports[0].protocol != "http":
                if edge.allowed:
                    tcp_sent[key] = tcp_sent.get(key, 0.0) + rps * 2000
                continue
            per_service[key] = per_service.get(key, 0.0) + rps
            row = per_edge.setdefault((edge.source_namespace, edge.source_workload, *key), [0.0, 0.0])
            row[0] += rps
            row[1] += 0.0 if edge.allowed else rps
    for split in mesh.splits:  # a root's KPIs are its backends' (the traffic addressed to it)
        root = (split.namespace, split.root_service)
        per_service[root] = sum(per_service.get((split.namespace, b.service), 0.0) for b in split.backends)
    return per_service, per_edge, tcp_sent


def _close(measured: float | None, expected: float) -> bool:
    return measured is not None and abs(measured - expected) <= TOLERANCE * expected


def test_it_reads_istio_kpis_from_one_reporter_matching_the_generator(istio_proms, kubeapi_factory):
    received = {}
    for services in SIZES:
        proxy = FaultProxy(istio_proms[services].url)
        try:
            server = kubeapi_factory(load_seed("istio-synthetic", services=services))
            cluster = Cluster.objects.create(
                name=f"istio-{services}", kubeconfig_path=str(server.kubeconfig), prometheus_url=proxy.url
            )
            _run, error = collect_objects(cluster)
            assert error is None, error
            assert MeshState.objects.get(cluster=cluster).is_istio
            run, error = collect_and_record(cluster, at=AT)
        finally:
            proxy.close()
        assert error is None, error
        assert run.status == CollectionRun.Status.OK, (run.error, run.warnings)
        received[services] = list(proxy.requests)

        per_service, per_edge, tcp_sent = _expected(services)
        kpis = {(k.namespace, k.service): k for k in ServiceKPI.objects.filter(cluster=cluster)}
        busy = {key: rate for key, rate in per_service.items() if rate > 0}
        assert busy
        for key, rate in busy.items():
            assert _close(kpis[key].request_rate, rate), (key, kpis[key].request_rate, rate)
        # Not doubled by the two reporters: the whole mesh's traffic, measured over expected, is 1 (not 2).
        measured = sum(kpis[k].request_rate for k in busy)
        assert abs(measured / sum(busy.values()) - 1) < 0.05
        for key, sent in tcp_sent.items():
            assert _close(kpis[key].tcp_bytes_sent_rate, sent), (key, kpis[key].tcp_bytes_sent_rate, sent)

        edges = {
            (e.source_namespace, e.source_workload_name, e.destination_namespace, e.destination_service): e
            for e in EdgeKPI.objects.filter(cluster=cluster)
        }
        for key, (rate, denied) in per_edge.items():
            if rate <= 0:
                continue
            edge = edges[key]
            assert _close(edge.request_rate, rate), (key, edge.request_rate, rate)
            assert edge.source_workload_kind in ("Deployment", "StatefulSet")
            # mTLS per edge from connection_security_policy (only the destination reports it).
            assert edge.mtls_request_share == pytest.approx(1.0)
            if denied:
                assert _close(edge.rate_4xx, denied), (key, edge.rate_4xx, denied)
            else:
                assert edge.rate_4xx == pytest.approx(0.0, abs=1e-9) and edge.p99_ms is not None

        # The VirtualServices' splits: observed shares per backend, as for TrafficSplits.
        mesh = generate(services, 7)
        for split in mesh.splits:
            total = sum(b.weight for b in split.backends)
            traffic = sum(per_service.get((split.namespace, b.service), 0.0) for b in split.backends)
            for b in split.backends:
                share = SplitShare.objects.get(cluster=cluster, namespace=split.namespace, backend=b.service)
                assert share.split == f"meshboard-ts-{split.name}"
                if traffic > 0:
                    assert share.share_short == pytest.approx(b.weight / total, abs=0.02)

        state = MetricsState.objects.get(cluster=cluster)
        assert state.latency_source == "istio" and state.latency_unavailable_reason == ""
        assert "connection_security_policy" in state.tls_unavailable_reason

    # A fixed set of requests whatever the mesh: buildinfo, config, metric names, then seven PromQL queries (requests,
    # requests over the long window, bytes sent, bytes received, open connections, latency buckets in two parts); no
    # OSM pre-flight. Written here, not taken from the code.
    assert {n: len(paths) for n, paths in received.items()} == {5: 10, 50: 10}, received
    assert sum(1 for path in received[50] if "query" in path) == 7, received[50]
