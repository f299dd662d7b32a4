"""The look of finding things and of sortable tables, in both schemes: the header's search results open over the page
(the page does not move), the shortcuts list is a card of the site's colours, a sorted column says its direction
with an arrow's shape (not a colour), and the graph's selection line and table view are styled. Screenshots go to
var/screenshots/find-*.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import login, screenshot
from tests.graph.conftest import BOOKSTORE_EDGES, add_edges

VIEWPORT = {"width": 1400, "height": 900}
SURFACE = {"light": "rgb(255, 255, 255)", "dark": "rgb(26, 32, 41)"}  # --surface-1 of each scheme

BOX = "(sel) => { const r = document.querySelector(sel).getBoundingClientRect(); return [r.top, r.bottom, r.left]; }"
AFTER = "(sel) => getComputedStyle(document.querySelector(sel), '::after').content"


@pytest.fixture
def with_edges(viewer, bookstore):
    add_edges(bookstore, BOOKSTORE_EDGES)
    return bookstore


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_it_shows_search_results_over_the_page_and_styles_shortcuts_sorting_and_the_graph_table(
    browser, live_server, with_edges, scheme
):
    context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
    page = context.new_page()
    login(page, live_server.url, "vera", "a-long-viewer-pass")

    heading = page.evaluate(BOX, "main h1")
    page.fill("#global-search", "book")
    hits = page.locator("#search-hits")
    expect(hits.locator(".search-group").first).to_be_visible()
    expect(hits).to_have_css("position", "absolute")
    expect(hits).to_have_css("background-color", SURFACE[scheme])
    assert page.evaluate(BOX, "main h1") == heading  # over the page: nothing below the header moved
    assert page.evaluate(BOX, "#search-hits")[1] > heading[0]  # and it covers the page's top
    expect(hits.locator(".kind").first).to_have_css("border-top-style", "solid")  # the kind is a small badge
    screenshot(page, f"find-search-{scheme}")
    page.keyboard.press("Escape")
    expect(hits).to_be_hidden()  # emptied: an empty list takes no room and draws no box

    page.locator("main h1").click()
    page.keyboard.press("?")
    dialog = page.locator("dialog#shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_css("background-color", SURFACE[scheme])
    expect(dialog.locator("kbd").first).to_have_css("border-top-style", "solid")
    screenshot(page, f"find-shortcuts-{scheme}")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # A sortable table: unsorted columns show both directions, the sorted one its own; the arrow is text, so it
    # does not depend on colour.
    page.goto(f"{live_server.url}/services/bookstore/bookstore-v1/")
    sort = "table.pods thead th:nth-child(1) button.sort"
    expect(page.locator(".table-filter input[data-table-filter=pods]")).to_be_visible()
    assert page.evaluate(AFTER, sort) == '"↕"'
    page.click(sort)
    assert page.evaluate(AFTER, sort) == '"▲"'
    page.click(sort)
    assert page.evaluate(AFTER, sort) == '"▼"'
    expect(page.locator(sort)).to_have_css("background-color", "rgba(0, 0, 0, 0)")  # reads as the header's text
    page.locator("table.pods").scroll_into_view_if_needed()
    screenshot(page, f"find-table-{scheme}")

    page.goto(f"{live_server.url}/graph/")
    expect(page.locator("body")).to_have_attribute("data-graph-renders", re.compile(r"^[1-9]"), timeout=20000)
    page.focus("#cy")
    page.keyboard.press("Home")
    selection = page.locator("#graph-selection")
    expect(selection).to_have_text(re.compile("^Selected: "))
    expect(selection).not_to_have_css("background-color", "rgba(0, 0, 0, 0)")
    page.click("#graph-table-toggle")
    view = page.locator("#graph-table-view")
    expect(view).to_be_visible()
    expect(view).to_have_css("background-color", SURFACE[scheme])
    view.scroll_into_view_if_needed()
    screenshot(page, f"find-graph-{scheme}")
    context.close()
