"""Hostile cluster data in a real browser (Debian's chromium via Playwright): every page a viewer reaches opens with
no dialog (no script of the cluster's runs), no console error and no page error, under the strict CSP."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser_fixtures import login
from tests.crawl import crawl_as
from tests.hostile import HostileData, collect_hostile

MARKUP = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(document.domain)</script>"
QUOTES = "\"'><svg onload=alert(2)>"
HANDLER = 'x" onmouseover="alert(3)'

# Markup, quotes and a path in every field the pages show; the root stays a Service so the graph draws (see
# GRAPH_ROOT_NOT_A_SERVICE in test_hostile_crawl.py).
WORST = HostileData(
    root="bookstore.bookstore.svc.cluster.local",
    backends=[
        {"service": "bookstore-v1", "weight": 50},
        {"service": MARKUP, "weight": 25},
        {"service": "a/b", "weight": 25.5},
        {"service": SCRIPT, "weight": -1},
    ],
    owner=QUOTES,
    target_source=(MARKUP, SCRIPT),
    target_destination=("bookstore", QUOTES),
    rule_match=HANDLER,
    route={"name": SCRIPT, "pathRegex": MARKUP, "methods": ["GET"], "headers": [{QUOTES: HANDLER}]},
    canary=(MARKUP, "bookstore"),
    envoy_image=SCRIPT,
    annotation=QUOTES,
    injection=MARKUP,
    service_label="Book.Store_1",
    app_label="",
    peer=(SCRIPT, MARKUP),
)


def test_it_opens_every_page_with_hostile_data_without_a_dialog_or_an_error(
    page, live_server, client, kubeapi_factory, viewer
):
    collect_hostile(kubeapi_factory, WORST)
    crawled = crawl_as(client, viewer, max_per_path=1)
    assert crawled.failures() == [], crawled.report(crawled.failures())
    paths = list(dict.fromkeys(crawled.pages()))
    assert {"/splits/", "/graph/", "/policies/", "/mesh/", "/"} <= set(paths)

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(f"{dialog.type}: {dialog.message}"), dialog.dismiss()))
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    for path in paths:
        page.goto(f"{live_server.url}{path}")
        if path.startswith("/graph/"):
            expect(page.locator("body")).to_have_attribute("data-graph-renders", re.compile(r"^[1-9]"), timeout=20000)
        page.wait_for_load_state("networkidle")
        page.hover("main")  # an injected onmouseover would fire here
        assert dialogs == [], f"{path}: {dialogs}"
        assert page.errors == [], f"{path}: {page.errors}"

    page.goto(f"{live_server.url}/splits/")
    backend = page.locator('tr[data-backend="a/b"]')
    assert backend.locator("a").count() == 0
    assert "not a valid Service name: OSM cannot route to it" in backend.inner_text()
    assert page.locator(f'tr[data-backend="{MARKUP}"] .inert').inner_text() == MARKUP
