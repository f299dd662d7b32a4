"""KPIs against a real Prometheus over backfilled series with known rates, ratios and histograms."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from apps.clusters.models import CollectionRun
from apps.metrics.models import EdgeKPI, MetricsState, ServiceKPI, SplitShare
from apps.metrics.services import collect_and_record

from .conftest import AT, CLUSTER_CERT_EXPIRY, LISTENER_CERT_EXPIRY, NS, REFUSALS, RESILIENCE

pytestmark = pytest.mark.django_db


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-6, abs=1e-9)


def _collect(cluster):
    run, error = collect_and_record(cluster, at=AT)
    assert error is None, error.reason
    return run


def _edge(dest: str, ns: str = NS) -> EdgeKPI:
    return EdgeKPI.objects.get(source_namespace=NS, source_service="frontend", destination_namespace=ns,
                               destination_service=dest)  # fmt: skip


def _service(name: str, ns: str = NS) -> ServiceKPI:
    return ServiceKPI.objects.get(namespace=ns, service=name)


@pytest.fixture
def byo(proms, snapshot_cluster):
    cluster = snapshot_cluster(proms.byo.url)
    run = _collect(cluster)
    return cluster, run


def test_it_computes_rates_success_and_latency_per_edge_and_service(byo):
    cluster, run = byo
    assert run.status == CollectionRun.Status.OK, run.error
    edge = _edge("cart")
    assert (edge.source_workload_kind, edge.source_workload_name, edge.source_label) == ("Deployment",) + (
        "frontend",
    ) * 2
    assert edge.request_rate == approx(11.5)
    assert (edge.rate_2xx, edge.rate_4xx, edge.rate_5xx) == (approx(10.0), approx(1.0), approx(0.5))
    assert edge.success_rate == approx(11.0 / 11.5)  # non-5xx / all: a 4xx is a success for the mesh
    assert (edge.p50_ms, edge.p95_ms, edge.p99_ms) == (approx(10.0), approx(37.5), approx(47.5))
    assert edge.tcp_bytes_sent_rate == approx(4000.0)
    assert edge.tcp_bytes_received_rate == approx(12000.0)
    assert edge.tcp_active_connections == approx(3.0)
    service = _service("cart")
    assert service.request_rate == approx(11.5) and service.success_rate == approx(11.0 / 11.5)
    assert (service.p50_ms, service.p95_ms, service.p99_ms) == (approx(10.0), approx(37.5), approx(47.5))
    assert len(service.history) == 1 and service.history[0][0] == AT
    state = MetricsState.objects.get(cluster=cluster)
    assert state.latency_source == "envoy" and not state.latency_unavailable_reason
    assert state.scrape_interval_seconds == 15.0
    assert state.prometheus_version.startswith("2.")


def test_it_reports_tls_evidence_and_the_earlier_certificate_expiry(byo):
    edge = _edge("cart")
    assert edge.tls_handshake_rate == approx(0.2)
    assert edge.tls_error_rate == approx(0.07)  # connection errors + failed SAN checks
    assert edge.certificate_expires_at == datetime.fromtimestamp(min(CLUSTER_CERT_EXPIRY, LISTENER_CERT_EXPIRY), UTC)
    assert not MetricsState.objects.get().tls_unavailable_reason


def test_it_counts_refusals_per_caller_and_per_destination_as_osm_sidecars_do(proms, snapshot_cluster):
    from apps.metrics import catalog
    from apps.metrics.prometheus import gateway_for
    from apps.metrics.resolve import Resolver
    from apps.metrics.services import map_cycle, query_cycle

    cluster = snapshot_cluster(proms.byo.url)
    with gateway_for(cluster) as gateway:
        cycle = query_cycle(gateway, cluster, at=AT)
    assert cycle.ok("refusals"), cycle.failures
    refusals = map_cycle(cycle, Resolver.for_cluster(cluster)).refusals
    for side, expected in REFUSALS.items():
        assert refusals[side].keys() >= expected.keys(), side
        for key, value in refusals[side].items():
            assert value == approx(expected.get(key, 0.0)), (side, key)
    assert "outbound_" not in catalog.refusals("1m", "15s")  # no per-destination connection manager is read


def test_it_says_denials_per_edge_are_not_available_and_shows_them_per_caller_and_destination(byo):
    for dest in ("cart", "secret", "catalog"):
        assert not EdgeKPI.objects.filter(destination_service=dest, denied_rate__isnull=False).exists()
    assert _edge("cart").request_rate == approx(11.5)
    assert not EdgeKPI.objects.filter(destination_service="secret").exists()  # no cluster: the caller never reached it
    reason = MetricsState.objects.get().denials_unavailable_reason
    assert reason.startswith("denied traffic per edge (who was refused what) is not available from OSM v1.2 sidecars")
    assert "by caller (namespace/app): shop-1/frontend 2 conn/s." in reason
    assert "by destination (namespace/app): shop-1/secret 1.5/s, shop-1/cart 0.6/s, shop-1/catalog 0.4/s" in reason


def test_it_reads_a_never_seen_5xx_class_as_zero(byo):
    edge = _edge("catalog")
    assert edge.request_rate == approx(5.0) and edge.rate_5xx == 0.0 and edge.rate_4xx == 0.0
    assert edge.success_rate == 1.0


def test_it_reads_zero_traffic_as_zero_with_unknown_success_and_latency(byo):
    edge = _edge("idle")
    assert edge.request_rate == 0.0 and edge.rate_5xx == 0.0
    assert edge.success_rate is None and edge.p99_ms is None
    quiet = _service("quiet")  # meshed, nobody calls it
    assert quiet.request_rate == 0.0 and quiet.success_rate is None
    legacy = _service("legacy")  # no sidecar, no series: unknown
    assert legacy.request_rate is None and legacy.tcp_bytes_sent_rate is None


def test_it_survives_a_counter_reset(byo):
    assert _edge("reset").request_rate == approx(4.0)


def test_it_maps_truncated_statefulset_cluster_names_to_the_service(byo):
    _cluster, run = byo
    edge = _edge("mysql", ns="data")
    assert edge.tcp_bytes_sent_rate == approx(150.0)
    assert edge.request_rate is None  # TCP: no HTTP requests
    assert _service("mysql", ns="data").tcp_bytes_sent_rate == approx(150.0)
    assert not [w for w in run.warnings if "match no service" in w]


def test_it_ignores_local_and_control_plane_clusters(byo):
    assert not EdgeKPI.objects.filter(source_service="cart").exists()
    assert _service("cart").tcp_bytes_sent_rate == approx(4000.0)
    assert not ServiceKPI.objects.filter(service__contains="osm-controller").exists()


def test_it_observes_the_traffic_split(byo):
    shares = {s.backend: s for s in SplitShare.objects.filter(split="checkout-split")}
    assert shares["checkout-v1"].share_short == approx(0.9)
    assert shares["checkout-v2"].share_short == approx(0.1)
    assert shares["checkout-v2"].share_5m == approx(0.1)
    assert shares["checkout-v1"].request_rate == approx(9.0)
    assert shares["checkout-v1"].short_window_seconds == 60


def test_it_gives_a_split_root_the_traffic_routed_to_its_backends(byo):
    """frontend calls checkout; its sidecar routes to checkout-v1 (9 rps) and checkout-v2 (1 rps): no series names
    checkout, yet its row carries the 10 rps addressed to it, and names the backends it was summed from."""
    root = _service("checkout")
    assert root.routed_backends == ["checkout-v1", "checkout-v2"]
    assert root.request_rate == approx(10.0) and root.rate_2xx == approx(10.0) and root.rate_5xx == approx(0.0)
    assert root.success_rate == approx(1.0)
    assert _service("checkout-v1").routed_backends == [] and _service("cart").routed_backends == []
    assert not EdgeKPI.objects.filter(destination_service="checkout").exists()  # edges stay per backend


def test_it_stores_no_nan(byo):
    for model in (ServiceKPI, EdgeKPI, SplitShare):
        for row in model.objects.values():
            for value in row.values():
                assert not (isinstance(value, float) and not math.isfinite(value))


def test_it_keeps_a_bounded_history_for_sparklines(proms, snapshot_cluster):
    from apps.metrics import services

    cluster = snapshot_cluster(proms.byo.url)
    for i in range(services.HISTORY_POINTS + 3):
        collect_and_record(cluster, at=AT - 15 * (services.HISTORY_POINTS + 3 - i))
    history = _service("cart").history
    assert len(history) == services.HISTORY_POINTS
    assert history[-1][0] == AT - 15 and history == sorted(history)


def test_it_falls_back_to_osm_wasm_latency_and_says_what_is_missing(proms, snapshot_cluster):
    cluster = snapshot_cluster(proms.osm.url)
    run = _collect(cluster)
    state = MetricsState.objects.get(cluster=cluster)
    assert state.latency_source == "osm-wasm"
    assert "not available on this Prometheus" in state.tls_unavailable_reason
    assert "per edge" in state.denials_unavailable_reason and "keep-list" in state.denials_unavailable_reason
    edge = _edge("cart")
    assert (edge.p50_ms, edge.p95_ms, edge.p99_ms) == (approx(10.0), approx(37.5), approx(47.5))
    assert _service("cart").p99_ms == approx(47.5)
    assert edge.request_rate == approx(11.5)
    assert edge.tls_handshake_rate is None and edge.certificate_expires_at is None and edge.denied_rate is None
    assert run.status == "ok"


def test_it_says_latency_is_not_available_on_a_keep_list_prometheus(proms, snapshot_cluster):
    cluster = snapshot_cluster(proms.bare.url)
    _collect(cluster)
    state = MetricsState.objects.get(cluster=cluster)
    assert state.latency_source == "none"
    assert "latency not available" in state.latency_unavailable_reason
    assert state.tls_unavailable_reason and state.denials_unavailable_reason
    edge = _edge("cart")
    assert edge.p99_ms is None and edge.request_rate == approx(11.5)


def _resilience(cluster) -> dict:
    return {
        (k.namespace, k.service): (k.rate_limited_rate, k.retried_rate, k.overflow_rate)
        for k in ServiceKPI.objects.filter(cluster=cluster)
        if (k.namespace, k.service) in RESILIENCE
    }


def test_it_reports_rate_limited_retried_and_overflowed_requests_per_service(byo):
    cluster, run = byo
    assert run.status == CollectionRun.Status.OK, run.error
    got = _resilience(cluster)
    assert got.keys() == RESILIENCE.keys()
    for key, expected in RESILIENCE.items():
        assert got[key] == tuple(None if v is None else approx(v) for v in expected), key
    state = MetricsState.objects.get(cluster=cluster)
    assert (state.rate_limited_unavailable_reason, state.retried_unavailable_reason) == ("", "")
    assert state.overflow_unavailable_reason == ""


def test_it_says_why_the_local_rate_limit_is_not_available_on_osms_prometheus(proms, snapshot_cluster):
    """OSM's keep-list keeps retries and overflow, and drops the local rate limit's stats."""
    cluster = snapshot_cluster(proms.osm.url)
    _collect(cluster)
    state = MetricsState.objects.get(cluster=cluster)
    assert state.rate_limited_unavailable_reason == (
        "not available: this Prometheus keeps no envoy_http_local_rate_limit_rate_limited series (OSM's shipped "
        "keep-list drops it; keep it in your own Prometheus to see it)"
    )
    assert state.retried_unavailable_reason == state.overflow_unavailable_reason == ""
    got = _resilience(cluster)
    for key, (_limited, retried, overflow) in RESILIENCE.items():
        expected = (None, retried, overflow)
        assert got[key] == tuple(None if v is None else approx(v) for v in expected), key


def test_it_says_why_ingress_requests_are_not_available_on_osms_prometheus(proms, snapshot_cluster):
    """OSM's keep-list drops every envoy_http_* series, so the backends' ingress counter is not there; egress (an
    envoy_cluster_upstream_rq_xx series) is still asked for, in the same query."""
    cluster = snapshot_cluster(proms.osm.url)
    _collect(cluster)
    state = MetricsState.objects.get(cluster=cluster)
    assert state.ingress_unavailable_reason == (
        "ingress requests not available: this Prometheus keeps no envoy_http_rds_ingress_downstream_rq_xx series "
        "(OSM's shipped keep-list drops every envoy_http_* series; keep this one in your own Prometheus to see what "
        "ingress controllers send)"
    )


def test_it_says_why_retries_and_overflow_are_not_available_when_no_series_exists(proms, snapshot_cluster):
    cluster = snapshot_cluster(proms.bare.url)
    run = _collect(cluster)
    state = MetricsState.objects.get(cluster=cluster)
    assert state.retried_unavailable_reason.startswith(
        "not available: this Prometheus keeps no envoy_cluster_upstream_rq_retry series (OSM's shipped keep-list "
        "keeps it"
    )
    assert "envoy_cluster_upstream_rq_pending_overflow" in state.overflow_unavailable_reason
    assert "keep-list drops it" in state.rate_limited_unavailable_reason
    assert set(_resilience(cluster).values()) == {(None, None, None)}
    assert _service("cart").request_rate == approx(11.5)
    # nothing to ask: the cycle sends no resilience query; the osm Prometheus (same keep-list) gets three more, the
    # WASM latency buckets (in two parts) and the resilience query
    osm = snapshot_cluster(proms.osm.url, name="osm")
    osm_run = _collect(osm)
    assert osm_run.counts["queries"] == run.counts["queries"] + 3


def test_it_issues_the_same_number_of_queries_whatever_the_mesh(synthetic_proms, kubeapi_factory):
    """Counted where Prometheus receives them (a proxy in front of it), for two meshes ten times apart in size."""
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record as collect_objects
    from lab.seeds.loader import load_seed

    from .faultproxy import FaultProxy

    received, kpis = {}, {}
    for services, prometheus in synthetic_proms.items():
        proxy = FaultProxy(prometheus.url)
        try:
            server = kubeapi_factory(load_seed("synthetic", services=services))
            cluster = Cluster.objects.create(
                name=f"synthetic-{services}", kubeconfig_path=str(server.kubeconfig), prometheus_url=proxy.url
            )
            _run, error = collect_objects(cluster)
            assert error is None, error

            run = _collect(cluster)
        finally:
            proxy.close()
        assert run.status == CollectionRun.Status.OK, run.error
        assert run.api_requests == len(proxy.requests)
        received[services] = proxy.requests
        kpis[services] = ServiceKPI.objects.filter(cluster=cluster, request_rate__gt=0).count()

    # The meshes differ: KPIs for ten times the services came back from the same set of requests.
    assert kpis[50] > 5 * kpis[5] > 0
    # buildinfo, config, metric names and the pre-flight's label names (4), then the PromQL of one cycle (5 traffic,
    # the latency buckets in 2 parts, 1 refusals, 1 ingress and egress): written here, not taken from the code. The
    # synthetic mesh's series have no retry, overflow or local rate-limit counter, so no resilience query is asked (one
    # more where any is kept: test_it_says_why_retries_and_overflow_are_not_available_when_no_series_exists).
    assert {services: len(paths) for services, paths in received.items()} == {5: 13, 50: 13}, received


def test_it_uses_the_per_cluster_scrape_interval_for_windows(proms, snapshot_cluster):
    cluster = snapshot_cluster(proms.byo.url, scrape_interval_seconds=30)
    _collect(cluster)
    assert MetricsState.objects.get().scrape_interval_seconds == 30
    assert SplitShare.objects.filter(backend="checkout-v1").get().short_window_seconds == 120
    assert _edge("cart").request_rate == approx(11.5)


def _facts(client, viewer, service: str) -> dict[str, str]:
    """The service page's KPI rows, `<dt>` text -> `<dd>` text (tags dropped)."""
    import re

    client.force_login(viewer)
    response = client.get(f"/services/{NS}/{service}/")
    assert response.status_code == 200
    facts = response.content.decode().split('<dl class="facts">', 1)[1].split("</dl>", 1)[0]
    rows = re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", facts, re.S)
    return {dt: " ".join(re.sub(r"<[^>]+>", "", dd).split()) for dt, dd in rows}


