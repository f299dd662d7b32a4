"""pytest fixtures: real Prometheus servers (Debian package) over backfilled OpenMetrics, stopped by pid."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lab.prometheus import PrometheusServer, backfill_openmetrics


@pytest.fixture(scope="session")
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PrometheusServer]]:
    """`prometheus_factory(openmetrics_text, scrape_interval="15s")` backfills the text into a fresh TSDB and starts a
    Prometheus on it; every server is stopped at the end of the session (or earlier with `server.stop()`)."""
    servers: list[PrometheusServer] = []

    def start(
        openmetrics: str, *, scrape_interval: str = "15s", name: str = "prometheus", block_hours: int = 2
    ) -> PrometheusServer:
        workdir = tmp_path_factory.mktemp(name)
        # Days of series backfill far faster into long blocks than into promtool's 2 h default (one block each).
        backfill_openmetrics(openmetrics, workdir / "data", block_hours=block_hours)
        config = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": "1m"}}
        server = PrometheusServer(workdir, config, tsdb_dir=workdir / "data", retention="3650d").start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
