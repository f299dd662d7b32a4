"""The metrics bench's head feed (lab.prometheus_feed): what it scrapes into a real Prometheus is the generator's
series at their own timestamps, so the bench's cycle reads from the head what a backfilled TSDB holds in blocks."""

from __future__ import annotations

import time

import pytest
import requests

from apps.metrics import catalog
from lab.metrics_data import OpenMetrics, sample_times, synthetic_openmetrics
from lab.prometheus import PrometheusError, PrometheusServer
from lab.prometheus_feed import feed, held_samples, split_by_time


def _query(prom: PrometheusServer, expr: str, at: float) -> dict[str, float]:
    answer = requests.get(f"{prom.url}/api/v1/query", params={"query": expr, "time": at}, timeout=30).json()
    assert answer["status"] == "success", answer
    return {s["metric"].get("le", ""): float(s["value"][1]) for s in answer["data"]["result"]}


def test_split_by_time_gives_one_document_per_timestamp_oldest_first():
    om = OpenMetrics([100.0, 115.0, 130.0])
    om.counter("requests_total", {"pod": 'a"b'}, 2.0)
    om.gauge("up", {}, 1.0)
    documents = split_by_time(om.text())

    assert [d.decode().splitlines() for d in documents] == [
        ['requests_total{pod="a\\"b"} 1000 100', "up{} 1 100", "# EOF"],
        ['requests_total{pod="a\\"b"} 1030 115', "up{} 1 115", "# EOF"],
        ['requests_total{pod="a\\"b"} 1060 130', "up{} 1 130", "# EOF"],
    ]


def test_the_head_holds_every_scraped_sample_and_the_feed_job_is_gone_after(tmp_path):
    end = float(int(time.time()) - 1)
    times = sample_times(end - 120, end, 15.0)
    text, series = next(synthetic_openmetrics(5, 7, times))
    documents = split_by_time(text)
    prom = PrometheusServer(tmp_path / "prom", {"global": {"scrape_interval": "15s"}}).start(timeout=60)
    try:
        feed(prom, documents, series, timeout=120)

        # Every sample of every document at its own time, counted point by point from the raw range.
        selector = f'{{job="meshboard-feed", __name__!~"up|scrape_.+"}}[{len(times) * 15}s]'
        answer = requests.get(f"{prom.url}/api/v1/query", params={"query": selector, "time": end}, timeout=30).json()
        held = answer["data"]["result"]
        assert len(held) == series
        assert sorted({float(t) for s in held for t, _v in s["values"]}) == times
        assert sum(len(s["values"]) for s in held) == series * len(documents) == held_samples(prom)
        # The generator's exact rates: counters grow at a constant rate.
        window = catalog.windows(15).short_promql
        ours = _query(prom, f"sum(rate(envoy_cluster_upstream_rq_xx[{window}]))", end)[""]
        again = _query(prom, f"sum(rate(envoy_cluster_upstream_rq_xx[{window}] offset 30s))", end)[""]
        assert ours > 0 and ours == pytest.approx(again, rel=1e-6)
        config = requests.get(f"{prom.url}/api/v1/status/config", timeout=30).json()["data"]["yaml"]
        assert "meshboard-feed" not in config
    finally:
        prom.stop()


def test_a_sample_the_head_refuses_fails_the_feed(tmp_path):
    """A document whose samples are older than the ones before (out of order) is refused by the head: the feed says
    so instead of leaving a bench to measure a Prometheus with holes."""
    end = float(int(time.time()) - 1)
    text, series = next(synthetic_openmetrics(5, 7, sample_times(end - 45, end, 15.0)))
    documents = split_by_time(text)
    prom = PrometheusServer(tmp_path / "prom", {"global": {"scrape_interval": "15s"}}).start(timeout=60)
    try:
        with pytest.raises(PrometheusError, match=f"the head holds {series * 3:,} of the {series * 4:,} samples"):
            feed(prom, [*documents[:2], documents[3], documents[2]], series, timeout=120)
    finally:
        prom.stop()
