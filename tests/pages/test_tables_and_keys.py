"""Tables users can take away and a keyboard way around: the CSV of each table (every row, the filters applied,
formula-looking cells defused) matches the table the page shows; every table marked data-sortable sorts by a click
on its header and filters by a field above it; the keyboard shortcuts."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import expect

from apps.canary.models import WeightChange
from tests.browser_fixtures import at_path, login, screenshot

FORMULA = ("=", "+", "-", "@", "\t", "\r")
# The table as the user sees it: header cells and body rows as text (what is marked data-export-skip, such as the sort
# arrow of the overview's header, left out); the row spanning the table that says it is empty is no row.
TABLE_JS = """(selector) => {
  const text = (el) => {
    const c = el.cloneNode(true);
    c.querySelectorAll('[data-export-skip]').forEach((s) => s.remove());
    return c.textContent.replace(/\\s+/g, ' ').trim(); };
  return Array.from(document.querySelectorAll(selector)).map((t) => {
    const heads = Array.from(t.tHead.rows[t.tHead.rows.length - 1].cells);
    const keep = heads.map((h, i) => h.hasAttribute('data-export-skip') ? -1 : i).filter((i) => i >= 0);
    const rows = Array.from(t.tBodies).flatMap((b) => Array.from(b.rows))
      .filter((r) => !(r.cells.length === 1 && r.cells[0].colSpan > 1))
      .map((r) => keep.map((i) => r.cells[i] ? text(r.cells[i]) : ''));
    return { group: t.dataset.exportGroup || null, header: keep.map((i) => text(heads[i])), rows: rows };
  });
}"""


def _defused(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA) else cell


def _shown(page, selector: str) -> list[list[str]]:
    """The rows of the tables `selector` as the CSV must hold them (a group column first when they carry one)."""
    tables = page.evaluate(TABLE_JS, selector)
    assert tables, f"no {selector} on {page.url}"
    grouped = tables[0]["group"] is not None
    out = [(["Split"] if grouped else []) + tables[0]["header"]]
    for t in tables:
        out += [([t["group"]] if grouped else []) + row for row in t["rows"]]
    return [[_defused(c) for c in row] for row in out]


def _download(page) -> list[list[str]]:
    link = page.locator("a[data-csv]").first
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    raw = Path(download.path()).read_bytes()
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


@pytest.fixture
def changes(bookstore, viewer):
    hostile = '=HYPERLINK("http://evil.example","x")'
    rows = [
        ("otto", "applied", [{"service": "bookstore-v1", "weight": 90}, {"service": "bookstore-v2", "weight": 10}]),
        ("otto", "conflict", [{"service": "bookstore-v1", "weight": 50}, {"service": "bookstore-v2", "weight": 50}]),
        (hostile, "forbidden", [{"service": "@bookstore-v2", "weight": 100}]),
        ("+alice", "forbidden", [{"service": "-bookstore-v1", "weight": 100}]),
    ]
    for username, result, after in rows:
        WeightChange.objects.create(
            cluster=bookstore,
            namespace="bookstore",
            split="bookstore-split",
            username=username,
            weights_before=[{"service": "bookstore-v1", "weight": 100}],
            weights_after=after,
            result=result,
        )
    return hostile


def test_it_exports_each_table_as_the_page_shows_it_with_its_filters(page, live_server, settings, changes):
    settings.MESHBOARD_PAGE_SIZE = 2
    login(page, live_server.url, "vera", "a-long-viewer-pass")

    # The overview, filtered to a namespace and sorted: the file holds both pages of the table, in its order.
    page.goto(f"{live_server.url}/?namespace=bookstore&sort=-rps&q=book")
    first = _shown(page, "table[data-export=services]")
    page.click("nav.pager >> text=next →")
    second = _shown(page, "table[data-export=services]")
    page.goto(f"{live_server.url}/?namespace=bookstore&sort=-rps&q=book")
    exported = _download(page)
    assert exported == first + second[1:]
    assert [r[0].split(" ")[0] for r in exported[1:]] == ["bookstore", "bookstore-v1", "bookstore-v2"]
    assert exported[0][:3] == ["Service", "Namespace", "Health"]

    page.goto(f"{live_server.url}/splits/")
    exported = _download(page)
    assert exported == _shown(page, "table[data-export=splits]")
    assert exported[0][0] == "Split" and {r[0] for r in exported[1:]} == {"bookstore/bookstore-split"}

    page.goto(f"{live_server.url}/policies/")
    exported = _download(page)
    assert exported == _shown(page, "table[data-export=matrix]") and len(exported) > 1

    # The audit, filtered to one result: formula-looking cells start with ' in the file, as text in the table.
    page.goto(f"{live_server.url}/splits/audit/?result=forbidden")
    exported = _download(page)
    assert exported == _shown(page, "table[data-export=audit]")
    assert len(exported) == 3 and exported[0] == ["When", "Who", "Split", "Before", "Asked for", "Result"]
    assert {r[1] for r in exported[1:]} == {"'" + changes, "'+alice"}
    assert {r[4] for r in exported[1:]} == {"'@bookstore-v2 100", "'-bookstore-v1 100"}

    page.goto(f"{live_server.url}/mesh/")
    exported = _download(page)
    listed = page.evaluate(
        """() => Array.from(document.querySelectorAll('section.cluster')).flatMap((s) =>
             Array.from(s.querySelectorAll('.mesh-report li.finding')).map((f) => [s.dataset.cluster,
               f.querySelector('.sev').textContent.trim(), f.querySelector('.code').textContent.trim(),
               f.querySelector('strong').textContent.trim(), f.querySelector('.msg').textContent.trim(),
               f.querySelector('.fix').textContent.trim().replace(/^Fix: /, '')]))"""
    )
    assert exported[0] == ["Cluster", "Severity", "Code", "Check", "Finding", "Fix"]
    assert exported[1:] == [[_defused(c) for c in row] for row in listed] and listed


def test_it_answers_csv_in_utf8_with_every_row_over_http(viewer, bookstore, settings):
    from apps.mesh.models import Service

    settings.MESHBOARD_PAGE_SIZE = 2
    Service.objects.create(cluster=bookstore, namespace="bookstore", name="ünïcode-bücher")
    client = Client()
    assert client.login(username="vera", password="a-long-viewer-pass")
    response = client.get("/", {"namespace": "bookstore", "format": "csv", "page": "2"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r[0].split(" ")[0] for r in rows[1:]] == ["bookstore", "bookstore-v1", "bookstore-v2", "ünïcode-bücher"]


def test_it_sorts_and_filters_a_marked_table_in_the_browser(page, live_server, changes):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/splits/audit/")
    table = page.locator("table[data-sortable=audit]")
    who = table.locator("th").nth(1)
    users = lambda: table.locator("tbody tr td:nth-child(2)").all_inner_texts()  # noqa: E731
    who.get_by_role("button").click()
    expect(who).to_have_attribute("aria-sort", "ascending")
    assert users() == sorted(users(), key=str.lower)
    who.get_by_role("button").click()
    expect(who).to_have_attribute("aria-sort", "descending")
    assert users() == sorted(users(), key=str.lower, reverse=True)

    page.fill("input[data-table-filter=audit]", "conflict")
    expect(table.locator("tbody tr:visible")).to_have_count(1)
    expect(page.locator(".table-filter .filter-count")).to_have_text("1 of 4 rows")
    page.fill("input[data-table-filter=audit]", "")
    expect(table.locator("tbody tr:visible")).to_have_count(4)

    # Numbers sort as numbers: the Mesh page's object counts.
    page.goto(f"{live_server.url}/mesh/")
    counts = page.locator("table[data-sortable=counts]")
    counts.locator("th", has_text="Objects").get_by_role("button").click()
    values = [int(v) for v in counts.locator("tbody tr td:nth-child(2)").all_inner_texts()]
    assert len(values) > 3 and values == sorted(values), values

    # The page refreshes itself: a refresh keeps the sort, the filter and the focus in the filter field.
    page.fill("input[data-table-filter=counts]", "Service")
    shown = counts.locator("tbody tr:visible").all_inner_texts()
    assert shown and len(shown) < len(values)
    page.evaluate(
        "() => { document.querySelector('#clusters').dataset.old = '1'; htmx.trigger(document.body, 'mb:refresh'); }"
    )
    expect(page.locator("#clusters[data-old]")).to_have_count(0)  # swapped for a fresh one
    field = page.locator("input[data-table-filter=counts]")
    expect(field).to_have_value("Service")
    expect(field).to_be_focused()
    expect(page.locator("table[data-sortable=counts] tbody tr:visible")).to_have_count(len(shown))
    expect(page.locator("table[data-sortable=counts] th", has_text="Objects")).to_have_attribute(
        "aria-sort", "ascending"
    )
    assert not page.errors, page.errors


def test_it_lists_the_shortcuts_on_question_mark_and_goes_places_by_keys(page, live_server, viewer, bookstore):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.keyboard.press("?")
    dialog = page.locator("dialog#shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Focus the search box")
    expect(dialog).to_contain_text("Go to Graph")
    screenshot(page, "shortcuts")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Typing in a field is typing: neither "?" nor "g g" leaves the page.
    page.fill("#global-search", "")
    page.focus("#global-search")
    page.keyboard.type("gg?")
    expect(dialog).to_be_hidden()
    assert page.input_value("#global-search") == "gg?"
    page.locator("h1").click()

    page.keyboard.press("/")
    expect(page.locator("#global-search")).to_be_focused()
    page.locator("h1").click()
    page.keyboard.press("g")
    page.keyboard.press("s")
    page.wait_for_url(at_path("/splits/"))
    page.keyboard.press("g")
    page.keyboard.press("g")
    page.wait_for_url(at_path("/graph/"))
    assert re.search(r"window=", page.url)  # the view (time range) travels along, as with the navigation's links
    assert not [e for e in page.errors if "Content Security Policy" in e], page.errors
