"""Namespace aggregation and level of detail in a real browser (Debian's chromium via Playwright): collapsed above the
node count with summed KPIs, opened by a click where the namespace was, positions kept across collapse, expand and
reload; labels only once zoomed in; a refresh patches the elements it has. Functional only: timings live in
`python -m lab.bench graph`."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.metrics.models import EdgeKPI

from .conftest import add_edges
from .test_browser import _assert_same_positions, _login, _open_graph, _positions, _renders_at_least, _shot, _visible
from .test_graph import _synthetic

BOOKSTORE = ["svc:bookstore/bookstore", "svc:bookstore/bookstore-v1", "svc:bookstore/bookstore-v2"]


@pytest.fixture
def collapse_above_5(settings):
    """The bookstore demo has 13 nodes: above 5, the page starts with every namespace collapsed."""
    settings.MESHBOARD_GRAPH_COLLAPSE_ABOVE = 5


def _namespaces(page) -> dict[str, dict]:
    """How each namespace is drawn: collapsed or open (a box), and the number of its nodes drawn."""
    return page.evaluate(
        "() => { const out = {}; mbGraph.model.order.forEach((ns) => { const n = mbGraph.cy.getElementById('ns:' + ns);"
        " out[ns] = {collapsed: n.hasClass('collapsed'), box: n.hasClass('box'),"
        " drawn: mbGraph.model.members[ns].filter((id) => mbGraph.cy.getElementById(id).length).length}; });"
        " return out; }"
    )


def _node(page, node_id: str) -> dict:
    return page.evaluate(
        "(id) => { const n = mbGraph.cy.getElementById(id); if (!n.length) return null; const d = n.data();"
        " return {members: d.members, services: d.services, rps: d.rps, error: d.error, p99_ms: d.p99_ms,"
        " health: d.health, health_counts: d.health_counts, label: n.style('label'), x: n.position().x,"
        " y: n.position().y, classes: n.classes().join(' ')}; }",
        node_id,
    )


def _click(page, node_id: str) -> None:
    """A real click on a node, where Chromium draws it."""
    spot = page.evaluate(
        "(id) => { const n = mbGraph.cy.getElementById(id); const p = n.renderedPosition(); return [p.x, p.y]; }",
        node_id,
    )
    page.locator("#cy").click(position={"x": spot[0], "y": spot[1]})


def _centre(positions: dict, ids: list[str]) -> tuple[float, float]:
    xs, ys = [positions[i][0] for i in ids], [positions[i][1] for i in ids]
    return (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2


def test_it_collapses_every_namespace_above_the_node_count_with_summed_kpis(
    page, live_server, viewer, mesh, collapse_above_5
):
    _login(page, live_server)
    _open_graph(page, live_server)
    drawn = _namespaces(page)
    assert drawn and all(d["collapsed"] and d["drawn"] == 0 for d in drawn.values()), drawn
    assert page.evaluate("mbGraph.cy.nodes().filter((n) => n.data('kind') !== 'namespace').length") == 0
    expect(page.locator("#graph-status")).to_contain_text(f"{len(drawn)} of {len(drawn)} namespaces collapsed")

    # bookstore: its three services' KPIs summed (20 + 10 + 10 req/s; 2 + 0 + 2 5xx/s), the worst p99 (v2's 60 ms).
    ns = _node(page, "ns:bookstore")
    assert (ns["members"], ns["services"], ns["rps"], ns["p99_ms"]) == (3, 3, 40.0, 60.0)
    assert ns["error"] == pytest.approx(0.1)
    assert ns["health_counts"]["failing"] + ns["health_counts"]["healthy"] == 3 and ns["health"] == "failing"
    assert ns["label"] == "bookstore\n3 nodes · 40 rps · 10% 5xx"
    # The edges into it folded into one per caller: bookbuyer's 7.5 + 2.5 req/s to the backends, drawn to the root.
    folded = page.evaluate(
        "() => { const e = mbGraph.cy.getElementById('agg:ns:bookbuyer>ns:bookstore'); const d = e.data();"
        " return {rps: d.rps, error: d.error, edges: d.edges, kind: d.kind, label: d.label}; }"
    )
    assert (folded["rps"], folded["edges"], folded["kind"]) == (10.0, 1, "aggregate")
    assert folded["error"] == pytest.approx(0.05)
    assert folded["label"] == "1 edge · 10 rps · 5% 5xx · worst p99 60 ms"

    # The tooltip and the side panel say the same.
    page.evaluate("() => { mbGraph.cy.getElementById('ns:bookstore').emit('mouseover'); }")
    expect(page.locator("#graph-tip")).to_contain_text("namespace bookstore: 3 nodes · 2 failing, 1 healthy")
    expect(page.locator("#graph-tip")).to_contain_text("40 req/s · 5xx 10.0% · worst p99 60.0 ms")
    _shot(page, "graph-collapsed")
    assert not page.errors, page.errors


def test_it_opens_a_namespace_on_click_where_it_was_and_keeps_its_positions(
    page, live_server, viewer, mesh, collapse_above_5
):
    _login(page, live_server)
    _open_graph(page, live_server)
    was = _node(page, "ns:bookstore")
    _click(page, "ns:bookstore")
    _renders_at_least(page, 2)
    assert page.evaluate("mbGraph.timings.mode") == "expand"
    drawn = _namespaces(page)
    assert drawn["bookstore"] == {"collapsed": False, "box": True, "drawn": 3}
    assert all(d["collapsed"] for ns, d in drawn.items() if ns != "bookstore")
    assert all(_visible(page, i) for i in BOOKSTORE)
    assert "expand=bookstore" in page.url
    # Laid out on their own, centred where the collapsed node was; the other namespaces did not move.
    opened = _positions(page)
    cx, cy = _centre(opened, BOOKSTORE)
    assert abs(cx - was["x"]) <= 1 and abs(cy - was["y"]) <= 1, (cx, cy, was)
    others = _node(page, "ns:bookbuyer")
    # Edges between an open and a collapsed namespace end on the collapsed one.
    assert page.evaluate("mbGraph.cy.getElementById('agg:ns:bookbuyer>svc:bookstore/bookstore').data('rps')") == 10.0
    expect(page.locator("#graph-panel h2")).to_have_text("namespace bookstore")
    _shot(page, "graph-expanded")

    # Collapsed again from the panel: one node at the centre of its nodes; opened again: the same positions.
    page.locator("#graph-panel button.graph-ns-toggle").click()
    _renders_at_least(page, 3)
    assert _namespaces(page)["bookstore"]["collapsed"]
    again = _node(page, "ns:bookstore")
    assert abs(again["x"] - cx) <= 1 and abs(again["y"] - cy) <= 1
    _click(page, "ns:bookstore")
    _renders_at_least(page, 4)
    _assert_same_positions(opened, _positions(page), BOOKSTORE)

    # A reload opens what the URL opens, with the kept positions: nothing laid out again.
    page.reload()
    _renders_at_least(page, 1)
    assert page.evaluate("mbGraph.timings.mode") == "preset"
    assert _namespaces(page)["bookstore"] == {"collapsed": False, "box": True, "drawn": 3}
    _assert_same_positions(opened, _positions(page), BOOKSTORE)
    moved = _node(page, "ns:bookbuyer")
    assert (moved["x"], moved["y"]) == (others["x"], others["y"])
    assert not page.errors, page.errors


def test_it_collapses_a_namespace_by_hand_below_the_node_count(page, live_server, viewer, mesh):
    _login(page, live_server)
    _open_graph(page, live_server)
    assert not any(d["collapsed"] for d in _namespaces(page).values())  # 13 nodes: all drawn
    first = _positions(page)
    page.evaluate("() => { mbGraph.cy.getElementById('ns:bookstore').emit('tap'); }")
    page.locator("#graph-panel button.graph-ns-toggle").click()
    _renders_at_least(page, 2)
    assert _namespaces(page)["bookstore"] == {"collapsed": True, "box": False, "drawn": 0}
    assert "collapse=bookstore" in page.url
    node = _node(page, "ns:bookstore")
    cx, cy = _centre(first, BOOKSTORE)
    assert abs(node["x"] - cx) <= 1 and abs(node["y"] - cy) <= 1
    # The edges into it: one per caller, on the collapsed node.
    assert _visible(page, "agg:wl:bookbuyer/bookbuyer>ns:bookstore")
    page.reload()
    _renders_at_least(page, 1)
    assert _namespaces(page)["bookstore"]["collapsed"]
    _click(page, "ns:bookstore")
    _renders_at_least(page, 2)
    _assert_same_positions(first, _positions(page))
    assert not page.errors, page.errors


def test_it_labels_only_once_zoomed_in_and_patches_what_a_refresh_changes(page, live_server, viewer, mesh):
    _login(page, live_server)
    _open_graph(page, live_server)
    label = "(id) => { const e = mbGraph.cy.getElementById(id); return e.style('label'); }"
    edge = "e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse"
    assert page.evaluate(label, "svc:bookstore/bookstore") == "bookstore"
    assert page.evaluate(label, edge) == "5 rps · 0% 5xx · p99 6 ms"

    # Zoomed out past the point where a 12 px label is 6 px on screen: no label at all, on nodes or edges.
    page.evaluate("() => { mbGraph.cy.zoom(0.3); mbGraph.updateLod(); }")
    assert page.evaluate("mbGraph.cy.elements('.lod').length") == 0
    assert page.evaluate(label, "svc:bookstore/bookstore") == ""
    assert page.evaluate(label, edge) == ""
    assert page.evaluate(label, "ns:bookstore") == "bookstore"  # a box keeps its name
    # Zoomed in on bookwarehouse: what is in view is labelled, what is far out of view is not.
    page.evaluate(
        "() => { const n = mbGraph.cy.getElementById('svc:bookwarehouse/mysql');"
        " mbGraph.cy.zoom({level: 3, position: n.position()}); mbGraph.cy.center(n); mbGraph.updateLod(); }"
    )
    assert page.evaluate(label, "svc:bookwarehouse/mysql") == "mysql"
    in_view = page.evaluate("mbGraph.cy.elements('.lod').length")
    assert 0 < in_view < page.evaluate("mbGraph.cy.elements().not('.off').length")

    # A refresh patches: the elements drawn stay the same objects, only the changed one gets its new data.
    page.evaluate("() => { mbGraph.cy.elements().forEach((e) => { e.scratch('_kept', true); }); }")
    EdgeKPI.objects.filter(destination_service="bookwarehouse", source_service="bookstore").update(request_rate=777.0)
    page.evaluate("htmx.trigger(document.body, 'mb:refresh')")
    _renders_at_least(page, 2)
    assert page.evaluate("mbGraph.cy.elements().filter((e) => !e.scratch('_kept')).length") == 0
    assert page.evaluate("(id) => mbGraph.cy.getElementById(id).data('label')", edge).startswith("777 rps")
    assert re.match(r"^\d+ nodes", page.locator("#graph-status").inner_text())
    assert not page.errors, page.errors


def test_a_large_graph_draws_outlines_and_arrowheads_only_near_enough(page, live_server, viewer, kubeapi_factory):
    """Above 300 nodes, seen from afar, edges are Cytoscape's cheapest lines (haystack: it draws no arrowhead, a
    denial's tee included) and a node has no plain outline (both under a pixel there); from half the labels' zoom,
    what is in view gets them back. An outline that says something (no sidecar, a split's root or backend) and a loop
    (a service calling itself) are drawn at every zoom."""
    cluster = _synthetic(7, 320, kubeapi_factory)
    some = EdgeKPI.objects.filter(cluster=cluster).order_by("pk").first()
    add_edges(cluster, {(some.source_namespace, "self", some.source_namespace, "self"): (1.0, 0.0, 2.0, None, 0.0)})
    _login(page, live_server)
    _open_graph(page, live_server, f"?cluster={cluster.name}")
    look = (
        "() => { const cy = mbGraph.cy; const edges = cy.edges().not('.off').filter((e) => !e.isLoop());"
        " const nodes = cy.nodes('.service').not('.off'); const ext = cy.extent();"
        " const inView = (p) => p.x > ext.x1 && p.x < ext.x2 && p.y > ext.y1 && p.y < ext.y2;"
        " const seen = (e) => inView(e.source().position()) && inView(e.target().position());"
        " const plain = nodes.filter((n) => n.hasClass('sidecars-all')).not('.root, .backend, .warning');"
        " const unmeshed = cy.nodes('.sidecars-none').not('.off');"
        " const loop = cy.edges().filter((e) => e.isLoop());"
        " return {zoom: cy.zoom(), nodes: nodes.length, unmeshed: unmeshed.length, loops: loop.length,"
        " curves: [...new Set(edges.filter(seen).map((e) => e.style('curve-style')))],"
        " arrows: [...new Set(edges.filter(seen).not('.denied, .policy-denied, .ratelimit')"
        "   .map((e) => e.style('target-arrow-shape')))],"
        " outlines: [...new Set(plain.filter((n) => inView(n.position())).map((n) => n.style('border-width')))],"
        " far_curves: [...new Set(edges.filter((e) => !seen(e) && !e.hasClass('near'))"
        "   .map((e) => e.style('curve-style')))],"
        " unmeshed_outline: [...new Set(unmeshed.map((n) => n.style('border-width') + ' ' + n.style('border-style')))],"
        " loop: loop.style('curve-style') + ' ' + loop.style('target-arrow-shape')}; }"
    )
    afar = page.evaluate(look)
    assert afar["nodes"] > 300 and afar["zoom"] < 0.25 and afar["loops"] == 1, afar
    assert (afar["curves"], afar["arrows"], afar["outlines"]) == (["haystack"], ["none"], ["0px"]), afar
    # A plain one 2 px, a split's backend 4 px (its root 3 px), as zoomed in.
    assert afar["unmeshed"] and "2px dashed" in afar["unmeshed_outline"], afar
    assert set(afar["unmeshed_outline"]) <= {"2px dashed", "3px dashed", "4px dashed"}, afar
    assert afar["loop"] == "bezier triangle"  # Cytoscape draws every loop as a bezier curve

    page.evaluate(
        "() => { const cy = mbGraph.cy; const n = cy.nodes('.service').not('.off')[0];"
        " cy.zoom({level: 0.3, position: n.position()}); cy.center(n); mbGraph.updateLod(); }"
    )
    near = page.evaluate(look)
    assert near["zoom"] == pytest.approx(0.3)
    assert (near["curves"], near["arrows"], near["outlines"]) == (["straight"], ["triangle"], ["2px"]), near
    assert near["far_curves"] == ["haystack"], near  # out of view: as from afar
    assert page.evaluate("mbGraph.cy.elements('.lod').length") == 0  # labels only from twice that zoom
    page.evaluate("() => { mbGraph.cy.zoom(0.1); mbGraph.updateLod(); }")
    assert page.evaluate("mbGraph.cy.elements('.near').length") == 0
    assert not page.errors, page.errors


def test_expand_all_lays_the_namespaces_out_between_frames_and_says_so(
    page, live_server, viewer, kubeapi_factory, collapse_above_5
):
    """At 5,000 services "Expand all" lays out about a hundred namespaces: seconds. Above 300 nodes they are laid out
    a few at a time with the page free in between, the count on the status line, then drawn in one go: the same
    picture as laying them out at once ("Re-layout")."""
    cluster = _synthetic(7, 320, kubeapi_factory)
    _login(page, live_server)
    _open_graph(page, live_server, f"?cluster={cluster.name}")
    names = list(_namespaces(page))
    members = page.evaluate("() => mbGraph.model.members")
    assert len(names) > 3 and sum(len(ids) for ids in members.values()) > 300
    # Every text the status line takes, as the page's own tasks leave it; one namespace a turn.
    page.evaluate(
        "() => { window.mbLines = []; const line = document.getElementById('graph-status');"
        " new MutationObserver(() => mbLines.push(line.textContent))"
        ".observe(line, {childList: true, characterData: true, subtree: true});"
        " mbGraph.openStepMs = 0; mbGraph.sayEveryMs = 0; }"
    )
    # "Collapse all" in the same task as "Expand all": the opening gives way (nothing to collapse), its line goes.
    page.evaluate(
        "() => { document.querySelector('[data-graph=expand-all]').click();"
        " document.querySelector('[data-graph=collapse-all]').click(); }"
    )
    page.wait_for_timeout(1000)
    assert page.locator("body").get_attribute("data-graph-renders") == "1"
    expect(page.locator("#graph-status")).to_contain_text(f"{len(names)} of {len(names)} namespaces collapsed")
    assert page.locator("#cy").get_attribute("aria-busy") is None
    page.evaluate("() => { mbLines.length = 0; }")

    page.get_by_role("button", name="Expand all").click()
    _renders_at_least(page, 2)

    n = len(names)
    lines = page.evaluate("mbLines")
    progress = [line for line in lines if line.startswith(f"Opening {n} namespaces")]
    # The last turn's count gives way to the next line in the same task: the drawing's, shown before it starts.
    assert progress == [f"Opening {n} namespaces: laid out {i} of {n}\u2026" for i in range(1, n)] + [
        f"Opening {n} namespaces: drawing\u2026"
    ], lines
    assert lines[-1] == page.locator("#graph-status").text_content() and "namespaces collapsed" not in lines[-1]
    assert page.locator("#cy").get_attribute("aria-busy") is None
    drawn = _namespaces(page)
    assert all(not d["collapsed"] and d["box"] for d in drawn.values()), drawn
    opened = _positions(page)
    assert len(opened) > 300
    _shot(page, "graph-expanded-all")

    # Laid out at once from nothing: the same positions.
    page.get_by_role("button", name="Re-layout").click()
    _renders_at_least(page, 3)
    _assert_same_positions(opened, _positions(page))

    # Collapsed and opened again: kept positions, nothing laid out, no progress to show.
    page.get_by_role("button", name="Collapse all").click()
    _renders_at_least(page, 4)
    page.evaluate("() => { mbLines.length = 0; }")
    page.get_by_role("button", name="Expand all").click()
    _renders_at_least(page, 5)
    assert not [line for line in page.evaluate("mbLines") if line.startswith("Opening")]
    _assert_same_positions(opened, _positions(page))
    assert not page.errors, page.errors
