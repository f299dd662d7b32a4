"""`python -m lab.bench metrics`: one KPI cycle against a real Prometheus holding the synthetic mesh's series.

Where the series are (`--prometheus`): "head" (the default) scrapes the last 6 minutes of 15 s samples into a fresh
Prometheus's head just before (`lab.prometheus_feed`), as a worker's queries about now meet them in a cluster;
"blocks" reads 1 h of 15 s samples backfilled with promtool into persistent blocks, built once and cached under
`var/bench/` (outside the repository's tracked files; delete the folder to rebuild). Classes 2 and 5, Envoy's
default latency buckets, one source pod per workload either way. Reported: (a) the cycle's wall time (queries +
mapping + DB write), (b) the floor: the same PromQL set sent over raw HTTP with no parsing, one after another, (b') the
same four at a time as the cycle asks them, (c) a naive loop of one query per service per KPI, as per-panel
dashboards do (measured on a sample of services and scaled to all of them).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.benchkit import fmt, setup_django, standin, timed

HOUR = 3600
STEP = 15.0


def _tsdb(services: int, seed: int) -> tuple[Path, float, int]:
    """The cached TSDB folder, the time of its last sample, and its series count (built on first use)."""
    from lab.metrics_data import sample_times, synthetic_openmetrics
    from lab.prometheus import backfill_openmetrics

    root = Path(os.environ.get("MESHBOARD_VAR_DIR", Path(__file__).resolve().parent.parent / "var")) / "bench"
    folder = root / f"metrics-tsdb-s{services}-r{seed}"
    marker = folder / "meshboard-bench.json"
    if marker.exists():
        meta = json.loads(marker.read_text())
        return folder / "data", meta["end"], meta["series"]
    folder.mkdir(parents=True, exist_ok=True)
    end = float((int(time.time()) // HOUR - 1) * HOUR)
    times = sample_times(end - HOUR, end, STEP)
    started = time.perf_counter()
    total = 0
    for i, (text, count) in enumerate(synthetic_openmetrics(services, seed, times, chunk_series=12000)):
        print(f"  backfilling chunk {i + 1}: {count} series, {len(text) / 1e6:.0f} MB", file=sys.stderr)
        backfill_openmetrics(text, folder / "data")
        total += count
    marker.write_text(json.dumps({"end": end, "series": total, "build_seconds": time.perf_counter() - started}))
    return folder / "data", end, total


def _head_documents(services: int, seed: int, minutes: float) -> tuple[list[bytes], float, int]:
    """The synthetic mesh's series as one OpenMetrics document per 15 s sample over the last `minutes`, the time of
    the last, and the series count: for `lab.prometheus_feed.feed`."""
    from lab.metrics_data import sample_times, synthetic_openmetrics
    from lab.prometheus_feed import split_by_time

    end = float(int(time.time()) - 1)
    text, count = next(synthetic_openmetrics(services, seed, sample_times(end - minutes * 60, end, STEP)))
    return split_by_time(text), end, count


def bench_metrics(
    services: int, runs: int, *, seed: int = 7, naive_sample: int = 50, source: str = "head", head_minutes: float = 6
) -> None:
    """`source` "head": the series scraped into a fresh Prometheus's head just before (what a worker's queries about
    now read in a cluster); "blocks": the cached backfilled hour (`_tsdb`), read from persistent blocks."""
    import requests

    from lab.prometheus import PrometheusServer
    from lab.prometheus_feed import feed

    if source == "head":
        started = time.perf_counter()
        documents, end, series = _head_documents(services, seed, head_minutes)
        print(
            f"  {len(documents)} scrapes of {series} series made in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        tsdb = None
    else:
        tsdb, end, series = _tsdb(services, seed)
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from django.conf import settings

        # As a worker runs (docker-compose.yml, the chart: DEBUG off): Django's query log, which DEBUG turns on, cost
        # 0.7 s of the SQLite write's 5.4 s over four cycles (cProfile, 2026-12-01).
        settings.DEBUG = False
        from apps.clusters.models import Cluster
        from apps.mesh.models import Service
        from apps.mesh.services import collect_and_record as collect_cluster
        from apps.metrics import catalog
        from apps.metrics.services import collect_and_record

        config = {"global": {"scrape_interval": "15s"}}
        prom = PrometheusServer(Path(tmp) / "prom", config, tsdb_dir=tsdb, retention="3650d").start(timeout=120)
        try:
            if source == "head":
                started = time.perf_counter()
                feed(prom, documents, series)
                del documents
                print(f"  scraped into the head in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            with standin(services, Path(tmp)) as kubeconfig:
                cluster = Cluster.objects.create(name="bench", kubeconfig_path=str(kubeconfig), prometheus_url=prom.url)
                _, error = collect_cluster(cluster)
                if error is not None:
                    sys.exit(f"cluster collection failed: {error.reason}")
            # Warm Prometheus's page cache and our imports once, then measure.
            collect_and_record(cluster, at=end)
            cycles = []
            for _ in range(runs):
                started = time.perf_counter()
                run, error = collect_and_record(cluster, at=end)
                cycles.append((time.perf_counter() - started, run))
                if error is not None:
                    sys.exit(f"metrics cycle failed: {error.reason}")
            run = cycles[-1][1]
            state = cluster.metrics_state
            w = catalog.windows(state.scrape_interval_seconds)
            available = catalog.Available.from_state(state)
            queries = catalog.cycle(w, available)
            exprs = list(queries.values())
            session = requests.Session()

            def floor() -> None:
                sink = 0
                for path in ("/api/v1/status/buildinfo", "/api/v1/status/config"):
                    sink += len(session.get(prom.url + path, timeout=60).content)
                names_url = prom.url + "/api/v1/label/__name__/values"
                sink += len(session.get(names_url, params={"start": end - w.long, "end": end}, timeout=60).content)
                for expr in exprs:
                    params = {"query": expr, "time": end}
                    sink += len(session.get(prom.url + "/api/v1/query", params=params, timeout=60).content)

            floor_times = timed(floor, runs)
            from concurrent.futures import ThreadPoolExecutor

            from apps.metrics.services import QUERY_PARALLELISM

            ordered = sorted(queries, key=lambda key: key not in catalog.SLOW_QUERIES)

            def floor_parallel() -> None:
                # The cycle's own way: the three probes in turn, then the queries QUERY_PARALLELISM at a time.
                for path in ("/api/v1/status/buildinfo", "/api/v1/status/config"):
                    session.get(prom.url + path, timeout=60).content  # noqa: B018
                names_url = prom.url + "/api/v1/label/__name__/values"
                session.get(names_url, params={"start": end - w.long, "end": end}, timeout=60).content  # noqa: B018

                def ask(key: str) -> int:
                    params = {"query": queries[key], "time": end}
                    return len(session.get(prom.url + "/api/v1/query", params=params, timeout=60).content)

                with ThreadPoolExecutor(QUERY_PARALLELISM) as pool:
                    sum(pool.map(ask, ordered))

            floor_parallel_times = timed(floor_parallel, runs)
            slowest = []
            for key, expr in queries.items():
                started = time.perf_counter()
                session.get(prom.url + "/api/v1/query", params={"query": expr, "time": end}, timeout=60).content  # noqa: B018
                slowest.append((time.perf_counter() - started, key))
            slowest.sort(reverse=True)
            names = list(Service.objects.filter(cluster=cluster).values_list("namespace", "name"))
            sample = names[:: max(1, len(names) // naive_sample)][:naive_sample]
            win = w.short_promql

            def naive() -> int:
                count = 0
                for ns, svc in sample:
                    sel = catalog.service_selector(ns, svc, [])
                    per_kpi = [
                        f"sum(rate(envoy_cluster_upstream_rq_xx{{{sel}}}[{win}]))",
                        f'sum(rate(envoy_cluster_upstream_rq_xx{{{sel},envoy_response_code_class!="5"}}[{win}]))',
                        *(
                            f"histogram_quantile({q}, sum by (le) "
                            f"(rate(envoy_cluster_upstream_rq_time_bucket{{{sel}}}[{win}])))"
                            for q in (0.5, 0.95, 0.99)
                        ),
                        f"sum(rate(envoy_cluster_upstream_cx_tx_bytes_total{{{sel}}}[{win}]))",
                        f"sum(rate(envoy_cluster_upstream_cx_rx_bytes_total{{{sel}}}[{win}]))",
                        f"sum(envoy_cluster_upstream_cx_active{{{sel}}})",
                    ]
                    for expr in per_kpi:
                        session.get(prom.url + "/api/v1/query", params={"query": expr, "time": end}, timeout=60).json()
                        count += 1
                return count

            started = time.perf_counter()
            naive_queries = naive()
            naive_wall = (time.perf_counter() - started) * len(names) / len(sample)
        finally:
            prom.stop()
    walls = [wall for wall, _ in cycles]
    ratio = statistics.median(walls) / statistics.median(floor_times)
    held = (
        f"{head_minutes:g} min of 15 s samples scraped into the head"
        if source == "head"
        else "1 h of 15 s samples backfilled, read from blocks"
    )
    print(f"## metrics: one KPI cycle, synthetic --services {services} ({series} series, {held})")
    print(f"- counts: {run.counts}; latency source {state.latency_source}; window {w.short_promql}")
    print(f"- (a) cycle wall (queries + mapping + SQLite write): {fmt(walls)}; phases of the last: {run.timings}")
    print(f"- (b) floor, the same {len(exprs) + 3} requests over raw HTTP, no parsing: {fmt(floor_times)}")
    print(
        f"- (b') floor as the cycle asks ({QUERY_PARALLELISM} queries in flight), no parsing: "
        f"{fmt(floor_parallel_times)}"
        f"; (a)/(b') = {statistics.median(walls) / statistics.median(floor_parallel_times):.2f}"
    )
    print(f"- (a)/(b) = {ratio:.2f}; slowest queries: {', '.join(f'{k} {t * 1000:.0f} ms' for t, k in slowest[:4])}")
    print(
        f"- (c) naive, one query per service per KPI: {naive_queries} queries for {len(sample)} services took "
        f"{naive_wall * len(sample) / len(names):.2f} s; scaled to {len(names)} services: {naive_wall:.1f} s, "
        f"{naive_queries * len(names) // len(sample)} queries"
    )
