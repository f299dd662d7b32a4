"""The graph in a real browser (Debian's chromium via Playwright) against a live server, under the strict CSP."""

from __future__ import annotations

import re
import shutil

from playwright.sync_api import expect

from apps.metrics.models import EdgeKPI
from lab.synthetic_kpis import metrics_cycle_ended
from tests.browser_fixtures import SCREENSHOTS, at_path, screenshot

from .conftest import add_edges

HOSTILE = "<img src=x onerror=\"document.body.dataset.pwned='1'\"><script>document.body.dataset.pwned='2'</script>"

# `browser` and `page` (page.errors collects page and console errors) come from the shared plugin
# tests/browser_fixtures.py: one sync Playwright per session.


def _login(page, live_server) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "vera")
    page.fill("#id_password", "a-long-viewer-pass")
    page.click("button[type=submit]")
    # The home page, whatever query it puts in its URL (such as the time window).
    page.wait_for_url(re.compile(rf"^{re.escape(live_server.url)}/(?:\?.*)?$"))


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
        "(id) => { const e = mbGraph.cy.getElementById(id);" + SHOWN + " return e.length ? "
        "{display: e.data('display'), label: e.data('label'), lock: e.data('lock'), kind: e.data('kind'),"
        " visible: shown(e), classes: e.classes().join(' '), rotation: e.style('text-rotation'),"
        " font: e.style('font-size'), source: e.source().data('name'), target: e.target().data('name')} : null; }",
        edge_id,
    )


# Whether Cytoscape draws an element: its style read first (Cytoscape applies styles lazily and caches visible()).
SHOWN = (
    " const shown = (x) => { x.union(x.parents()).union(x.connectedNodes()).forEach((y) => y.style('display'));"
    " return x.visible(); };"
)


def _visible(page, element_id: str) -> bool:
    return page.evaluate(
        "(id) => { const e = mbGraph.cy.getElementById(id);" + SHOWN + " return e.length > 0 && shown(e); }",
        element_id,
    )


def _positions(page) -> dict[str, list[float]]:
    """Every leaf node's model position (a few dozen numbers)."""
    return page.evaluate(
        "() => { const out = {}; mbGraph.cy.nodes().forEach((n) => { if (n.data('kind') !== 'namespace') {"
        " const p = n.position(); out[n.id()] = [p.x, p.y]; } }); return out; }"
    )


def _assert_same_positions(before: dict, after: dict, ids=None) -> None:
    ids = list(before) if ids is None else ids
    assert ids and set(ids) <= set(after), set(ids) - set(after)
    moved = {
        i: (before[i], after[i]) for i in ids if max(abs(a - b) for a, b in zip(before[i], after[i], strict=True)) > 1
    }
    assert not moved, moved


def _submit(page, query: str) -> None:
    """Apply the form and wait until the graph drawn is the one asked with `query` (the page's periodic refresh draws
    too, so the count of drawings alone does not say which data is shown)."""
    page.click("#graph-form button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-graph-query", query, timeout=20000)


def _shot(page, name: str) -> None:
    screenshot(page, name)


