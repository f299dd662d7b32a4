"""What a page request may ask of Prometheus: the charts and the compare page share one deadline per request (the
chart deadline in total, however many queries), stop at the first timeout, trip the per-cluster breaker, and say which
series are missing and why. Against a real Prometheus behind a proxy that answers, then stalls (no client mocks)."""

from __future__ import annotations

import time

import pytest

from apps.clusters.models import Cluster
from apps.metrics.compare import window_counts
from apps.metrics.ranges import BREAKER, DeadlinePassed, PageDeadline, service_series
from lab.metrics_data import OpenMetrics, envoy_edge, piecewise_cdf, sample_times
from tests.metrics.faultproxy import FaultProxy

pytestmark = pytest.mark.django_db

DEADLINE = 1.0  # the chart deadline these tests set (MESHBOARD_CHART_READ_TIMEOUT)
SLACK = 0.4  # what a request may take beyond it: the database, the proxy, a loaded CI machine
LATER_SERIES = ("tcp_bytes_sent_rate", "tcp_bytes_received_rate", "p50_ms", "p95_ms", "p99_ms")


class StallingProxy(FaultProxy):
    """A FaultProxy whose first `answered` requests are passed on at once and every later one waits `stall` s:
    a Prometheus that answers, then stops answering in the middle of a page's queries."""

    def __init__(self, upstream: str, *, answered: int, stall: float = 5.0) -> None:
        self.answered, self.stall = answered, stall
        super().__init__(upstream)

    @property
    def delay(self) -> float:
        return self.stall if len(self.requests) > self.answered else 0.0

    @delay.setter
    def delay(self, _value: float) -> None:
        pass  # FaultProxy's own setting; this one decides per request


@pytest.fixture(scope="module")
def prometheus(prometheus_factory):
    now = time.time()
    om = OpenMetrics(sample_times(now - 1800, now, 15))
    caller = {"source_namespace": "shop", "source_service": "client", "source_workload_name": "client"}
    envoy_edge(om, caller, "shop/shop-v1|8080", rps_by_class={"2": 5.0}, cdf=piecewise_cdf([(5, 0.5), (25, 1.0)]))
    return prometheus_factory(om.text(), name="page-deadlines")


@pytest.fixture
def deadline(settings):
    settings.MESHBOARD_CHART_READ_TIMEOUT = DEADLINE
    settings.MESHBOARD_CHART_BREAKER_SECONDS = 30.0


def _cluster(url: str) -> Cluster:
    cluster = Cluster.objects.create(name="deadlines", kubeconfig_path="unused", prometheus_url=url)
    BREAKER.reset((cluster.pk, url))  # a pk and URL of another test may have tripped it
    return cluster


def _timed(fn, *args, **kwargs):
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - started


def test_a_chart_whose_prometheus_stalls_after_the_first_query_stops_there_and_says_which_series_are_missing(
    prometheus, deadline, redis
):
    proxy = StallingProxy(prometheus.url, answered=1)
    try:
        cluster = _cluster(proxy.url)
        data, took = _timed(service_series, cluster, "shop", "shop-v1", "15m")

        assert took < DEADLINE + SLACK, took  # one deadline for the request, not one per query
        assert len(proxy.requests) == 2  # the request series answered; the next query timed out; no more were sent
        unavailable = data["unavailable"]
        assert "*" not in unavailable and "request_rate" not in unavailable
        assert data["series"]["request_rate"][-1] == pytest.approx(5.0)  # what answered is drawn
        for name in LATER_SERIES:  # the one that timed out and the ones never sent, each with why
            assert unavailable[name].startswith("Prometheus is not answering ("), (name, unavailable)
            assert "did not answer within" in unavailable[name] and "retrying at" in unavailable[name]
        assert data["cached"] is False

        again, took = _timed(service_series, cluster, "shop", "shop-v1", "15m")
        assert took < 0.5 and len(proxy.requests) == 2  # the breaker answers, not Prometheus
        assert again["unavailable"]["*"].startswith("Prometheus is not answering; retrying at")
    finally:
        proxy.close()


def test_a_chart_of_slow_answers_ends_at_the_deadline_in_total(prometheus, deadline, redis):
    proxy = FaultProxy(prometheus.url)
    proxy.delay = 0.35  # every answer comes, each slower than a third of the deadline
    try:
        cluster = _cluster(proxy.url)
        data, took = _timed(service_series, cluster, "shop", "shop-v1", "15m")

        assert took < DEADLINE + SLACK, took  # six queries of 0.35 s would take 2.1 s
        assert "request_rate" not in data["unavailable"]
        missing = [name for name in LATER_SERIES if name in data["unavailable"]]
        assert missing and missing == list(LATER_SERIES[-len(missing) :])  # the last ones, each saying why
        assert all(data["unavailable"][name] for name in missing)
    finally:
        proxy.close()


def test_no_query_is_sent_once_the_deadline_has_passed(prometheus, deadline):
    cluster = _cluster(prometheus.url)
    page = PageDeadline(cluster)
    page.ends = time.monotonic()  # as if the request had spent its time elsewhere

    with pytest.raises(DeadlinePassed, match="deadline for Prometheus had passed"):
        page.ask(lambda gateway: pytest.fail("a query was sent"))
    assert page.tripped_until is None  # running out of time says nothing of Prometheus


def test_the_compare_page_uses_the_charts_breaker_and_deadline(prometheus, deadline):
    proxy = StallingProxy(prometheus.url, answered=1)
    try:
        cluster = _cluster(proxy.url)
        counts, took = _timed(window_counts, cluster, "shop", ["shop-v1"], 300)

        assert took < DEADLINE + SLACK, took
        assert len(proxy.requests) == 2  # the requests query answered; the next timed out; the rest were not sent
        assert counts.problem.startswith("Prometheus is not answering (") and "retrying at" in counts.problem

        # Tripped: the charts of this cluster fail at once too, and the next comparison sends nothing.
        chart, took = _timed(service_series, cluster, "shop", "shop-v1", "15m")
        assert took < 0.5 and chart["unavailable"]["*"].startswith("Prometheus is not answering; retrying at")
        counts, took = _timed(window_counts, cluster, "shop", ["shop-v1"], 300)
        assert took < 0.5 and len(proxy.requests) == 2
        assert counts.problem.startswith("Prometheus is not answering; retrying at")
    finally:
        proxy.close()


def test_a_chart_timeout_holds_the_compare_page_back_too(prometheus, deadline, redis):
    proxy = StallingProxy(prometheus.url, answered=0)
    try:
        cluster = _cluster(proxy.url)
        chart, _took = _timed(service_series, cluster, "shop", "shop-v1", "15m")
        assert chart["unavailable"]["*"].startswith("Prometheus is not answering (")

        counts, took = _timed(window_counts, cluster, "shop", ["shop-v1"], 300)
        assert took < 0.5 and len(proxy.requests) == 1
        assert counts.problem.startswith("Prometheus is not answering; retrying at")
    finally:
        proxy.close()
