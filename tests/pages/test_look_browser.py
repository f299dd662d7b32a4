"""The look of the pages in a real browser: light and dark schemes (the system's, or the user's choice kept on the
server), every control styled by our stylesheet, and the overview's weight on a first load."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import login, screenshot
from tests.graph.conftest import BOOKSTORE_EDGES, add_edges
from tests.pages.test_browser import bookstore_metrics  # noqa: F401 (a fixture: a real Prometheus behind bookstore)

VIEWPORT = {"width": 1400, "height": 900}
SERVICE = "/services/bookstore/bookstore-v1/"
# Every page of the site a viewer opens, with the element that says it is drawn.
PAGES = [
    ("overview", "/", "table.services"),
    ("workloads", "/?show=workloads", "table.workloads"),
    ("service", SERVICE, ".chart .main-svg"),
    ("workload", "/workloads/bookstore/deployment/bookstore-v2/", "section.kpis"),
    ("graph", "/graph/", "#cy canvas"),
    ("splits", "/splits/", "section.split"),
    ("editor", "/splits/bookstore/bookstore-split/", "table.weights"),
    ("compare", "/splits/bookstore/bookstore-split/compare/", "h1"),
    ("audit", "/splits/audit/", "h1"),
    ("policies", "/policies/", "h1"),
    ("mesh", "/mesh/", "h1"),
    ("migrate", "/migrate/", "h1"),
    ("history", "/history/", "h1"),
    ("not-found", "/no/such/page/", "[data-not-found]"),
]


def _context(browser, **options):
    return browser.new_context(viewport=VIEWPORT, **options)


def _colours(page, selector: str) -> list[str]:
    return page.evaluate(
        "(sel) => { const s = getComputedStyle(document.querySelector(sel)); return [s.backgroundColor, s.color]; }",
        selector,
    )


def _chart_colours(page) -> list[str]:
    """A Plotly chart's paper colour (the background Plotly paints on its svg) and its title's text colour."""
    page.wait_for_selector(".chart .gtitle", timeout=15000)
    return page.evaluate(
        "() => { const svg = document.querySelector('.chart .main-svg');"
        " return [getComputedStyle(svg).backgroundColor, document.querySelector('.chart .gtitle').style.fill]; }"
    )


def _graph_colours(page) -> list[str]:
    """The graph's container background and the colour Cytoscape draws node labels in."""
    expect(page.locator("body")).to_have_attribute("data-graph-renders", re.compile(r"^[1-9]\d*$"), timeout=20000)
    # Health is not told by colour alone: the failing service carries a mark (an SVG drawn on the node).
    mark = page.evaluate(
        "() => String(mbGraph.cy.nodes().filter((n) => n.data('name') === 'bookstore-v2')[0].style('background-image'))"
    )
    assert mark.startswith("data:image/svg+xml"), mark
    return page.evaluate(
        "() => { const rule = mbGraph.cy.style().json().find((r) => r.selector === 'node.lod');"
        " return [getComputedStyle(document.querySelector('.cy-box')).backgroundColor, String(rule.style.color)]; }"
    )


def _look(browser, live_server, scheme: str) -> dict[str, list[str]]:
    context = _context(browser, color_scheme=scheme)
    page = context.new_page()
    try:
        login(page, live_server.url, "vera", "a-long-viewer-pass")
        seen = {"body": _colours(page, "body"), "table": _colours(page, "table.services")}
        page.goto(f"{live_server.url}{SERVICE}")
        seen["chart"] = _chart_colours(page)
        page.goto(f"{live_server.url}/graph/")
        seen["graph"] = _graph_colours(page)
        return seen
    finally:
        context.close()


@pytest.fixture
def looked_at(viewer, operator, bookstore_metrics):  # noqa: F811
    add_edges(bookstore_metrics, BOOKSTORE_EDGES)
    return bookstore_metrics


def test_it_follows_the_systems_dark_scheme_on_pages_charts_and_the_graph(browser, live_server, looked_at):
    light, dark = _look(browser, live_server, "light"), _look(browser, live_server, "dark")
    for part in ("body", "table", "chart", "graph"):
        background, text = light[part], dark[part]
        assert background[0] != text[0], (part, "background", light[part], dark[part])
        assert background[1] != text[1], (part, "text", light[part], dark[part])
    assert light["body"] == ["rgb(244, 246, 248)", "rgb(29, 36, 48)"]  # our own colours, not the browser's
    assert dark["body"] == ["rgb(17, 21, 27)", "rgb(227, 231, 236)"]


def test_it_keeps_the_users_choice_over_the_system_after_a_reload_and_in_another_browser(
    browser, live_server, looked_at
):
    context = _context(browser, color_scheme="light")
    page = context.new_page()
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}{SERVICE}")
    light_chart = _chart_colours(page)
    light_body = _colours(page, "body")

    page.get_by_role("button", name="Dark").click()  # through htmx: the page switches in place, charts included
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.get_by_role("button", name="Dark")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".chart .main-svg").first).not_to_have_css("background-color", light_chart[0])
    assert _colours(page, "body") != light_body

    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")  # written by the server: no flash
    assert _chart_colours(page) != light_chart
    context.close()

    elsewhere = _context(browser, color_scheme="light")  # another browser of the same user, the system light
    other = elsewhere.new_page()
    login(other, live_server.url, "vera", "a-long-viewer-pass")
    expect(other.locator("html")).to_have_attribute("data-theme", "dark")
    assert _colours(other, "body")[0] == "rgb(17, 21, 27)"
    other.get_by_role("button", name="System").click()  # back to the system's scheme: light here
    expect(other.locator("html")).not_to_have_attribute("data-theme", re.compile(".*"))
    expect(other.locator("body")).to_have_css("background-color", "rgb(244, 246, 248)")
    elsewhere.close()