def test_it_draws_bookstore_with_padlocks_labels_and_split_weights(page, live_server, viewer, mesh):
    _login(page, live_server)
    _open_graph(page, live_server)
    chain = [
        ("e:wl:bookbuyer/bookbuyer>svc:bookstore/bookstore", "bookbuyer", "bookstore", "10 rps · 5% 5xx · p99 60 ms"),
        ("e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse", "bookstore", "bookwarehouse", "5 rps"),
        ("e:svc:bookwarehouse/bookwarehouse>svc:bookwarehouse/mysql", "bookwarehouse", "mysql", "TCP 1.2 kB/s"),
    ]
    for edge_id, source, target, label in chain:
        edge = _edge(page, edge_id)
        assert (edge["source"], edge["target"], edge["lock"], edge["visible"]) == (source, target, "mtls", True)
        # Horizontal, 12 px, moved right to make room for the padlock drawn left of it.
        assert (edge["rotation"], edge["font"]) == ("none", "12px")
        assert "has-lock" in edge["classes"].split()
        assert label in edge["display"]
    v1 = _edge(page, "split:bookstore/bookstore-split>bookstore-v1")
    v2 = _edge(page, "split:bookstore/bookstore-split>bookstore-v2")
    assert (v1["display"], v2["display"]) == ("weight 75% · observed 62%", "weight 25% · observed 38%")
    # 4 traffic edges, 2 split edges, and the seed's two ingress edges (the controller into bookstore over HTTP,
    # into bookstore-v1 over mTLS).
    expect(page.locator("#graph-status")).to_have_text(re.compile(r"^\d+ nodes, 8 edges, 1 policy-only hidden$"))
    # A padlock for each of the four traffic edges (all mTLS) and the two ingress edges (open for the HTTP one),
    # drawn from the vendored SVG on the overlay canvas.
    expect(page.locator("#cy-locks")).to_have_count(1)
    page.evaluate("() => { mbGraph.cy.fit(mbGraph.cy.nodes(':visible'), 20); }")
    assert page.evaluate("mbGraph.locksDrawn") == 6
    assert page.locator(".legend img.lock-icon").count() == 2
    _shot(page, "graph-bookstore")

    # The side panel says which health rule fired; the link opens the service.
    # Braces: emit() returns the collection, which Playwright would try to serialise whole (seconds, or a crash).
    page.evaluate("() => { mbGraph.cy.getElementById('svc:bookstore/bookstore-v2').emit('tap'); }")
    panel = page.locator("#graph-panel")
    assert "5xx 20% of 10 req/s ≥ 10%" in panel.inner_text()
    assert "failing" in panel.inner_text()
    panel.locator("a.detail-link").click()
    page.wait_for_url(at_path("/services/bookstore/bookstore-v2/"))
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

    # Peers first seen on a refresh: one beside its neighbour, one in a namespace of its own laid out apart, to the
    # right; nothing kept moves.
    kept_before = _positions(page)
    add_edges(
        mesh,
        {
            ("bookbuyer", "bookbuyer", "bookstore", "fresh"): (1.0, 0.0, 2.0, None, 0.0),
            ("elsewhere", "newcomer", "elsewhere", "other"): (1.0, 0.0, 2.0, None, 0.0),
        },
    )
    page.evaluate("htmx.trigger(document.body, 'mb:refresh')")
    _renders_at_least(page, 3)
    assert page.evaluate("mbGraph.timings.mode") == "placed apart"
    now = _positions(page)
    _assert_same_positions(kept_before, now)
    right = max(x for x, _ in kept_before.values())
    assert now["svc:elsewhere/newcomer"][0] > right and now["svc:elsewhere/other"][0] > right
    assert abs(now["svc:bookstore/fresh"][0] - kept_before["wl:bookbuyer/bookbuyer"][0]) <= 71

    kept = page.evaluate("() => Object.keys(JSON.parse(localStorage.getItem(mbGraph.key) || '{}')).length")
    page.reload()
    _renders_at_least(page, 1)
    assert page.evaluate("mbGraph.timings.mode") == "preset", (kept, page.evaluate("() => mbGraph.timings"))
    after = page.evaluate("mbGraph.cy.getElementById('svc:bookstore/bookstore').position()")
    assert abs(after["x"] - before["x"]) <= 1 and abs(after["y"] - before["y"]) <= 1


def _answered(page, statuses: list, count: int) -> list:
    """`statuses` once it holds `count` answers: Chromium reports each over CDP, and Playwright delivers the events
    only while it waits, possibly after the page has already acted on the answer (a clean-clone CI run saw the page's
    counter before the second 304's event)."""
    for _ in range(100):
        if len(statuses) >= count:
            break
        page.wait_for_timeout(50)
    return statuses


