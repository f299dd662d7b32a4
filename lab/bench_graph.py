"""`python -m lab.bench graph`: the service graph on the synthetic mesh (`--services 1000`, about 1,900 edges;
`--services 5000` for the collapsed graph).

1. JSON server time: `/graph/data` through Django's test client (no network), p95 over `runs`, and its DB queries;
   built (as the first request after a metrics cycle) and kept (any other request with the same tag).
2. In Debian's chromium (Playwright, against a threaded WSGI server on 127.0.0.1), as the page's own timers report
   them, up to the picture on screen (`painted_ms`: Cytoscape's next frame after the drawing): the first drawing
   (nothing kept: the layout), a reload (kept positions: the data revalidated by its ETag, 304), an in-page refresh
   after a metrics cycle (patched), and one with nothing new (304: nothing read or drawn). When the graph starts
   collapsed (above the page's node count, 1,500), also opening a namespace of median size for the first time (laid
   out then), collapsing it, opening it again (kept positions), and opening the largest one; last, "Expand all". The
   periodic refresh is switched off so that only these draw. The load average is printed: the machine is shared.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import cytoscape_floor
from lab.benchkit import fmt, p95, setup_django, standin, timed, user
from lab.synthetic_kpis import fill_kpis, metrics_cycle_ended

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FLOOR = "reload, Cytoscape alone"
KEYS = (
    "fetch_ms",
    "layout_ms",
    "build_ms",
    "total_ms",
    "painted_ms",
    "since_navigation_ms",
    "navigation_ms",
    "clicked_ms",
    "longest_task_ms",
)


def _serve() -> tuple[str, Any]:
    """Meshboard on a free 127.0.0.1 port in a daemon thread (one thread per request), static files by WhiteNoise.
    Django's own HTTP/1.1 server, as gunicorn answers: Chromium revalidates a kept answer by its ETag only when it came
    over HTTP/1.1 (over the standard library's HTTP/1.0 server it asks for the whole graph again at every reload)."""
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
    httpd.daemon_threads = True
    httpd.set_app(get_wsgi_application())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}", httpd


def _painted(page: Any, renders: int) -> None:
    """Wait until the page's `renders`-th drawing is on screen."""
    _reaches(page, "data-graph-painted", renders)


def _checked(page: Any, answers: int) -> None:
    """Wait until the page has read `answers` answers of /graph/data, drawn or found unchanged."""
    _reaches(page, "data-graph-checked", answers)


def _reaches(page: Any, attribute: str, count: int) -> None:
    """Through Playwright's matcher (the page's CSP forbids the eval that wait_for_function needs)."""
    from playwright.sync_api import expect

    expect(page.locator("body")).to_have_attribute(attribute, str(count), timeout=180_000)


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


def _metrics_cycle(cluster: Any) -> Callable[[], None]:
    """What a metrics cycle leaves: an edge's request rate changed and MetricsState's time moved, in one commit."""

    def write() -> None:
        from django.db import transaction
        from django.db.models import F

        from apps.metrics.models import EdgeKPI

        with transaction.atomic():
            edge = EdgeKPI.objects.filter(cluster=cluster).order_by("pk").first()
            EdgeKPI.objects.filter(pk=edge.pk).update(request_rate=F("request_rate") + 1)
            metrics_cycle_ended(cluster)

    def cycle() -> None:  # in a thread of its own: Playwright's sync API runs an event loop in this one
        thread = threading.Thread(target=write)
        thread.start()
        thread.join()

    return cycle


