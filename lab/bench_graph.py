"""`python -m lab.bench graph`: the service graph on the synthetic mesh (`--services 1000`, about 1,900 edges;
`--services 5000` for the collapsed graph).

1. JSON server time: `/graph/data` through Django's test client (no network), p95 over `runs`, and its DB queries.
2. In Debian's chromium (Playwright, against a threaded WSGI server on 127.0.0.1), as the page's own timers report
   them, up to the picture on screen (`painted_ms`: Cytoscape's next frame after the drawing): the first drawing
   (nothing kept: the layout), a reload (kept positions) and an in-page refresh. When the graph starts collapsed (above
   the page's node count, 1,500), also opening a namespace of median size for the first time (laid out then),
   collapsing it, opening it again (kept positions), and opening the largest one. The periodic refresh is switched
   off so that only these draw. The load average is printed: the machine is shared.
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
KEYS = ("fetch_ms", "layout_ms", "build_ms", "total_ms", "painted_ms", "since_navigation_ms", "navigation_ms")


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


def _painted(page: Any, renders: int) -> None:
    """Wait until the page's `renders`-th drawing is on screen, through Playwright's matcher (the page's CSP forbids the
    eval that wait_for_function needs)."""
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute("data-graph-painted", str(renders), timeout=180_000)


def _timings(page: Any, started: float | None = None) -> dict[str, Any]:
    timings = page.evaluate("() => mbGraph.timings")
    if started is not None:
        timings["navigation_ms"] = (time.perf_counter() - started) * 1000
    timings.update(
        page.evaluate(
            "() => ({nodes: mbGraph.cy.nodes().length, edges: mbGraph.cy.edges().length,"
            " collapsed: mbGraph.model.order.filter((ns) => mbGraph.collapsed[ns]).length})"
        )
    )
    return timings


def _browser_runs(base: str, session: str, cluster: str, runs: int) -> dict[str, list[dict]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit("Debian chromium is not installed (package chromium)")
    out: dict[str, list[dict]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
                context.add_init_script("localStorage.setItem('mb-refresh', 'off')")  # no periodic refresh
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{base}/graph/?cluster={cluster}")
                _painted(page, 1)
                first = _timings(page, started)
                out.setdefault("first", []).append(first)
                renders = 1
                if first["collapsed"]:
                    sizes = page.evaluate(
                        "() => mbGraph.model.order.map((ns) => [mbGraph.model.members[ns].length, ns])"
                    )
                    sizes.sort()
                    median, largest = sizes[len(sizes) // 2][1], sizes[-1][1]
                    for step, call, ns in (
                        ("expand", "expand", median),
                        ("collapse", "collapse", median),
                        ("expand again (kept)", "expand", median),
                        ("expand the largest", "expand", largest),
                    ):
                        page.evaluate(f"(ns) => {{ mbGraph.{call}(ns); }}", ns)
                        renders += 1
                        _painted(page, renders)
                        timings = _timings(page)
                        timings["namespace"] = f"{ns} ({dict((n, s) for s, n in sizes)[ns]} nodes)"
                        out.setdefault(step, []).append(timings)

                started = time.perf_counter()
                page.reload()  # kept positions; the URL keeps the namespaces opened above
                _painted(page, 1)
                out.setdefault("reload", []).append(_timings(page, started))

                page.evaluate("() => { htmx.trigger(document.body, 'mb:refresh'); }")
                _painted(page, 2)
                out.setdefault("refresh", []).append(_timings(page))
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
        load_before = os.getloadavg()
        try:
            browser = _browser_runs(base, client.cookies["sessionid"].value, cluster.name, max(1, min(runs, 3)))
        finally:
            httpd.shutdown()
        load_after = os.getloadavg()

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
    print(
        "- load average (1, 5, 15 min) before the browser runs "
        f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)}"
    )

    for label, rows in browser.items():
        parts = [f"{k} median {statistics.median(r[k] for r in rows if k in r):.0f}" for k in KEYS if k in rows[0]]
        modes = sorted({str(r.get("mode", "?")) + "/" + str(r.get("placement", "")) for r in rows})
        drawn = f"{rows[0]['nodes']} nodes and {rows[0]['edges']} edges drawn, {rows[0]['collapsed']} collapsed"
        where = f", {rows[0]['namespace']}" if "namespace" in rows[0] else ""
        print(f"- chromium {label} ({len(rows)} runs, {', '.join(modes)}; {drawn}{where}): " + ", ".join(parts))
        print(f"  raw ms: {[{k: round(r[k]) for k in KEYS if k in r} for r in rows]}")
        if "layout_parts" in rows[0]:
            print(f"  the layout's parts, ms: {[r['layout_parts'] for r in rows]}")
    print(
        "  (layout_ms: the layout or the placing of new nodes; build_ms: Cytoscape built or patched; total_ms: from "
        "the fetch starting (or the expand/collapse call) to the drawing done; painted_ms: to Cytoscape's next frame; "
        "since_navigation_ms: the page's clock at that frame; navigation_ms: from navigation to painted, as the "
        "harness sees it)"
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshboard.settings")
    bench_graph(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, 5)