def test_a_reload_or_refresh_with_nothing_new_reuses_the_graph_it_has(page, live_server, viewer, mesh):
    """After a metrics cycle the graph's answer carries an ETag: a reload revalidates it (the server answers 304 and
    the browser draws what it kept), a refresh with nothing new neither reads nor draws again, and one after the next
    metrics cycle draws the new numbers."""
    metrics_cycle_ended(mesh)
    _login(page, live_server)
    _open_graph(page, live_server)
    edge = "e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse"
    label = _edge(page, edge)["display"]
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    urls, statuses = {}, []
    cdp.on("Network.requestWillBeSent", lambda m: urls.__setitem__(m["requestId"], m["request"]["url"]))
    cdp.on(
        "Network.responseReceivedExtraInfo",
        lambda m: "/graph/data" in urls.get(m["requestId"], "") and statuses.append(m["statusCode"]),
    )
    page.reload()
    _renders_at_least(page, 1)
    assert _answered(page, statuses, 1) == [304]
    assert _edge(page, edge)["display"] == label

    expect(page.locator("body")).to_have_attribute("data-graph-checked", "1")
    page.evaluate("htmx.trigger(document.body, 'mb:refresh')")
    expect(page.locator("body")).to_have_attribute("data-graph-checked", "2")
    assert page.evaluate("mbGraph.timings.mode") == "unchanged" and _answered(page, statuses, 2) == [304, 304]
    assert page.locator("body").get_attribute("data-graph-renders") == "1"

    EdgeKPI.objects.filter(destination_service="bookwarehouse", source_service="bookstore").update(request_rate=777.0)
    metrics_cycle_ended(mesh)
    page.evaluate("htmx.trigger(document.body, 'mb:refresh')")
    _renders_at_least(page, 2)
    assert "777 rps" in _edge(page, edge)["display"] and _answered(page, statuses, 3) == [304, 304, 200]
    assert not page.errors, page.errors


def test_it_keeps_every_node_in_place_across_a_reload_and_filter_changes(page, live_server, viewer, demo_mesh, browser):
    _login(page, live_server)
    _open_graph(page, live_server)
    assert page.evaluate("mbGraph.timings.mode") == "layout"
    # Kept per user and cluster.
    assert page.evaluate("mbGraph.key") == f"mb-graph-pos:{viewer.pk}:lab"
    first = _positions(page)
    # Every node, the ghost peer seen only on an idle edge included (hidden, placed all the same).
    leaves = "mbGraph.data.elements.nodes.filter((n) => n.data.kind !== 'namespace').length"
    assert "svc:ghost/ghost-app" in first and len(first) == page.evaluate(leaves)

    page.reload()
    _renders_at_least(page, 1)
    assert page.evaluate("mbGraph.timings.mode") == "preset"
    _assert_same_positions(first, _positions(page))

    # Filters hide; nothing is laid out again and nothing moves.
    page.fill("input[name=hide]", "ns=osm-system or ns=default")
    _submit(page, "hide=ns%3Dosm-system+or+ns%3Ddefault")
    assert not _visible(page, "svc:osm-system/osm-controller")
    assert page.evaluate("mbGraph.timings.mode") == "preset"
    _assert_same_positions(first, _positions(page))
    page.select_option("select[name=ns]", ["bookwarehouse"])
    page.fill("input[name=hide]", "")
    _submit(page, "ns=bookwarehouse")
    assert not _visible(page, "wl:bookbuyer/bookbuyer") and _visible(page, "svc:bookwarehouse/mysql")
    _assert_same_positions(first, _positions(page))
    page.select_option("select[name=ns]", [])
    _submit(page, "")
    assert _visible(page, "wl:bookbuyer/bookbuyer") and not _visible(page, "svc:ghost/ghost-app")
    page.check("input[name=idle]")
    assert _visible(page, "svc:ghost/ghost-app")
    _assert_same_positions(first, _positions(page))

    # The layout is seeded: another browser context (nothing kept) draws the same picture.
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        other = context.new_page()
        _login(other, live_server)
        _open_graph(other, live_server)
        assert other.evaluate("mbGraph.timings.mode") == "layout"
        _assert_same_positions(first, _positions(other))
    finally:
        context.close()


