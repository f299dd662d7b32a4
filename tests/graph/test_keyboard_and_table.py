"""The graph without a mouse: the focused graph moves its selection between nodes with the arrow keys, says each
selection aloud (an aria-live line) and opens a service on Enter; the Table view lists the edges the graph shows."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser_fixtures import at_path, login, screenshot

from .test_browser import _open_graph

SELECTED = "() => { const s = mbGraph.cy.nodes(':selected'); return s.length ? s[0].id() : null; }"
SHOWN_EDGES = """() => mbGraph.cy.edges().filter((e) => !e.hasClass('off')).map((e) => {
  const name = (d) => d.kind === 'namespace' ? 'namespace ' + d.name
    : (d.namespace ? d.namespace + '/' : '') + (d.display || d.name);
  return [name(e.source().data()), name(e.target().data())].join(' -> ');
})"""


def test_it_moves_the_selection_with_the_keys_and_says_where_it_is(page, live_server, viewer, mesh):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    _open_graph(page, live_server)
    page.focus("#cy")
    page.keyboard.press("Home")
    first = page.evaluate(SELECTED)
    assert first is not None
    expect(page.locator("#graph-selection")).to_have_text(
        re.compile(r"^Selected: .+, \d+ inbound edges?, \d+ outbound")
    )
    expect(page.locator("#graph-panel h2")).to_be_visible()

    visited = {first}
    for key in ("ArrowRight", "ArrowDown", "ArrowLeft", "ArrowUp", "ArrowRight", "ArrowDown"):
        page.keyboard.press(key)
        visited.add(page.evaluate(SELECTED))
    assert len(visited) >= 3, visited  # the keys walk across the graph, not in place

    # The announced name is the selected node's, and the side panel shows it as a click would.
    said = page.locator("#graph-selection").inner_text()
    panel = page.locator("#graph-panel h2").inner_text()
    assert panel.split(" ")[0] in said

    # Enter opens the selected node's page.
    page.keyboard.press("Home")
    target = page.evaluate(SELECTED)
    node_url = page.evaluate("(id) => { return mbGraph.cy.getElementById(id).data('url') || null; }", target)
    assert node_url and node_url.startswith("/"), (target, node_url)
    page.keyboard.press("Enter")
    page.wait_for_url(at_path(node_url))
    assert not [e for e in page.errors if "Content Security Policy" in e], page.errors


def test_it_lists_the_edges_the_graph_shows_in_a_table(page, live_server, viewer, mesh):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    _open_graph(page, live_server)
    view = page.locator("#graph-table-view")
    expect(view).to_be_hidden()
    page.click("#graph-table-toggle")
    expect(view).to_be_visible()
    expect(page.locator("#graph-table-toggle")).to_have_attribute("aria-expanded", "true")

    shown = sorted(page.evaluate(SHOWN_EDGES))
    rows = view.locator("tbody tr")
    listed = sorted(f"{r[0]} -> {r[1]}" for r in (row.locator("td").all_inner_texts() for row in rows.all()))
    assert listed == shown and len(shown) == 8
    expect(view.locator(".graph-table-count")).to_have_text("8 edges")
    row = view.locator("tbody tr", has_text="bookwarehouse/mysql").first
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "bookwarehouse/bookwarehouse" and cells[6] == "mTLS"
    buyer = view.locator("tbody tr", has_text="bookbuyer").first.locator("td").all_inner_texts()
    assert buyer[1] == "bookstore/bookstore" and buyer[2] == "HTTP" and buyer[3].endswith("req/s")
    screenshot(page, "graph-table")

    # A filter of the graph is a filter of the table.
    page.fill("#graph-form input[name=hide]", "ns=bookwarehouse")
    page.click("#graph-form button[type=submit]")
    expect(view.locator("tbody tr", has_text="bookwarehouse/mysql")).to_have_count(0)
    assert sorted(page.evaluate(SHOWN_EDGES)) == sorted(
        f"{r[0]} -> {r[1]}" for r in (row.locator("td").all_inner_texts() for row in view.locator("tbody tr").all())
    )
