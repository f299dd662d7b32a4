"""Prometheus down, slow, erroring or answering only part of the questions: runs say why, last good KPIs stay."""

from __future__ import annotations

import time

import pytest

from apps.clusters.freshness import freshness
from apps.clusters.models import CollectionRun
from apps.metrics.models import EdgeKPI, MetricsState, ServiceKPI
from apps.metrics.services import collect_and_record
from lab.metrics_data import OpenMetrics

from .conftest import AT, NS, TIMES, envoy_series
from .faultproxy import FaultProxy

pytestmark = pytest.mark.django_db


@pytest.fixture
def proxy(proms):
    p = FaultProxy(proms.byo.url)
    yield p
    p.close()


def _cart() -> EdgeKPI:
    return EdgeKPI.objects.get(source_service="frontend", destination_namespace=NS, destination_service="cart")


def test_it_keeps_the_last_good_kpis_when_prometheus_is_down(prometheus_factory, snapshot_cluster):
    om = OpenMetrics(TIMES)
    envoy_series(om, latency=True, tls=False, denials=False)
    server = prometheus_factory(om.text(), name="doomed")
    cluster = snapshot_cluster(server.url)
    run, error = collect_and_record(cluster, at=AT)
    assert error is None and run.status == "ok"
    before = _cart()

    server.stop()
    run, error = collect_and_record(cluster, at=AT)
    assert error is not None and error.transient
    assert run.status == CollectionRun.Status.FAILED
    assert "cannot reach Prometheus" in run.error and f"127.0.0.1:{server.port}" in run.error
    after = _cart()
    assert after.request_rate == before.request_rate and after.collected_at == before.collected_at
    assert ServiceKPI.objects.get(service="cart").p99_ms == pytest.approx(47.5)
    stale = freshness(cluster, CollectionRun.Kind.METRICS)  # what pages read to mark the KPIs stale
    assert stale.stale_since is not None and "cannot reach Prometheus" in stale.error


def test_it_times_out_on_a_slow_prometheus(proxy, snapshot_cluster, settings):
    settings.MESHBOARD_PROMETHEUS_READ_TIMEOUT = 0.3
    proxy.delay = 2.0
    cluster = snapshot_cluster(proxy.url)
    started = time.monotonic()
    run, error = collect_and_record(cluster, at=AT)
    assert time.monotonic() - started < 1.9  # one timeout, no hidden client retries
    assert error is not None and error.transient
    assert "did not answer within 0.3 s" in run.error
    assert not ServiceKPI.objects.exists()


def test_it_records_a_partial_run_when_one_query_fails(proxy, snapshot_cluster):
    cluster = snapshot_cluster(proxy.url)
    run, error = collect_and_record(cluster, at=AT)
    assert error is None
    good_p99 = _cart().p99_ms

    good_p50 = _cart().p50_ms
    proxy.fail(r"upstream_rq_time_bucket")  # the latency query fails; every other one answers
    run, error = collect_and_record(cluster, at=AT + 15)
    assert error is None
    assert run.status == CollectionRun.Status.PARTIAL
    assert "latency_buckets" in run.error and "503" in run.error and "injected fault" in run.error
    assert run.counts["failed_queries"] == 1
    cart = _cart()
    assert (cart.p50_ms, cart.p99_ms) == (good_p50, good_p99)  # kept from the last good run
    assert cart.request_rate == pytest.approx(11.5)  # refreshed
    assert ServiceKPI.objects.get(service="cart").history[-1][0] == AT + 15


def test_it_keeps_the_last_quantiles_when_one_part_of_the_latency_buckets_fails(proxy, snapshot_cluster):
    """The latency buckets are asked in two parts (by caller): quantiles from one part alone would be wrong."""
    cluster = snapshot_cluster(proxy.url)
    collect_and_record(cluster, at=AT)
    good = (_cart().p50_ms, _cart().p95_ms, _cart().p99_ms)

    proxy.fail(r'upstream_rq_time_bucket.*source_workload_name!~"\(\.\.\)\*"')  # one part fails, the other answers
    run, error = collect_and_record(cluster, at=AT + 15)
    assert error is None and run.status == CollectionRun.Status.PARTIAL
    assert run.counts["failed_queries"] == 1 and "latency_buckets" in run.error and "injected fault" in run.error
    answered = 'source_workload_name=~"(..)*"'
    assert sum("upstream_rq_time_bucket" in r and answered in r for r in proxy.requests) == 2
    assert (_cart().p50_ms, _cart().p95_ms, _cart().p99_ms) == good
    assert ServiceKPI.objects.get(service="cart").history[-1][0] == AT + 15


def test_it_fails_the_run_when_every_query_fails(proxy, snapshot_cluster):
    cluster = snapshot_cluster(proxy.url)
    proxy.fail(r"/api/v1/query\?")
    run, error = collect_and_record(cluster, at=AT)
    assert error is not None and error.transient and run.status == "failed"
    assert not EdgeKPI.objects.exists()


def test_it_reports_a_rejected_query_as_permanent(proxy, snapshot_cluster):
    cluster = snapshot_cluster(proxy.url)
    proxy.fail(r"/api/v1/", status=404)
    run, error = collect_and_record(cluster, at=AT)
    assert error is not None and not error.transient
    assert "no Prometheus API" in run.error


def test_it_falls_back_when_the_config_api_is_refused(proxy, snapshot_cluster):
    cluster = snapshot_cluster(proxy.url)
    proxy.fail(r"/api/v1/status/config", status=403)
    run, error = collect_and_record(cluster, at=AT)
    assert error is None and run.status == "ok"
    assert any("assuming a scrape interval of 15 s" in w for w in run.warnings)
    assert MetricsState.objects.get().scrape_interval_seconds == 15