def test_it_hides_idle_edges_unless_policy_only_edges_are_asked_for(page, live_server, viewer, demo_mesh):
    idle = [
        "e:svc:bookwarehouse/mysql>svc:bookstore/bookstore",
        "e:svc:bookstore/bookstore>svc:bookstore/bookstore",
        "e:wl:bookbuyer/bookbuyer>svc:bookwarehouse/bookwarehouse",
        "e:svc:ghost/ghost-app>svc:bookstore/bookstore",
        "egress:bookbuyer/bookbuyer-external:wl:bookbuyer/bookbuyer",  # the seed's Egress, unused in the demo data
    ]
    _login(page, live_server)
    _open_graph(page, live_server)
    for edge_id in idle:
        assert _edge(page, edge_id)["visible"] is False, edge_id
    assert not _visible(page, "svc:ghost/ghost-app") and not _visible(page, "ns:ghost")
    assert _edge(page, "e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse")["visible"] is True
    status = page.locator("#graph-status")
    expect(status).to_have_text(re.compile(r"^\d+ nodes, 8 edges, 7 policy-only hidden$"))
    nodes = int(status.inner_text().split()[0])
    _shot(page, "graph-demo")

    page.check("input[name=idle]")
    for edge_id in idle:
        assert _edge(page, edge_id)["visible"] is True, edge_id
    assert _edge(page, idle[1])["display"] == "policy-only · 0 rps"
    assert _visible(page, "svc:ghost/ghost-app") and _visible(page, "ns:ghost")
    expect(status).to_have_text(f"{nodes + 2} nodes, 15 edges (7 policy-only)")
    assert "idle=1" in page.url
    _shot(page, "graph-demo-policy-only")
    page.evaluate(
        "() => { const p = mbGraph.cy.getElementById('svc:bookstore/bookstore').position();"
        " mbGraph.cy.zoom({level: 1.6, position: p}); }"
    )
    assert page.evaluate("mbGraph.locksDrawn") > 0
    _shot(page, "graph-demo-zoomed")

    # The box's state is in the URL: a reload (or a link) shows them too; unticking hides them again.
    page.reload()
    _renders_at_least(page, 1)
    expect(page.locator("input[name=idle]")).to_be_checked()
    assert _edge(page, idle[0])["visible"] is True
    page.uncheck("input[name=idle]")
    assert _edge(page, idle[0])["visible"] is False
    assert "idle=1" not in page.url


def test_it_labels_the_denied_edge_with_its_rate(page, live_server, viewer, demo_mesh):
    _login(page, live_server)
    _open_graph(page, live_server)
    edge = _edge(page, "e:wl:bookthief/bookthief>svc:bookstore/bookstore")
    assert edge["visible"] is True
    assert edge["display"] == "denied 2 rps · ⇥ rate limit"  # bookstore's UpstreamTrafficSetting
    assert "denied" in edge["classes"].split() and "idle" not in edge["classes"].split()
    page.evaluate(
        "() => { mbGraph.cy.getElementById('e:wl:bookthief/bookthief>svc:bookstore/bookstore').emit('tap'); }"
    )
    assert "denied\n2.0 req/s refused by policy" in page.locator("#graph-panel").inner_text()


