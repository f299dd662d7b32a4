"""One service's chart data: steps, windows, values, the Redis cache and the "unavailable" answers."""

from __future__ import annotations

import time

import pytest

from apps.metrics.ranges import service_series
from apps.metrics.services import collect_and_record

from .conftest import AT, NS
from .faultproxy import FaultProxy

pytestmark = pytest.mark.django_db


def test_it_returns_aligned_series_for_one_service(proms, snapshot_cluster, redis):
    cluster = snapshot_cluster(proms.byo.url)
    collect_and_record(cluster, at=AT)
    data = service_series(cluster, NS, "cart", "1h", now=AT)
    assert data["step"] == 15.0 and data["rate_window"] == "60s" and data["end"] == AT
    assert len(data["timestamps"]) == 241 and data["timestamps"][-1] == AT
    series = data["series"]
    assert all(len(values) == 241 for values in series.values())
    assert series["request_rate"][-1] == pytest.approx(11.5)
    assert series["rate_5xx"][-1] == pytest.approx(0.5)
    assert series["success_rate"][-1] == pytest.approx(11.0 / 11.5)
    assert series["p99_ms"][-1] == pytest.approx(47.5)
    assert series["tcp_bytes_received_rate"][-1] == pytest.approx(12000.0)
    assert series["request_rate"][0] is None  # before the data begins: no point, not a zero
    assert data["unavailable"] == {} and data["cached"] is False
    assert service_series(cluster, NS, "cart", "1h", now=AT + 5)["cached"] is True  # same step: from Redis


def test_it_charts_a_statefulset_through_its_truncated_cluster_names(proms, snapshot_cluster, redis):
    cluster = snapshot_cluster(proms.byo.url)
    data = service_series(cluster, "data", "mysql", "15m", now=AT)
    assert data["series"]["tcp_bytes_sent_rate"][-1] == pytest.approx(150.0)
    assert data["series"]["request_rate"][-1] is None


def test_it_uses_steps_of_range_over_300_but_never_below_the_scrape_interval(proms, snapshot_cluster, redis):
    cluster = snapshot_cluster(proms.byo.url)
    assert service_series(cluster, NS, "cart", "15m", now=AT)["step"] == 15.0
    week = service_series(cluster, NS, "cart", "7d", now=AT)
    assert week["step"] == 604800 / 300 and week["rate_window"] == "2016s"


def test_it_says_why_latency_is_missing_on_a_keep_list_prometheus(proms, snapshot_cluster, redis):
    cluster = snapshot_cluster(proms.bare.url)
    collect_and_record(cluster, at=AT)
    data = service_series(cluster, NS, "cart", "15m", now=AT)
    assert "latency not available" in data["unavailable"]["p99_ms"]
    assert set(data["series"]["p99_ms"]) == {None}
    assert data["series"]["request_rate"][-1] == pytest.approx(11.5)


def test_it_answers_unavailable_when_prometheus_fails(proms, snapshot_cluster, redis):
    proxy = FaultProxy(proms.byo.url)
    try:
        cluster = snapshot_cluster(proxy.url)
        proxy.fail(r"/api/v1/query_range", status=503)
        data = service_series(cluster, NS, "cart", "15m", now=AT)
        assert "503" in data["unavailable"]["*"] and set(data["series"]["request_rate"]) == {None}
        proxy.fail_pattern = None
        assert service_series(cluster, NS, "cart", "15m", now=AT)["cached"] is False  # failures are not cached
    finally:
        proxy.close()
    with pytest.raises(ValueError, match="unknown window"):
        service_series(cluster, NS, "cart", "2h")


def test_it_fails_fast_and_then_at_once_while_prometheus_stalls_and_recovers_by_itself(
    proms, snapshot_cluster, redis, settings
):
    settings.MESHBOARD_CHART_READ_TIMEOUT = 0.5
    settings.MESHBOARD_CHART_BREAKER_SECONDS = 2.0
    proxy = FaultProxy(proms.byo.url)
    try:
        cluster = snapshot_cluster(proxy.url)
        proxy.delay = 5.0  # a stalled Prometheus: connections are accepted, answers never come in time

        started = time.monotonic()
        data = service_series(cluster, NS, "cart", "15m", now=AT)
        first = time.monotonic() - started
        assert (
            data["unavailable"]["*"].startswith("Prometheus is not answering")
            and "retrying at" in data["unavailable"]["*"]
        )
        assert first < 2.0  # the chart deadline, not the stall

        asked = len(proxy.requests)
        started = time.monotonic()
        again = service_series(cluster, NS, "cart", "15m", now=AT)
        assert time.monotonic() - started < 0.5 and len(proxy.requests) == asked  # the breaker answers, not Prometheus
        assert again["unavailable"]["*"].startswith("Prometheus is not answering; retrying at")

        proxy.delay = 0.0
        deadline = time.monotonic() + 5
        while service_series(cluster, NS, "cart", "15m", now=AT)["unavailable"].get("*"):
            assert time.monotonic() < deadline, "charts did not recover after the breaker's cooldown"
            time.sleep(0.2)
        assert len(proxy.requests) > asked  # recovered by asking Prometheus again, without a restart
    finally:
        proxy.close()
