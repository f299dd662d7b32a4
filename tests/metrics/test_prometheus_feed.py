"""The metrics bench's head feed (lab.prometheus_feed): what it scrapes into a real Prometheus is the generator's
series at their own timestamps, so the bench's cycle reads from the head what a backfilled TSDB holds in blocks."""

from __future__ import annotations

import time

import pytest
import requests

from apps.metrics import catalog
from lab.metrics_data import OpenMetrics, sample_times, synthetic_openmetrics
from lab.prometheus import PrometheusServer
from lab.prometheus_feed import feed, split_by_time


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
    prom = PrometheusServer(tmp_path / "prom", {"global": {"scrape_interval": "15s"}}).start(timeout=60)
    try:
        feed(prom, split_by_time(text), series, timeout=120)

        # Every series, and the generator's exact rates: 2xx requests per second summed over the mesh.
        assert _query(prom, 'count({job="meshboard-feed", __name__!~"up|scrape_.+"})', end) == {"": series}
        window = catalog.windows(15).short_promql
        ours = _query(prom, f"sum(rate(envoy_cluster_upstream_rq_xx[{window}]))", end)[""]
        again = _query(prom, f"sum(rate(envoy_cluster_upstream_rq_xx[{window}] offset 30s))", end)[""]
        assert ours > 0 and ours == pytest.approx(again, rel=1e-6)  # counters grow at a constant rate
        config = requests.get(f"{prom.url}/api/v1/status/config", timeout=30).json()["data"]["yaml"]
        assert "meshboard-feed" not in config
    finally:
        prom.stop()
