"""The graph in a real browser (Debian's chromium via Playwright) against a live server, under the strict CSP."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from apps.metrics.models import EdgeKPI
from tests.browser_fixtures import screenshot

from .conftest import add_edges

HOSTILE = "<img src=x onerror=\"document.body.dataset.pwned='1'\"><script>document.body.dataset.pwned='2'</script>"

# `browser` and `page` (page.errors collects page and console errors) come from the shared plugin
# tests/browser_fixtures.py: one sync Playwright per session.


def _login(page, live_server) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "vera")
    page.fill("#id_password", "a-long-viewer-pass")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def _open_graph(page, live_server, query: str = "") -> None:
    page.goto(f"{live_server.url}/graph/{query}")
    _renders_at_least(page, 1)


def _renders_at_least(page, count: int) -> None:
    """Wait until the graph has been drawn `count` times, through Playwright's matcher (wait_for_function would
    need the eval the page's CSP forbids)."""
    at_least = "|".join(str(n) for n in range(count, 10))
    expect(page.locator("body")).to_have_attribute(
        "data-graph-renders", re.compile(rf"^(?:{at_least}|[1-9]\d+)$"), timeout=20000
    )


def _edge(page, edge_id: str) -> dict:
    return page.evaluate(
        "(id) => { const e = mbGraph.cy.getElementById(id); return e.length ? "
        "{display: e.data('display'), lock: e.data('lock'), kind: e.data('kind'), visible: e.visible(),"
        " source: e.source().data('name'), target: e.target().data('name')} : null; }",
        edge_id,
    )


def _shot(page, name: str) -> None:
    screenshot(page, name)


def test_it_draws_bookstore_with_padlocks_labels_and_split_weights(page, live_server, viewer, mesh):
    _login(page, live_server)
    _open_graph(page, live_server)
    lock = page.evaluate("mbGraph.lockMark('mtls')")
    chain = [
        ("e:wl:bookbuyer/bookbuyer>svc:bookstore/bookstore", "bookbuyer", "bookstore", "10 rps · 5% 5xx · p99 60 ms"),
        ("e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse", "bookstore", "bookwarehouse", "5 rps"),
        ("e:svc:bookwarehouse/bookwarehouse>svc:bookwarehouse/mysql", "bookwarehouse", "mysql", "TCP 1.2 kB/s"),
    ]
    for edge_id, source, target, label in chain:
        edge = _edge(page, edge_id)
        assert (edge["source"], edge["target"], edge["lock"], edge["visible"]) == (source, target, "mtls", True)
        assert edge["display"].startswith(lock + " ") and label in edge["display"]
    v1 = _edge(page, "split:bookstore/bookstore-split>bookstore-v1")
    v2 = _edge(page, "split:bookstore/bookstore-split>bookstore-v2")
    assert (v1["display"], v2["display"]) == ("weight 75% · observed 62%", "weight 25% · observed 38%")
    assert page.locator("#graph-status").inner_text().startswith("12 nodes, 6 edges")
    _shot(page, "graph-bookstore")

    # The side panel says which health rule fired; the link opens the service.
    # Braces: emit() returns the collection, which Playwright would try to serialise whole (seconds, or a crash).
    page.evaluate("() => { mbGraph.cy.getElementById('svc:bookstore/bookstore-v2').emit('tap'); }")
    panel = page.locator("#graph-panel")
    assert "5xx 20% of 10 req/s ≥ 10%" in panel.inner_text()
    assert "failing" in panel.inner_text()
    panel.locator("a.detail-link").click()
    page.wait_for_url("**/services/bookstore/bookstore-v2/")
    assert not [e for e in page.errors if "Content Security Policy" in e or "Refused" in e], page.errors


