"""`python -m lab.bench graph`: the service graph on the synthetic mesh (`--services 1000`, about 3,000 edges).

1. JSON server time: `/graph/data` through Django's test client (no network), p95 over `runs`, and its DB queries.
2. In Debian's chromium (Playwright, against a threaded WSGI server on 127.0.0.1): the first layout (nothing kept,
   fcose) and a redraw from kept positions (a reload, and an in-page refresh), as the page's own timers report them.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from lab.benchkit import fmt, p95, setup_django, standin, timed, user
from lab.synthetic_kpis import fill_kpis

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _serve() -> tuple[str, Any]:
    """Meshboard on a free 127.0.0.1 port in a daemon thread (one thread per request), static files by WhiteNoise."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from django.core.wsgi import get_wsgi_application

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=Server, handler_class=Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}", httpd


def _browser_runs(base: str, session: str, cluster: str, runs: int) -> dict[str, list[dict]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit("Debian chromium is not installed (package chromium)")
    out: dict[str, list[dict]] = {"first": [], "reload": [], "refresh": []}
    wait = "(n) => Number(document.body.dataset.graphRenders || 0) >= n"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{base}/graph/?cluster={cluster}")
                page.wait_for_function(wait, arg=1, timeout=180_000)
                first = page.evaluate("() => mbGraph.timings")
                first["navigation_ms"] = (time.perf_counter() - started) * 1000
                first["nodes"] = page.evaluate("() => mbGraph.cy.nodes().length")
                first["edges"] = page.evaluate("() => mbGraph.cy.edges().length")
                out["first"].append(first)
                page.evaluate("() => new Promise((r) => setTimeout(r, 500))")  # positions reach localStorage

                started = time.perf_counter()
                page.reload()
                page.wait_for_function(wait, arg=1, timeout=60_000)
                again = page.evaluate("() => mbGraph.timings")
                again["navigation_ms"] = (time.perf_counter() - started) * 1000
                out["reload"].append(again)

                page.evaluate("() => htmx.trigger(document.body, 'mb:refresh')")
                page.wait_for_function(wait, arg=2, timeout=60_000)
                out["refresh"].append(page.evaluate("() => mbGraph.timings"))
                context.close()
        finally:
            browser.close()
    return out


def bench_graph(services: int, runs: int) -> None:

    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from django.conf import settings
        from django.db import connection, reset_queries
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        from apps.clusters.models import Cluster
        from apps.mesh.services import collect_and_record
        from lab.synthetic import generate

        settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
        with standin(services, Path(tmp)) as kubeconfig:
            cluster = Cluster.objects.create(name="bench", kubeconfig_path=str(kubeconfig))
            _run, error = collect_and_record(cluster)
            if error is not None:
                sys.exit(f"collection failed: {error.reason}")
        edge_rows, kpi_rows = fill_kpis(cluster, generate(services))

        client = Client()
        client.force_login(user("bench", "viewer"))
        url = "/graph/data"
        body = client.get(url).json()
        times = timed(lambda: client.get(url), max(runs, 20))
        reset_queries()  # each request start clears the log, which would hide this request's queries
        with CaptureQueriesContext(connection) as queries:
            status = client.get(url).status_code
        if status != 200:
            sys.exit(f"/graph/data answered {status}")
        size = len(client.get(url).content)
        filtered = timed(lambda: client.get(url, {"hide": "rps<1 or ns=legacy", "find": "error>1% !mtls"}), 10)

        base, httpd = _serve()
        try:
            browser = _browser_runs(base, client.cookies["sessionid"].value, cluster.name, max(1, min(runs, 3)))
        finally:
            httpd.shutdown()

    counts = body["counts"]
    print(
        f"## graph: synthetic --services {services} ({edge_rows} EdgeKPI rows, {kpi_rows} ServiceKPI rows → "
        f"{counts['nodes']} nodes, {counts['edges']} edges, {len(body['namespaces'])} namespaces)"
    )
    print(
        f"- `/graph/data` server time: {fmt(times)}, p95 {p95(times) * 1000:.0f} ms, "
        f"{len(queries)} DB queries, {size / 1e6:.2f} MB JSON"
    )
    print(f"- with find and hide (`hide=rps<1 or ns=legacy`, `find=error>1% !mtls`): {fmt(filtered)}")

    def line(label: str, rows: list[dict], keys: tuple[str, ...]) -> None:
        parts = [f"{k} median {statistics.median(r[k] for r in rows if k in r):.0f} ms" for k in keys]
        modes = sorted({r.get("mode", "?") for r in rows})
        print(f"- {label} ({len(rows)} runs, mode {'/'.join(modes)}): " + ", ".join(parts))
        print(f"  raw: {[{k: round(r[k]) for k in keys if k in r} for r in rows]}")

    line(
        "chromium first layout (nothing kept, fcose)",
        browser["first"],
        ("fetch_ms", "build_ms", "layout_ms", "total_ms", "navigation_ms"),
    )
    line(
        "chromium redraw from kept positions (reload)",
        browser["reload"],
        ("fetch_ms", "build_ms", "layout_ms", "total_ms", "navigation_ms"),
    )
    line(
        "chromium in-page refresh (mb:refresh, same nodes)",
        browser["refresh"],
        ("fetch_ms", "build_ms", "layout_ms", "total_ms"),
    )
    print(
        "  (layout_ms: the layout or the placing of kept positions; total_ms: from the fetch starting to the graph "
        "drawn; navigation_ms: from navigation to drawn, as the harness sees it)"
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshboard.settings")
    bench_graph(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, 5)
