"""Fill a running Prometheus's head block by scraping, one OpenMetrics document per scrape.

Backfilled blocks (`lab.prometheus.backfill_openmetrics`) are quick to build, but a Prometheus answers queries about
"now" from its head block, where the series' labels and recent chunks are in memory; on the same series it answers
the metrics cycle's queries about twice as fast from the head as from a block (BENCHMARKS.md, 2026-12-01 night). A
bench that measures what a worker meets in a cluster feeds the head: each document carries its samples' own
timestamps (`honor_timestamps`), so minutes of 15 s samples go in with a scrape every second.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def _head_samples(prom: PrometheusServer) -> int:
    """Samples the head has appended (`prometheus_tsdb_head_samples_appended_total`, from Prometheus's own /metrics)."""
    with urllib.request.urlopen(f"{prom.url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("prometheus_tsdb_head_samples_appended_total")
        )
    )


def feed(prom: PrometheusServer, documents: Sequence[bytes], series: int, *, timeout: float = 600.0) -> None:
    """Scrape `documents` (each with `series` samples) into the running `prom`, one per scrape, then stop scraping.

    Raises PrometheusError when the head did not take every sample in `timeout` seconds (a scrape that timed out
    or was refused: see the server's log)."""
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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = _head_samples(prom)
    config = dict(prom.config)
    job = {
        "job_name": "meshboard-feed",
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "honor_timestamps": True,
        "static_configs": [{"targets": [f"127.0.0.1:{server.server_address[1]}"]}],
    }
    prom.write_config({**config, "scrape_configs": [*(config.get("scrape_configs") or []), job]})
    try:
        deadline = time.monotonic() + timeout
        expected = before + series * len(documents)
        while (taken := _head_samples(prom)) < expected:
            # A scrape past every document that still leaves samples missing: one was not taken (timed out).
            if time.monotonic() > deadline or served["count"] > len(documents) + 3:
                raise PrometheusError(
                    f"the head took {taken - before:,} of {series * len(documents):,} samples in {timeout:.0f} s "
                    f"({served['count']} scrapes served); see {prom.workdir}/prometheus.log"
                )
            time.sleep(0.5)
    finally:
        prom.write_config(config)
        server.shutdown()
        server.server_close()