def _first_drawing(browser: Any, base: str, session: str, cluster: str) -> tuple[Any, Any, dict[str, Any]]:
    """A new browser context (nothing cached) opening the graph: its context, its page and the first drawing's times."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
    context.add_init_script("localStorage.setItem('mb-refresh', 'off')")  # no periodic refresh
    page = context.new_page()
    started = time.perf_counter()
    page.goto(f"{base}/graph/?cluster={cluster}")
    _painted(page, 1)
    return context, page, _timings(page, started)


def _browser_runs(
    base: str, session: str, cluster: str, runs: int, metrics_cycle: Callable[[], None], forget: Callable[[], None]
) -> dict[str, list[dict]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit("Debian chromium is not installed (package chromium)")
    out: dict[str, list[dict]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                forget()  # the first viewer after a metrics cycle, as this bench measured before bodies were kept
                context, page, first = _first_drawing(browser, base, session, cluster)
                out.setdefault("first", []).append(first)
                other = _first_drawing(browser, base, session, cluster)  # another viewer: the body built is kept
                out.setdefault("first, another viewer (body kept)", []).append(other[2])
                other[0].close()
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
                if FLOOR not in out:  # the floor under it: the same elements, nothing of ours
                    out[FLOOR] = cytoscape_floor.cytoscape_alone(browser, cytoscape_floor.drawn(page), 3)

                metrics_cycle()  # new KPIs: the refresh reads them and patches what changed
                page.evaluate("() => { htmx.trigger(document.body, 'mb:refresh'); }")
                _painted(page, 2)
                out.setdefault("refresh", []).append(_timings(page))

                # Nothing new since: the server answers 304 and the page keeps what it drew.
                checked = int(page.locator("body").get_attribute("data-graph-checked") or 0)
                page.evaluate("() => { htmx.trigger(document.body, 'mb:refresh'); }")
                _checked(page, checked + 1)
                out.setdefault("refresh, nothing new", []).append(_timings(page))

                if first["collapsed"]:
                    # Every namespace opened, those never opened laid out first (between frames, on the status
                    # line): from the click to the picture (`clicked_ms`), and the page's longest task meanwhile.
                    page.evaluate(
                        "() => { window.mbLong = []; new PerformanceObserver((list) => list.getEntries()"
                        ".forEach((e) => mbLong.push(e.duration))).observe({type: 'longtask'}); }"
                    )
                    renders = int(page.locator("body").get_attribute("data-graph-renders"))
                    started = time.perf_counter()
                    page.locator("[data-graph=expand-all]").click()
                    _painted(page, renders + 1)
                    timings = _timings(page)
                    timings["clicked_ms"] = (time.perf_counter() - started) * 1000
                    page.wait_for_timeout(200)  # the observer reports a task after it ends
                    timings["longest_task_ms"] = page.evaluate("() => Math.max(0, ...mbLong)")
                    out.setdefault("expand all", []).append(timings)
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
        from apps.graph.views import kept_answers
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

        def built() -> None:  # as the first request after a metrics cycle: no body kept for its tag
            kept_answers.clear()
            client.get(url)

        times = timed(built, max(runs, 20))
        kept = timed(lambda: client.get(url), max(runs, 20))
        reset_queries()  # each request start clears the log, which would hide this request's queries
        kept_answers.clear()
        with CaptureQueriesContext(connection) as queries:
            status = client.get(url).status_code
        if status != 200:
            sys.exit(f"/graph/data answered {status}")
        size = len(client.get(url).content)
        tag = client.get(url)["ETag"]
        unchanged = timed(lambda: client.get(url, HTTP_IF_NONE_MATCH=tag), max(runs, 20))
        if client.get(url, HTTP_IF_NONE_MATCH=tag).status_code != 304:
            sys.exit("/graph/data did not answer 304 to its own ETag")
        filtered_query = {"hide": "rps<1 or ns=legacy", "find": "error>1% !mtls"}
        filtered = timed(lambda: (kept_answers.clear(), client.get(url, filtered_query)), 10)

        base, httpd = _serve()
        load_before = os.getloadavg()
        try:
            browser = _browser_runs(
                base,
                client.cookies["sessionid"].value,
                cluster.name,
                max(1, min(runs, 3)),
                _metrics_cycle(cluster),
                kept_answers.clear,
            )
        finally:
            httpd.shutdown()
        load_after = os.getloadavg()

    counts = body["counts"]
    print(
        f"## graph: synthetic --services {services} ({edge_rows} EdgeKPI rows, {kpi_rows} ServiceKPI rows → "
        f"{counts['nodes']} nodes, {counts['edges']} edges, {len(body['namespaces'])} namespaces)"
    )
    print(
        f"- `/graph/data` server time, built (the first request after a metrics cycle): {fmt(times)}, "
        f"p95 {p95(times) * 1000:.0f} ms, {len(queries)} DB queries, {size / 1e6:.2f} MB JSON"
    )
    print(f"- the same, kept (any other request with its tag until the next cycle): {fmt(kept)}")
    print(f"- nothing new since (If-None-Match: its ETag → 304, no body): {fmt(unchanged)}")
    print(f"- with find and hide (`hide=rps<1 or ns=legacy`, `find=error>1% !mtls`): {fmt(filtered)}")
    print(
        "- load average (1, 5, 15 min) before the browser runs "
        f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)}"
    )

    for label, rows in browser.items():
        if label == FLOOR:
            print(f"- chromium {label} (lab/cytoscape_floor.py): {cytoscape_floor.summary(rows)}")
            continue
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
        "harness sees it; clicked_ms: from the click, as the harness sees it; longest_task_ms: the page's longest task "
        "meanwhile)"
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshboard.settings")
    bench_graph(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, 5)
