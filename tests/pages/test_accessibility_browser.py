"""Every page passes axe-core (tests/vendor/axe-core) in Debian's chromium, in the light and the dark scheme: no
serious or critical violation. The pages are the ones the page crawler (tests/crawl.py) reaches as an operator on the
collected bookstore (KPIs, a real Prometheus behind the charts, edges, a Flagger Canary, an applied weight change),
one URL per view, plus the search results, the shortcuts list, and the 403, 404 and 500 pages.

axe is a script the page does not ship, so only this test's browser context bypasses the CSP to inject it; the same
injection is refused under the CSP in a normal context (and tests/security/test_headers.py sees the report)."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import RequestFactory
from django.urls import resolve
from django.views.defaults import server_error
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from lab.kubeapi.server import KubeAPIServer
from lab.seeds.loader import load_seed
from tests.browser_fixtures import login
from tests.crawl import crawl, crawl_as
from tests.graph.conftest import BOOKSTORE_EDGES, add_edges
from tests.helpers import change_bookstore_weights, flagger_canary
from tests.pages.test_browser import bookstore_metrics  # noqa: F401 (a fixture: a real Prometheus behind bookstore)

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"
VIEWPORT = {"width": 1400, "height": 900}
SERIOUS = ("serious", "critical")
# Pages the navigation does not lead to by itself: a search with results, a page that does not exist.
MORE_PAGES = ["/search/?q=book"]
NOT_FOUND = "/no/such/page/"
# The product's own 500 page (Django's server_error renders templates/500.html) served at this address of the live
# server: no view of ours fails on purpose, and the page must be judged with the site's CSS like the others.
SERVER_ERROR_PATH = "/__server-error__/"

RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.slice(0, 6).map((n) => n.target.join(' ')),
    summary: v.nodes.length ? v.nodes[0].failureSummary : ''}));
}"""


@pytest.fixture
def kubeapi(kubeapi_factory) -> KubeAPIServer:
    """The bookstore seed with Flagger's Canary for it, so the Canary page exists too (`bookstore` collects this)."""
    seed = load_seed("bookstore")
    seed.objects.append(flagger_canary())
    return kubeapi_factory(seed)


@pytest.fixture
def every_page(viewer, operator, nobody, bookstore_metrics, client) -> list[str]:  # noqa: F811
    """One URL per view the crawler reaches as the operator (the first it found), then the pages above."""
    add_edges(bookstore_metrics, BOOKSTORE_EDGES)
    assert change_bookstore_weights(bookstore_metrics, operator, 50, 50).applied
    crawled = crawl_as(client, operator, max_per_path=1).pages()
    found = crawl(client, MORE_PAGES, max_requests=len(MORE_PAGES)).pages() + crawled
    by_view: dict[str, str] = {}
    for url in found:
        by_view.setdefault(resolve(urlsplit(url).path).view_name, url)
    return [*by_view.values(), NOT_FOUND]


def _violations(page, where: str) -> list[str]:
    return [
        f"{where}: {v['impact']} {v['id']} ({v['help']}) at {v['targets']}: {v['summary']}"
        for v in page.evaluate(RUN_AXE)
    ]


def _settle(page, path: str) -> None:
    """Wait until what the page loads after its HTML (htmx widgets, charts, the graph) is drawn."""
    page.wait_for_load_state("networkidle")
    if urlsplit(path).path == "/graph/":
        expect(page.locator("body")).to_have_attribute("data-graph-renders", re.compile(r"^[1-9]"), timeout=20000)
    if urlsplit(path).path.startswith("/services/"):
        page.wait_for_selector(".chart .main-svg, .chart-empty", timeout=15000)


def _server_error_page(page, base_url: str) -> None:
    body = server_error(RequestFactory().get("/")).content
    page.route(
        f"{base_url}{SERVER_ERROR_PATH}",
        lambda route: route.fulfill(status=500, body=body, content_type="text/html; charset=utf-8"),
    )


def _axe_context(browser, scheme: str):
    """A context that bypasses the CSP (this test's only) and loads axe into every page it opens."""
    context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme, bypass_csp=True)
    context.add_init_script(path=str(AXE))
    return context


def _every_page_in(browser, base_url: str, pages: list[str], scheme: str) -> list[str]:
    found: list[str] = []
    context = _axe_context(browser, scheme)
    page = context.new_page()
    login(page, base_url, "otto", "a-long-operator-pass")
    for path in pages:
        page.goto(f"{base_url}{path}")
        _settle(page, path)
        found += _violations(page, f"{scheme} {path}")

    page.goto(f"{base_url}/")  # the search box's results as one types, and the shortcuts list
    page.fill("#global-search", "book")
    page.wait_for_selector("#search-hits .search-group")
    found += _violations(page, f"{scheme} / (search results open)")
    page.locator("main").click()
    page.keyboard.press("?")
    expect(page.locator("dialog#shortcuts")).to_be_visible()
    found += _violations(page, f"{scheme} / (shortcuts open)")

    _server_error_page(page, base_url)
    page.goto(f"{base_url}{SERVER_ERROR_PATH}")
    found += _violations(page, f"{scheme} the 500 page")
    context.close()

    anonymous = _axe_context(browser, scheme)
    page = anonymous.new_page()
    page.goto(f"{base_url}/accounts/login/")
    found += _violations(page, f"{scheme} /accounts/login/")
    page.fill("#id_username", "nora")  # a user without a role: the 403 page, which names the role needed
    page.fill("#id_password", "a-long-no-role-pass")
    page.click("button[type=submit]")
    expect(page.locator("[data-role-needed]")).to_have_count(1)
    found += _violations(page, f"{scheme} / as a user without a role (403)")
    anonymous.close()
    return found


def test_it_finds_no_serious_or_critical_axe_violation_on_any_page_in_light_and_dark(browser, live_server, every_page):
    names = {resolve(urlsplit(url).path).view_name for url in every_page if url != NOT_FOUND}
    assert {
        "overview:overview",
        "overview:detail",
        "overview:workload",
        "graph:graph",
        "canary:splits",
        "canary:edit",
        "canary:compare",
        "canary:audit",
        "canary:rollback",
        "canary:canary",
        "policies:policies",
        "policies:mesh",
        "migration:migrate",
        "history:mesh",
        "search:results",
    } <= names, names

    found: list[str] = []
    for scheme in ("light", "dark"):
        started = time.monotonic()
        found += _every_page_in(browser, live_server.url, every_page, scheme)
        print(f"axe ({scheme}): {len(every_page) + 5} pages in {time.monotonic() - started:.1f} s")
    assert found == [], "\n".join(found)


def test_it_refuses_to_inject_axe_under_the_csp_in_a_normal_context(page, live_server, viewer, bookstore):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    with contextlib.suppress(PlaywrightError):  # Playwright may or may not report the refusal; axe must not run
        page.add_script_tag(path=str(AXE))
    assert page.evaluate("() => typeof window.axe") == "undefined"