def test_it_draws_two_splits_on_one_root_with_a_warning(page, live_server, viewer, two_splits):
    _login(page, live_server)
    _open_graph(page, live_server)
    ours = _edge(page, "split:bookstore/bookstore-split>bookstore-v2")
    theirs = _edge(page, "split:bookstore/bookstore-v2-only>bookstore-v2")
    assert ours["visible"] and theirs["visible"]
    assert ours["display"] == "⚠ bookstore-split:\nweight 25% · observed 38%"
    assert theirs["display"] == "⚠ bookstore-v2-only:\nweight 100% · observed unknown"
    assert _edge(page, "split:bookstore/bookstore-split>bookstore-v1")["visible"]
    warning = page.locator("#graph-warnings")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text(
        "2 TrafficSplits for root bookstore/bookstore: bookstore-split, bookstore-v2-only; OSM uses only one of them"
    )
    root = page.evaluate(
        "() => { const n = mbGraph.cy.getElementById('svc:bookstore/bookstore');"
        " return {label: n.style('label'), warning: n.hasClass('warning')}; }"
    )
    assert root == {"label": "⚠ bookstore", "warning": True}
    page.evaluate("() => { mbGraph.cy.getElementById('svc:bookstore/bookstore').emit('tap'); }")
    expect(page.locator("#graph-panel ul.warnings")).to_contain_text("OSM uses only one of them")
    page.evaluate("() => { mbGraph.cy.getElementById('split:bookstore/bookstore-v2-only>bookstore-v2').emit('tap'); }")
    expect(page.locator("#graph-panel ul.warnings")).to_contain_text("2 TrafficSplits for root bookstore/bookstore")
    _shot(page, "graph-two-splits")


def test_it_finds_hides_and_explains_a_bad_expression(page, live_server, viewer, mesh):
    _login(page, live_server)
    _open_graph(page, live_server)
    page.fill("input[name=hide]", "ns=osm-system or ns=default")
    page.fill("input[name=find]", "error>1%")
    _submit(page, "find=error%3E1%25&hide=ns%3Dosm-system+or+ns%3Ddefault")
    assert not _visible(page, "svc:osm-system/osm-controller")
    assert page.evaluate("mbGraph.cy.getElementById('svc:bookstore/bookstore-v2').hasClass('found')")
    assert "find=error%3E1%25" in page.url

    page.fill("input[name=find]", "rps>")
    page.click("#graph-form button[type=submit]")
    error = page.locator("#graph-error")
    error.wait_for(state="visible")
    assert error.inner_text() == "Find: 'rps>' at character 1 needs a value after >, e.g. rps>10"


def test_it_exports_what_is_shown_as_png_svg_and_json(page, live_server, viewer, demo_mesh, tmp_path):
    _login(page, live_server)
    _open_graph(page, live_server, "?hide=ns%3Dosm-system")
    for kind, magic in (("png", b"\x89PNG"), ("svg", b"<svg"), ("json", b"{")):
        with page.expect_download() as download:
            page.click(f"button[data-graph={kind}]")
        path = tmp_path / f"graph.{kind}"
        download.value.save_as(path)
        content = path.read_bytes()
        assert content.startswith(magic), (kind, content[:40])
        # Neither the filtered nor the policy-only elements.
        assert b"osm-controller" not in content and b"ghost-app" not in content
        if kind == "png":
            shutil.copy(path, SCREENSHOTS / "graph-export.png")  # the padlocks drawn over Cytoscape's picture
        if kind == "svg":
            assert b"weight 75% \xc2\xb7 observed 62%" in content and b"bookwarehouse" in content
            assert b"denied 2 rps" in content
            assert content.count(b"<image ") == 6  # a padlock per shown traffic and ingress edge
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


def test_it_preloads_its_data_and_asks_for_it_once(page, live_server, viewer, mesh):
    """The page names its data URL in a preload link (fetched while the scripts load), written as the script writes it
    (URLSearchParams: `*` kept, `~` and spaces encoded), so the script's fetch takes the preloaded response."""
    _login(page, live_server)
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/graph/data" in r.url else None)
    query = "?ns=bookwarehouse&ns=bookstore&find=name%3Dbook*%20rps%3E1&hide=%20ns%3Dosm~system%20&idle=1"
    _open_graph(page, live_server, query)
    page.wait_for_timeout(300)
    assert len(asked) == 1, asked
    assert asked[0].endswith(
        "/graph/data?ns=bookstore&ns=bookwarehouse&find=name%3Dbook*+rps%3E1&hide=ns%3Dosm%7Esystem&idle=1"
    )
    assert page.locator("link[rel=preload][as=fetch]").get_attribute("href") == asked[0].removeprefix(live_server.url)
    assert not [e for e in page.errors if "preload" in e], page.errors
