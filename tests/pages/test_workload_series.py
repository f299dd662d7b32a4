"""A workload's chart data from a real Prometheus: what its own sidecars sent to destination services, selected by
OSM's source labels, and what they sent to the egress passthrough; other workloads of the same app label, OSM's
internal clusters and the inbound `|local` cluster stay out."""

from __future__ import annotations

import json
import time

import pytest
from django.utils import timezone

from apps.clusters.models import Cluster
from apps.mesh.services import collect_and_record
from apps.metrics.models import EdgeKPI, MetricsState
from apps.metrics.workload_ranges import BY_APP, BY_WORKLOAD, attribution, workload_series
from lab.metrics_data import OpenMetrics, envoy_edge, piecewise_cdf, sample_times
from tests.workload_objects import bookstore_with_extra_workloads

STEP = 15.0
T0 = (int(time.time()) // 3600 - 3) * 3600
AT = T0 + 1800.0
CDF = piecewise_cdf([(5, 0.2), (10, 0.5), (25, 0.9), (50, 1.0)])  # p50 10, p95 37.5, p99 47.5 ms
BUYER = {
    "source_namespace": "bookbuyer",
    "source_service": "bookbuyer",
    "source_pod_name": "bookbuyer-ml4zsxt8mm-wbkmg",
    "source_workload_kind": "Deployment",
    "source_workload_name": "bookbuyer",
}


@pytest.fixture(scope="module")
def prometheus(prometheus_factory):
    om = OpenMetrics(sample_times(T0, AT, STEP))
    envoy_edge(om, BUYER, "bookstore/bookstore-v1|14001", rps_by_class={"2": 9.0, "5": 1.0}, cdf=CDF, bytes_sent=800.0)
    envoy_edge(om, BUYER, "bookstore/bookstore-v2|14001", rps_by_class={"2": 5.0}, bytes_sent=200.0)
    # Not destinations: OSM's own cluster and bookbuyer's inbound side.
    envoy_edge(om, BUYER, "osm-controller", rps_by_class={"2": 100.0})
    envoy_edge(om, BUYER, "bookbuyer/bookbuyer|80|local", rps_by_class={"2": 100.0})
    om.counter("envoy_cluster_upstream_cx_total", {**BUYER, "envoy_cluster_name": "passthrough-outbound"}, 0.5)
    # Another workload with bookbuyer's app label: its calls are not bookbuyer's.
    canary = {**BUYER, "source_pod_name": "bookbuyer-canary-x", "source_workload_name": "bookbuyer-canary"}
    envoy_edge(om, canary, "bookstore/bookstore-v1|14001", rps_by_class={"2": 50.0})
    # The bare pod: no controller, so no workload labels.
    debug = {"source_namespace": "bookstore", "source_service": "debug", "source_pod_name": "debug-shell"}
    envoy_edge(om, debug, "bookstore/bookstore-v1|14001", rps_by_class={"2": 1.5})
    # From a Prometheus without OSM's workload labels, by app label only.
    by_app = {"source_namespace": "bookstore", "source_service": "bookstore", "source_pod_name": "bookstore-v2-q"}
    envoy_edge(om, by_app, "bookwarehouse/bookwarehouse|14001", rps_by_class={"2": 3.0})
    return prometheus_factory(om.text(), name="workload-series")


@pytest.fixture
def cluster(db, kubeapi_factory, prometheus, redis) -> Cluster:
    server = kubeapi_factory(bookstore_with_extra_workloads())
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(server.kubeconfig), prometheus_url=prometheus.url)
    _run, error = collect_and_record(cluster)
    assert error is None, error
    MetricsState.objects.create(
        cluster=cluster, collected_at=timezone.now(), scrape_interval_seconds=STEP, latency_source="envoy"
    )
    return cluster


def test_it_charts_what_one_workloads_sidecars_sent_to_destination_services(cluster):
    data = workload_series(cluster, "bookbuyer", "Deployment", "bookbuyer", "1h", app="bookbuyer", now=AT)

    assert data["selected_by"] == BY_WORKLOAD and data["unavailable"] == {}
    series = data["series"]
    assert series["request_rate"][-1] == pytest.approx(15.0)  # not the canary's 50, not osm-controller, not |local
    assert series["rate_5xx"][-1] == pytest.approx(1.0)
    assert series["success_rate"][-1] == pytest.approx(14.0 / 15.0)
    assert series["p99_ms"][-1] == pytest.approx(47.5)
    assert series["tcp_bytes_sent_rate"][-1] == pytest.approx(1000.0)
    assert series["passthrough_rate"][-1] == pytest.approx(0.5)
    assert series["request_rate"][0] is None  # before the data: no point, not a zero
    again = workload_series(cluster, "bookbuyer", "Deployment", "bookbuyer", "1h", app="bookbuyer", now=AT + 5)
    assert again["cached"] is True


def test_it_charts_a_bare_pod_by_its_pod_name(cluster):
    data = workload_series(cluster, "bookstore", "", "debug-shell", "15m", app="debug", now=AT)
    assert data["selected_by"] == "pod"
    assert data["series"]["request_rate"][-1] == pytest.approx(1.5)


def test_it_charts_by_app_label_where_the_kpis_know_no_workload_labels(cluster):
    assert attribution(cluster, "bookstore", "Deployment", "bookstore-v2", "bookstore") == BY_WORKLOAD  # no KPI yet
    EdgeKPI.objects.create(
        cluster=cluster,
        source_namespace="bookstore",
        source_service="bookstore",
        destination_namespace="bookwarehouse",
        destination_service="bookwarehouse",
        collected_at=timezone.now(),
        request_rate=3.0,
    )
    data = workload_series(cluster, "bookstore", "Deployment", "bookstore-v2", "15m", app="bookstore", now=AT)
    assert data["selected_by"] == BY_APP and data["selector"].endswith('source_service="bookstore"')
    assert data["series"]["request_rate"][-1] == pytest.approx(3.0)


def test_the_series_endpoint_serves_it_to_a_viewer(client, viewer, cluster):
    client.force_login(viewer)
    response = client.get("/workloads/bookbuyer/deployment/bookbuyer/series?window=15m")
    assert response.status_code == 200
    data = json.loads(response.content)
    assert data["window"] == "15m" and data["selected_by"] == BY_WORKLOAD
    assert set(data["series"]) >= {"request_rate", "p99_ms", "tcp_bytes_sent_rate", "passthrough_rate"}
