"""`make bench`: benchmarks whose results go to BENCHMARKS.md (by hand, with the machine and the date).

Each benchmark prints a Markdown table row block. Run one with `python -m lab.bench kubeapi|collect|metrics`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.benchkit import fmt, machine, p95, setup_django, standin, timed, user


def bench_kubeapi(services: int, runs: int) -> None:
    """Building the synthetic seed, then listing every pod across all namespaces through the official client, typed
    and raw."""
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from lab.seeds.loader import load_seed

    seed = timed(lambda: load_seed("synthetic", services=services), runs)
    print(f"## seed: `load_seed('synthetic', services={services})` (what the stand-in serves), {runs} runs")
    print(f"- {fmt(seed)}")
    with tempfile.TemporaryDirectory() as tmp, standin(services, Path(tmp)) as kubeconfig:
        api = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfig)))
        pods = len(api.list_pod_for_all_namespaces().items)
        typed = timed(lambda: api.list_pod_for_all_namespaces(), runs)
        raw = timed(lambda: api.list_pod_for_all_namespaces(_preload_content=False).data, runs)
    print(f"## kubeapi: list {pods} pods (synthetic --services {services}), {runs} runs")
    print(f"- typed models (`list_pod_for_all_namespaces()`): {fmt(typed)}")
    print(f"- raw JSON (`_preload_content=False`, HTTP + transfer only): {fmt(raw)}")


def bench_collect(services: int, runs: int) -> None:
    """One collection cycle against the stand-in (in its own process): fetch, decode, DB write (SQLite), calls."""
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from apps.clusters.models import Cluster
        from apps.mesh.services import collect_and_record

        with standin(services, Path(tmp)) as kubeconfig:
            cluster = Cluster.objects.create(name="bench", kubeconfig_path=str(kubeconfig))
            results = []
            for _ in range(runs + 1):
                started = time.perf_counter()
                run, error = collect_and_record(cluster)
                wall = time.perf_counter() - started
                if error is not None:
                    sys.exit(f"collection failed: {error.reason}")
                results.append((wall, run))
    first_wall, first = results[0]
    steady = results[1:]

    def med(phase: str) -> float:
        return statistics.median(r.timings[phase] for _, r in steady) * 1000

    print(f"## collect: one cycle against synthetic --services {services} (SQLite), {runs} runs after a first one")
    print(f"- objects: {first.counts}")
    print(f"- API requests per cycle: {first.api_requests}")
    print(
        f"- first cycle (empty tables): {first_wall * 1000:.0f} ms wall "
        f"(fetch {first.timings['fetch'] * 1000:.0f}, decode {first.timings['decode'] * 1000:.0f}, "
        f"write {first.timings['write'] * 1000:.0f})"
    )
    print(
        f"- steady cycle: median {statistics.median(w for w, _ in steady) * 1000:.0f} ms wall "
        f"(fetch {med('fetch'):.0f}, decode {med('decode'):.0f}, write {med('write'):.0f})"
    )


def bench_overview(services: int, runs: int) -> None:
    """Server time of the overview page (first page, default sort, and sorted by p99) on a collected synthetic mesh."""
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from django.conf import settings
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from apps.clusters.models import Cluster
        from apps.mesh.models import Service
        from apps.mesh.services import collect_and_record
        from apps.metrics.models import ServiceKPI
        from lab.synthetic import generate

        settings.ALLOWED_HOSTS = ["testserver"]
        with standin(services, Path(tmp)) as kubeconfig:
            cluster = Cluster.objects.create(name="bench", kubeconfig_path=str(kubeconfig))
            collect_and_record(cluster)
        # KPIs as the metrics collector stores them, from the same generator the seed came from.
        mesh = generate(services)
        inbound: dict[tuple[str, str], list] = {}
        for edge in mesh.edges:
            inbound.setdefault((edge.destination_namespace, edge.destination_service), []).append(edge)
        now = timezone.now()
        kpis = []
        for ns, name in Service.objects.filter(cluster=cluster).values_list("namespace", "name"):
            edges = inbound.get((ns, name), [])
            rps = sum(e.rps for e in edges)
            errors = sum(e.rps * e.error_ratio for e in edges)
            p99 = max((e.latency.p99_ms for e in edges), default=None)
            kpis.append(
                ServiceKPI(
                    cluster=cluster,
                    namespace=ns,
                    service=name,
                    collected_at=now,
                    request_rate=rps,
                    rate_5xx=errors,
                    rate_4xx=0.0,
                    rate_2xx=rps - errors,
                    success_rate=(1 - errors / rps) if rps else None,
                    p99_ms=p99,
                    p50_ms=p99 and p99 / 4,
                    p95_ms=p99 and p99 / 1.5,
                    tcp_bytes_sent_rate=rps * 800,
                    tcp_bytes_received_rate=rps * 3000,
                )
            )
        ServiceKPI.objects.bulk_create(kpis)
        client = Client()
        client.force_login(user("bench", "viewer"))
        results = {}
        for label, path in (("default sort", "/"), ("sorted by p99, descending", "/?sort=-p99")):
            client.get(path)
            times = timed(lambda path=path: client.get(path), runs)
            with CaptureQueriesContext(connection) as queries:
                client.get(path)
            results[label] = (times, len(queries))
    print(f"## overview page: server time, synthetic --services {services} ({len(kpis)} rows, 50 a page), {runs} runs")
    for label, (times, queries) in results.items():
        print(f"- {label}: {fmt(times)}, p95 {p95(times) * 1000:.0f} ms, {queries} DB queries")


def bench_canary(runs: int) -> None:
    """A weight change's round trip against the stand-in (bookstore, own process): the operator's POST (read, dry
    run, conditional merge patch, audit, snapshot update) and the splits page showing the new weights."""
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from django.conf import settings
        from django.test import Client

        from apps.clusters.models import Cluster
        from apps.mesh.models import TrafficSplit
        from apps.mesh.services import collect_and_record

        settings.ALLOWED_HOSTS = ["testserver"]
        with standin(0, Path(tmp), seed="bookstore") as kubeconfig:
            cluster = Cluster.objects.create(name="bench", kubeconfig_path=str(kubeconfig))
            collect_and_record(cluster)
            client = Client()
            client.force_login(user("bench-operator", "operator"))
            url = "/splits/bookstore/bookstore-split/"
            posts, pages = [], []
            for i in range(runs + 1):
                split = TrafficSplit.objects.get(cluster=cluster, name="bookstore-split")
                weight = 50 + (i % 2) * 25
                data = {
                    "resource_version": split.resource_version,
                    "action": "apply",
                    "backend_0": "bookstore-v1",
                    "backend_1": "bookstore",
                    "weight_0": str(weight),
                    "weight_1": str(100 - weight),
                }
                started = time.perf_counter()
                response = client.post(url, data)
                posted = time.perf_counter()
                page = client.get("/splits/").content.decode()
                done = time.perf_counter()
                if response.status_code != 302 or f"{weight}.0%" not in page:
                    sys.exit(f"the write did not apply: {response.status_code}")
                if i:  # the first run warms up
                    posts.append(posted - started)
                    pages.append(done - started)
    print(f"## canary write round trip against the stand-in (bookstore), {runs} runs")
    print(f"- POST apply (GET, dry run, merge patch, audit, snapshot): {fmt(posts)}")
    print(f"- submit → applied → splits page shows the new weights: {fmt(pages)}")


def _bench_metrics(args: argparse.Namespace) -> None:
    from lab.bench_metrics import bench_metrics

    bench_metrics(args.services, args.runs, source=args.prometheus)


# name -> runner; other modules' benchmarks are imported lazily by their runner.
BENCHMARKS = {
    "kubeapi": lambda a: bench_kubeapi(a.services, a.runs),
    "collect": lambda a: bench_collect(a.services, a.runs),
    # 1,000 and 5,000 services (or --services N alone) against the floor, and the worker's peak RSS: issue 25 item 2.
    "collect-scale": lambda a: __import__("lab.bench_collect").bench_collect.bench_collect_scale(
        (1000, 5000) if a.services == 1000 else (a.services,), a.runs
    ),
    "metrics": _bench_metrics,
    "overview": lambda a: bench_overview(a.services, max(a.runs, 20)),
    "canary": lambda a: bench_canary(max(a.runs, 20)),
    "graph": lambda a: __import__("lab.bench_graph").bench_graph.bench_graph(a.services, a.runs),
    "migrate": lambda a: __import__("lab.bench_migrate").bench_migrate.bench_migrate(a.services, a.runs),
    "history": lambda a: __import__("lab.bench_history").bench_history.bench_history(a.services),
    # Its own sizes (20 stand-ins of 200 services, 3 workers, 10 intervals): what issue 25 asks of a fleet.
    "fleet": lambda a: __import__("lab.bench_fleet").bench_fleet.bench_fleet(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", nargs="*", help=f"{', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--prometheus",
        choices=("head", "blocks"),
        default="head",
        help="metrics: series scraped into Prometheus's head (as in a cluster) or a cached backfilled hour in blocks",
    )
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    which = args.which or list(BENCHMARKS)
    if unknown := set(which) - set(BENCHMARKS):
        parser.error(f"unknown benchmark: {', '.join(sorted(unknown))}")
    if len(which) > 1:
        # One process per benchmark: each sets up Django on its own throwaway database.
        print(f"machine: {machine()}; date: {time.strftime('%Y-%m-%d')}\n", flush=True)
        options = ["--services", str(args.services), "--runs", str(args.runs), "--quiet"]
        failed = [
            name for name in which if subprocess.run([sys.executable, "-m", "lab.bench", name, *options]).returncode
        ]
        if failed:
            sys.exit(f"benchmarks failed: {', '.join(failed)}")
        return
    if not args.quiet:
        print(f"machine: {machine()}; date: {time.strftime('%Y-%m-%d')}\n")
    BENCHMARKS[which[0]](args)


if __name__ == "__main__":
    main()
