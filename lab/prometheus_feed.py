"""Fill a running Prometheus's head block by scraping, one OpenMetrics document per scrape.

Backfilled blocks (`lab.prometheus.backfill_openmetrics`) are quick to build, but a Prometheus answers queries about
"now" from its head block, where the series' labels and recent chunks are in memory; on the same series it answers
the metrics cycle's slowest query about 1.7 times as fast from the head as from blocks (BENCHMARKS.md, "2026-12-01
(night)"). A bench that measures what a worker meets in a cluster feeds the head: each document carries its samples'
own timestamps (`honor_timestamps`), so minutes of 15 s samples go in with a scrape every second.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

from lab.prometheus import PrometheusError, PrometheusServer

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
EMPTY = b"# EOF\n"


def split_by_time(text: str) -> list[bytes]:
    """An OpenMetrics document whose series have several timestamped samples each (`lab.metrics_data`), as one
    document per timestamp, oldest first: what a target scraped at each of those times would have answered."""
    by_time: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        by_time.setdefault(line.rsplit(" ", 1)[1], []).append(line)
    ordered = sorted(by_time, key=float)
    return [("\n".join(by_time[t]) + "\n# EOF\n").encode() for t in ordered]


def held_samples(prom: PrometheusServer, job: str = "meshboard-feed") -> int:
    """The samples `prom` holds from `job`'s targets over the last day, counted name by name (`count_over_time` drops
    the metric name, so series of two names with the same other labels would collide in one query)."""
    base = f"{prom.url}/api/v1"
    names = _get(f"{base}/label/__name__/values?" + urlencode({"match[]": f'{{job="{job}"}}'}))
    total = 0
    for name in names:
        if name == "up" or name.startswith("scrape_"):  # Prometheus's own series about each scrape
            continue
        expr = f'sum(count_over_time({{__name__="{name}",job="{job}"}}[1d]))'
        total += sum(int(float(s["value"][1])) for s in _get(f"{base}/query?" + urlencode({"query": expr}))["result"])
    return total


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (our own Prometheus, http://127.0.0.1)
        return json.loads(response.read())["data"]


def feed(prom: PrometheusServer, documents: Sequence[bytes], series: int, *, timeout: float = 600.0) -> None:
    """Scrape `documents` (each with `series` samples) into the running `prom` (with its lifecycle API, and none of
    those series yet), one per scrape, then stop scraping.

    Raises PrometheusError when the scrapes did not all happen in `timeout` seconds, or when the head does not hold
    every sample after them (a scrape that timed out, a sample refused: see the server's log)."""
    if not prom.lifecycle:
        raise PrometheusError("feeding needs Prometheus's lifecycle API (/-/reload) to add and remove the scrape job")
    served = {"count": 0}
    lock = threading.Lock()

    class Target(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                index = served["count"]
                served["count"] += 1
            body = documents[index] if index < len(documents) else EMPTY
            self.send_response(200)
            self.send_header("Content-Type", OPENMETRICS)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Target)
    try:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        config = dict(prom.config)
        job = {
            "job_name": "meshboard-feed",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "honor_timestamps": True,
            "static_configs": [{"targets": [f"127.0.0.1:{server.server_address[1]}"]}],
        }
        try:
            prom.write_config({**config, "scrape_configs": [*(config.get("scrape_configs") or []), job]})
            deadline = time.monotonic() + timeout
            # Each scrape is committed before the next one starts: once two more than the documents were served,
            # every document's scrape is in the head.
            while served["count"] < len(documents) + 2:
                if time.monotonic() > deadline:
                    raise PrometheusError(
                        f"{served['count']} of {len(documents)} scrapes in {timeout:.0f} s; "
                        f"see {prom.workdir}/prometheus.log"
                    )
                time.sleep(0.5)
        finally:
            prom.write_config(config)
        held, expected = held_samples(prom), series * len(documents)
        if held != expected:
            raise PrometheusError(
                f"the head holds {held:,} of the {expected:,} samples scraped; see {prom.workdir}/prometheus.log"
            )
    finally:
        server.shutdown()
        server.server_close()