def test_it_switches_the_scheme_without_javascript(browser, live_server, viewer, bookstore):
    context = _context(browser, color_scheme="dark", java_script_enabled=False)
    page = context.new_page()
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/splits/")
    assert page.locator("html").get_attribute("data-theme") is None
    assert _colours(page, "body")[0] == "rgb(17, 21, 27)"  # the system is dark

    page.get_by_role("button", name="Light").click()  # a plain form post, then back to the same page
    page.wait_for_url(re.compile(r"/splits/$"))
    assert page.locator("html").get_attribute("data-theme") == "light"
    assert _colours(page, "body")[0] == "rgb(244, 246, 248)"
    context.close()


def _reference_styles(browser) -> dict[str, dict[str, str]]:
    """How Chromium draws controls nobody styled: a button, a text input, a select, a checkbox on about:blank."""
    context = _context(browser)
    page = context.new_page()
    page.goto("about:blank")
    styles = page.evaluate(
        "() => { const out = {}; for (const [key, html] of [['button', '<button>b</button>'],"
        " ['input', '<input type=search>'], ['select', '<select><option>o</option></select>'],"
        " ['checkbox', '<input type=checkbox>']]) { const box = document.createElement('div'); box.innerHTML = html;"
        " document.body.appendChild(box); const s = getComputedStyle(box.firstChild);"
        " out[key] = {radius: s.borderTopLeftRadius, border: s.borderTopColor, background: s.backgroundColor,"
        " accent: s.accentColor}; } return out; }"
    )
    context.close()
    return styles


CONTROLS = """() => Array.from(document.querySelectorAll('button, input, select')).filter((el) => {
    const r = el.getBoundingClientRect(); return el.type !== 'hidden' && r.width > 0 && r.height > 0; }).map((el) => {
    const s = getComputedStyle(el);
    const kind = el.tagName === 'INPUT' ? ((el.type === 'checkbox' || el.type === 'radio') ? 'checkbox' : 'input')
      : el.tagName.toLowerCase();
    return {kind: kind, what: el.outerHTML.slice(0, 90), radius: s.borderTopLeftRadius, border: s.borderTopColor,
      background: s.backgroundColor, accent: s.accentColor}; })"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_it_styles_every_button_input_and_select_on_every_page(browser, live_server, looked_at, scheme):
    reference = _reference_styles(browser)
    context = _context(browser, color_scheme=scheme)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    seen = 0
    for name, path, ready in PAGES:
        page.goto(f"{live_server.url}{path}")
        page.wait_for_selector(ready, timeout=20000)
        for control in page.evaluate(CONTROLS):
            default = reference[control["kind"]]
            seen += 1
            if control["kind"] == "checkbox":
                assert control["accent"] != default["accent"], (name, control)
                continue
            # Our stylesheet sets the corners and the border of every control: neither is Chromium's default.
            assert control["radius"] != default["radius"], (name, control)
            assert control["border"] != default["border"], (name, control)
        screenshot(page, f"look-{name}-{scheme}")
    assert seen > 40  # the header's controls on each page, the filters, the editor's weights...
    context.close()

    anonymous = _context(browser, color_scheme=scheme).new_page()
    anonymous.goto(f"{live_server.url}/accounts/login/")
    for control in anonymous.evaluate(CONTROLS):
        assert control["radius"] != reference[control["kind"]]["radius"], control
    screenshot(anonymous, f"look-login-{scheme}")
    anonymous.context.close()
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_it_loads_the_overview_in_under_300_kb(browser, live_server, viewer, bookstore):
    """The overview's first load (an empty cache): HTML, CSS, JS and the icon sprite, as sent over the wire."""
    signing_in = _context(browser)
    page = signing_in.new_page()
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    session = signing_in.storage_state()
    signing_in.close()

    context = _context(browser, storage_state=session)  # signed in, with an empty cache
    page = context.new_page()
    sent: dict[str, int] = {}

    def count(request) -> None:
        sizes = request.sizes()
        sent[request.url] = sizes["responseBodySize"] + sizes["responseHeadersSize"]

    page.on("requestfinished", count)
    page.goto(f"{live_server.url}/")
    page.wait_for_load_state("networkidle")
    context.close()

    names = " ".join(sent)
    assert "meshboard.css" in names and "open-props.min.css" in names and "meshboard.js" in names and "htmx" in names
    assert "plotly" not in names and "cytoscape" not in names
    total = sum(sent.values())
    print(f"overview first load: {total} bytes in {len(sent)} responses")
    assert total < 300_000, sorted(sent.items(), key=lambda kv: -kv[1])
