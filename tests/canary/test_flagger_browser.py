"""The Canary page in Chromium: reached from the splits page and from the editor, it shows a Flagger Canary put into
the stand-in, its pre-flight computed from a real Prometheus (a MetricTemplate passing, the same one failing a
threshold the data cannot meet, Flagger's built-in OSM checks waiting for OSM's WASM stats), under the strict CSP; and
the compare charts draw the canary's weight steps."""

from __future__ import annotations

from playwright.sync_api import expect

from apps.mesh.services import collect_and_record
from tests.browser_fixtures import at_path, login, screenshot
from tests.canary.flagger_objects import bookstore_openmetrics, put_canary
from tests.helpers import custom_api


def test_the_canary_page_shows_status_and_preflight(page, live_server, viewer, bookstore, kubeapi, prometheus_factory):
    put_canary(kubeapi)
    bookstore.prometheus_url = prometheus_factory(bookstore_openmetrics(), name="flagger-browser").url
    bookstore.save()
    # Flagger's first step, as Flagger writes it: the split's weights under its own field manager.
    custom_api(kubeapi).patch_namespaced_custom_object(
        "split.smi-spec.io",
        "v1alpha2",
        "bookstore",
        "trafficsplits",
        "bookstore-split",
        {"spec": {"backends": [{"service": "bookstore-v1", "weight": 80}, {"service": "bookstore-v2", "weight": 20}]}},
        field_manager="flagger",
    )
    _run, error = collect_and_record(bookstore)
    assert error is None, error
    login(page, live_server.url, "vera", "a-long-viewer-pass")

    page.goto(f"{live_server.url}/splits/")
    page.click('section[data-split="bookstore/bookstore-split"] >> text=Flagger Canary bookstore')
    page.wait_for_url(at_path("/canaries/bookstore/bookstore/"))
    expect(page.locator("h1")).to_contain_text("Flagger Canary bookstore")
    expect(page.locator('[data-field="phase"]')).to_have_text("Progressing")
    expect(page.locator('[data-field="weight"]')).to_contain_text("20 %")
    expect(page.locator('[data-field="failed-checks"]')).to_contain_text("2 of 5")
    expect(page.locator('[data-field="steps"]')).to_contain_text("10 → 20 → 30 → 40 → 50 %")
    expect(page.locator("table.conditions")).to_contain_text("New revision detected")

    rows = page.locator("table.preflight tr.check")
    expect(rows).to_have_count(4)
    passing = page.locator('tr.check[data-metric="v2 success rate"]')
    expect(passing).to_have_attribute("data-outcome", "pass")
    expect(passing.locator('[data-field="value"]')).to_have_text("80.00")
    failing = page.locator('tr.check[data-metric="v2 success rate, strict"]')
    expect(failing).to_have_attribute("data-outcome", "fail")
    expect(failing).to_contain_text("is outside ≥ 99: Flagger counts a failed check")
    for builtin in ("request-success-rate", "request-duration"):
        row = page.locator(f'tr.check[data-metric="{builtin}"]')
        expect(row).to_have_attribute("data-outcome", "no data")
        expect(row).to_contain_text("no data: needs OSM's WASM stats (enableWASMStats)")
    # The rendered query, behind its disclosure.
    passing.locator("summary").click()
    expect(passing.locator("pre.query")).to_contain_text('envoy_cluster_name="bookstore/bookstore-v2|14001"')
    # Read-only: no form, and the manual changes link to the audit; Flagger's own step is not one of them.
    assert page.locator("main form").count() == 0
    expect(page.locator("a.audit-link")).to_have_attribute("href", "/splits/audit/?split=bookstore/bookstore-split")
    expect(page.locator(".canary-manual")).not_to_contain_text("flagger")
    screenshot(page, "flagger-canary")

    # From the editor too, and on to the compare charts, which draw v2's share of the weight as steps.
    page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
    page.click(".banner >> text=bookstore")
    page.wait_for_url(at_path("/canaries/bookstore/bookstore/"))
    page.click("a.compare-link")
    page.wait_for_url(at_path("/splits/bookstore/bookstore-split/compare/"))
    chart = page.locator('.compare-chart[data-chart="rate"]')
    expect(chart).to_have_attribute("data-steps", "1", timeout=15_000)
    expect(chart).to_have_attribute("data-markers", "1")
    hover = chart.evaluate("el => el.data[el.data.length - 1].text")
    assert hover == ["Flagger step (Canary bookstore): bookstore-v1 80, bookstore-v2 20"]
    steps = chart.evaluate("el => el.data.filter(t => t.yaxis === 'y2').map(t => [t.name, t.y])")
    assert steps[0][0] == "bookstore-v2 weight %" and steps[0][1][-1] == 20
    screenshot(page, "flagger-compare-steps")
    assert not page.errors, page.errors