def test_the_service_page_shows_rate_limited_retried_and_overflow(byo, client, viewer):
    facts = _facts(client, viewer, "cart")
    assert facts["Rate-limited"] == "0.4 req/s (refused by its pods' sidecars' local rate limit)"
    assert facts["Retried"] == "0.3 req/s (retries its callers' sidecars made to it)"
    assert facts["Overflow"] == "0.05 req/s (refused by its callers' sidecars: pending queue full)"
    assert _facts(client, viewer, "legacy")["Retried"] == "–"  # no sidecar: nothing measures it


def test_the_service_page_says_why_the_rate_limit_is_not_available(proms, snapshot_cluster, client, viewer):
    _collect(snapshot_cluster(proms.osm.url))
    facts = _facts(client, viewer, "cart")
    assert facts["Rate-limited"].startswith(
        "not available: this Prometheus keeps no envoy_http_local_rate_limit_rate_limited series (OSM&#x27;s shipped "
        "keep-list drops it"
    )
    assert facts["Retried"].startswith("0.3 req/s")


def test_each_cycle_maps_onto_the_snapshot_as_it_is_now(synthetic_proms, kubeapi_factory):
    """A worker keeps what it read of the snapshot between cycles until a collection changes the snapshot: a service
    created in the cluster gets its (quiet) KPI row at the first cycle after the collection that saw it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from apps.clusters.models import Cluster
    from apps.mesh.models import MeshState
    from apps.mesh.services import collect_and_record as collect_objects
    from lab.seeds.loader import load_seed

    server = kubeapi_factory(load_seed("synthetic", services=5))
    cluster = Cluster.objects.create(
        name="kept", kubeconfig_path=str(server.kubeconfig), prometheus_url=synthetic_proms[5].url
    )
    assert collect_objects(cluster)[1] is None
    version = MeshState.objects.get(cluster=cluster).snapshot_version
    assert collect_objects(cluster)[1] is None  # nothing changed in the cluster: the same version
    assert MeshState.objects.get(cluster=cluster).snapshot_version == version
    first = _collect(cluster)
    ns = ServiceKPI.objects.filter(cluster=cluster).values_list("namespace", flat=True).first()
    rows = set(ServiceKPI.objects.filter(cluster=cluster).values_list("namespace", "service"))

    api = k8s_config.new_client_from_config(config_file=str(server.kubeconfig))
    body = {"metadata": {"name": "newcomer"}, "spec": {"selector": {"app": "newcomer"}, "ports": [{"port": 80}]}}
    k8s.CoreV1Api(api).create_namespaced_service(ns, body)
    with CaptureQueriesContext(connection) as read:
        assert _collect(cluster).warnings == first.warnings  # not collected yet: the same snapshot, the same rows
    assert not [q for q in read.captured_queries if '"mesh_pod"' in q["sql"]]  # what it had read is kept
    assert set(ServiceKPI.objects.filter(cluster=cluster).values_list("namespace", "service")) == rows

    assert collect_objects(cluster)[1] is None
    assert MeshState.objects.get(cluster=cluster).snapshot_version != version
    _collect(cluster)
    assert set(ServiceKPI.objects.filter(cluster=cluster).values_list("namespace", "service")) == {
        *rows,
        (ns, "newcomer"),
    }
