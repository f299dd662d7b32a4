"""The weight editor in a real browser while the API server is slow: nothing clicked meanwhile is lost or applied
instead of what the operator confirmed."""

from __future__ import annotations

from playwright.sync_api import expect

from apps.canary.models import WeightChange
from apps.mesh.services import collect_and_record
from tests.browser_fixtures import login, screenshot
from tests.helpers import bookstore_split, set_bookstore_backends

SPLIT_PATH = r"/trafficsplits/bookstore-split$"


def test_it_holds_every_click_while_a_slow_write_is_in_flight(page, live_server, operator, bookstore, kubeapi):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    login(page, live_server.url, "otto", "a-long-operator-pass")
    page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")

    # Presets are disabled until the canary is marked; then "shift 10%" fills 90/10.
    shift = page.locator('button[name="preset"][value="shift10"]')
    expect(shift).to_be_disabled()
    page.check('input[name="canary_backend"][value="bookstore-v2"]')
    expect(shift).to_be_enabled()
    shift.click()
    weights = page.locator(".weight-row input[type=number]")
    expect(weights.nth(0)).to_have_value("90")
    expect(weights.nth(1)).to_have_value("10")
    page.click('button[name="action"][value="preview"]')
    expect(page.locator("pre.diff")).to_contain_text("+    weight: 10")

    # The real PATCH (the dry run, also a PATCH, is let through) takes 3 s.
    kubeapi.faults.add(SPLIT_PATH, verb="patch", skip=1, times=1, delay=3.0)
    page.click('button[name="action"][value="apply"]')
    busy = page.locator("#editor-busy")
    expect(busy).to_be_visible()
    expect(page.locator('button[name="preset"][value="even"]')).to_be_disabled()  # the whole fieldset is
    screenshot(page, "editor-in-flight")
    # Rapid clicks on everything while the write is in flight: a disabled control ignores them.
    for selector in (
        'button[name="preset"][value="even"]',
        'button[name="preset"][value="promote"]',
        'button[name="action"][value="apply"]',
        'button[name="preset"][value="shift10"]',
    ):
        page.locator(selector).dispatch_event("click")

    page.wait_for_url("**/splits/#split-bookstore-bookstore-split", timeout=15000)
    expect(page.locator(".messages")).to_contain_text("Applied to bookstore/bookstore-split: bookstore-v1 90 (90%)")
    assert bookstore_split(kubeapi)["spec"]["backends"] == [
        {"service": "bookstore-v1", "weight": 90},
        {"service": "bookstore-v2", "weight": 10},
    ]
    assert list(WeightChange.objects.values_list("result", "weights_after")) == [
        ("applied", [{"service": "bookstore-v1", "weight": 90}, {"service": "bookstore-v2", "weight": 10}])
    ]
    assert not page.errors