def test_it_keeps_positions_across_refreshes_and_reloads(page, live_server, viewer, mesh):
    _login(page, live_server)
    _open_graph(page, live_server)
    assert page.evaluate("mbGraph.timings.mode") == "layout"
    before = page.evaluate("mbGraph.cy.getElementById('svc:bookstore/bookstore').position()")

    add_edges(mesh, {("bookbuyer", "bookbuyer", "bookwarehouse", "bookwarehouse"): (1.0, 0.0, 2.0, None, 0.0)})
    EdgeKPI.objects.filter(destination_service="bookwarehouse", source_service="bookstore").update(request_rate=777.0)
    page.evaluate("htmx.trigger(document.body, 'mb:refresh')")
    _renders_at_least(page, 2)
    assert page.evaluate("mbGraph.timings.mode") == "preset"
    assert page.evaluate("mbGraph.cy.getElementById('svc:bookstore/bookstore').position()") == before
    assert "777 rps" in _edge(page, "e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse")["display"]
    assert _edge(page, "e:wl:bookbuyer/bookbuyer>svc:bookwarehouse/bookwarehouse") is not None

    kept = page.evaluate("() => Object.keys(JSON.parse(localStorage.getItem(mbGraph.key) || '{}')).length")
    page.reload()
    _renders_at_least(page, 1)
    assert page.evaluate("mbGraph.timings.mode") == "preset", (kept, page.evaluate("() => mbGraph.timings"))
    after = page.evaluate("mbGraph.cy.getElementById('svc:bookstore/bookstore').position()")
    assert abs(after["x"] - before["x"]) <= 1 and abs(after["y"] - before["y"]) <= 1


def test_it_finds_hides_and_explains_a_bad_expression(page, live_server, viewer, mesh):
    _login(page, live_server)
    _open_graph(page, live_server)
    page.fill("input[name=hide]", "ns=osm-system or ns=default")
    page.fill("input[name=find]", "error>1%")
    page.click("#graph-form button[type=submit]")
    _renders_at_least(page, 2)
    assert page.evaluate("mbGraph.cy.getElementById('svc:osm-system/osm-controller').length") == 0
    assert page.evaluate("mbGraph.cy.getElementById('svc:bookstore/bookstore-v2').hasClass('found')")
    assert "find=error%3E1%25" in page.url

    page.fill("input[name=find]", "rps>")
    page.click("#graph-form button[type=submit]")
    error = page.locator("#graph-error")
    error.wait_for(state="visible")
    assert error.inner_text() == "Find: 'rps>' at character 1 needs a value after >, e.g. rps>10"


def test_it_exports_png_svg_and_json(page, live_server, viewer, mesh, tmp_path):
    _login(page, live_server)
    _open_graph(page, live_server)
    for kind, magic in (("png", b"\x89PNG"), ("svg", b"<svg"), ("json", b"{")):
        with page.expect_download() as download:
            page.click(f"button[data-graph={kind}]")
        path = tmp_path / f"graph.{kind}"
        download.value.save_as(path)
        content = path.read_bytes()
        assert content.startswith(magic), (kind, content[:40])
        if kind == "svg":
            assert b"weight 75% \xc2\xb7 observed 62%" in content and b"bookwarehouse" in content
        if kind == "json":
            assert b'"positions"' in content and b'"svc:bookstore/bookstore"' in content
    assert not [e for e in page.errors if "404" not in e], page.errors  # the favicon is the only 404


def test_it_shows_hostile_strings_as_text_without_running_them(page, live_server, viewer, mesh, kubeapi):
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from apps.mesh.services import collect_and_record

    core = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeapi.kubeconfig)))
    core.patch_namespaced_service("bookstore-v1", "bookstore", {"metadata": {"annotations": {"note": HOSTILE}}})
    collect_and_record(mesh)
    # Prometheus label values are not Kubernetes names: a relabel rule or a stray series can carry anything.
    add_edges(mesh, {(HOSTILE, HOSTILE, "bookstore", "bookstore"): (1.0, 0.0, 2.0, None, 0.0)})
    _login(page, live_server)
    _open_graph(page, live_server)

    node_id = f"svc:{HOSTILE}/{HOSTILE}"
    assert page.evaluate("(id) => mbGraph.cy.getElementById(id).data('name')", node_id) == HOSTILE
    page.evaluate("(id) => { mbGraph.cy.getElementById(id).emit('tap'); }", node_id)
    assert HOSTILE in page.locator("#graph-panel h2").inner_text()
    page.evaluate("(id) => { mbGraph.cy.getElementById(id).emit('mouseover'); }", node_id)
    page.locator("#graph-panel").hover()
    assert page.evaluate("document.body.dataset.pwned") is None
    assert page.locator("img[src=x]").count() == 0
    _shot(page, "graph-hostile")
