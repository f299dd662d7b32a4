"""Hostile cluster data in a real browser (Debian's chromium via Playwright): every page a viewer, and an operator,
reaches opens with no 5xx, no dialog (no script of the cluster's runs), no console error and no page error, under the
strict CSP. The operator's crawl includes the pages only operators get: the weight editor's form and the rollback of
an audited change whose weights hold the hostile names."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.canary.models import WeightChange
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


ROLES = {  # role -> (persona fixture, password)
    "viewer": ("viewer", "a-long-viewer-pass"),
    "operator": ("operator", "a-long-operator-pass"),
}


def _audited_change(cluster, user) -> WeightChange:
    """An applied change of the hostile split, so the audit offers the operator its rollback (the editor filled with
    the hostile backends it found)."""
    return WeightChange.objects.create(
        cluster=cluster,
        namespace="bookstore",
        split="bookstore-split",
        user=user,
        username=user.get_username(),
        weights_before=WORST.backends,
        weights_after=[{"service": "bookstore-v1", "weight": 100}],
        result=WeightChange.Result.APPLIED,
    )


@pytest.mark.parametrize("role", ROLES)
def test_it_opens_every_page_with_hostile_data_without_a_dialog_or_an_error(
    request, page, live_server, client, kubeapi_factory, role
):
    persona, password = ROLES[role]
    user = request.getfixturevalue(persona)
    cluster = collect_hostile(kubeapi_factory, WORST)
    change = _audited_change(cluster, user)
    crawled = crawl_as(client, user, max_per_path=1)
    assert crawled.failures() == [], crawled.report(crawled.failures())
    paths = list(dict.fromkeys(crawled.pages()))
    reached = {path.split("?")[0] for path in paths}
    assert {"/splits/", "/graph/", "/policies/", "/mesh/", "/", "/splits/audit/"} <= reached
    rollback = f"/splits/audit/{change.pk}/rollback/"
    assert (rollback in reached) == (role == "operator"), reached  # only operators are offered a rollback

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(f"{dialog.type}: {dialog.message}"), dialog.dismiss()))
    login(page, live_server.url, user.get_username(), password)
    for path in paths:
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status < 500, f"{path}: {response and response.status}"
        if path.startswith("/graph/"):
            expect(page.locator("body")).to_have_attribute("data-graph-renders", re.compile(r"^[1-9]"), timeout=20000)
        page.wait_for_load_state("networkidle")
        page.hover("main")  # an injected onmouseover would fire here
        assert dialogs == [], f"{path}: {dialogs}"
        assert page.errors == [], f"{path}: {page.errors}"

    if role == "operator":  # the editor's form (no dialog above), filled with what the change found
        page.goto(f"{live_server.url}{rollback}")
        expect(page.locator(".rollback")).not_to_have_count(0)
        assert page.locator("input[name^=weight_]").count() >= len(WORST.backends)
    page.goto(f"{live_server.url}/splits/")
    backend = page.locator('tr[data-backend="a/b"]')
    assert backend.locator("a").count() == 0
    assert "not a valid Service name: OSM cannot route to it" in backend.inner_text()
    assert page.locator(f'tr[data-backend="{MARKUP}"] .inert').inner_text() == MARKUP
