"""The weight editor in a real browser while the API server is slow: nothing clicked meanwhile is lost or applied
instead of what the operator confirmed."""

from __future__ import annotations

from playwright.sync_api import expect

from apps.canary.models import WeightChange
from apps.mesh.services import collect_and_record
from lab.waiting import wait_for
from tests.browser_fixtures import at_path, login, screenshot
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

    page.wait_for_url(at_path("/splits/#split-bookstore-bookstore-split"), timeout=15000)
    expect(page.locator(".messages")).to_contain_text("Applied to bookstore/bookstore-split: bookstore-v1 90 (90%)")
    assert bookstore_split(kubeapi)["spec"]["backends"] == [
        {"service": "bookstore-v1", "weight": 90},
        {"service": "bookstore-v2", "weight": 10},
    ]
    assert list(WeightChange.objects.values_list("result", "weights_after")) == [
        ("applied", [{"service": "bookstore-v1", "weight": 90}, {"service": "bookstore-v2", "weight": 10}])
    ]
    assert not page.errors


def test_a_click_on_apply_during_a_slow_preset_writes_nothing_and_the_page_shows_the_preset(
    page, live_server, operator, bookstore, kubeapi
):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    login(page, live_server.url, "otto", "a-long-operator-pass")
    page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
    page.check('input[name="canary_backend"][value="bookstore-v2"]')
    weights = page.locator(".weight-row input[type=number]")
    weights.nth(0).fill("90")
    weights.nth(1).fill("10")
    page.click('button[name="action"][value="preview"]')
    expect(page.locator("pre.diff")).to_contain_text("+    weight: 10")
    apply = page.locator('button[name="action"][value="apply"]')
    where = apply.bounding_box()

    # The browser holds the preset's request until the test lets it go: a server as slow as it likes.
    held = []

    def hold_presets(route):
        if route.request.method == "POST" and "preset=" in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    patches = kubeapi.requests.count(method="PATCH")  # the test's own setup
    page.route("**/splits/bookstore/bookstore-split/", hold_presets)
    page.click('button[name="preset"][value="even"]')
    wait_for(lambda: page.wait_for_timeout(50) or held, timeout=10)
    expect(page.locator("#editor-busy")).to_be_visible()
    expect(apply).to_be_disabled()
    # The operator clicks where Apply is (the 90/10 preview's), with the real mouse, while the preset is in flight.
    x, y = where["x"] + where["width"] / 2, where["y"] + where["height"] / 2
    assert page.evaluate("([x, y]) => document.elementFromPoint(x, y).value", [x, y]) == "apply"
    page.mouse.click(x, y)
    page.wait_for_timeout(500)
    assert kubeapi.requests.count(method="PATCH") == patches and not WeightChange.objects.exists()

    held[0].continue_()
    # The page shows the preset's weights, to preview: no diff, no Apply, nothing written.
    expect(weights.nth(0)).to_have_value("50")
    expect(weights.nth(1)).to_have_value("50")
    expect(page.locator("pre.diff")).to_have_count(0)
    expect(apply).to_have_count(0)
    expect(page.locator('button[name="action"][value="preview"]')).to_be_enabled()
    expect(page.locator(".outcome")).to_have_count(0)
    screenshot(page, "editor-preset-after-held-click")
    page.wait_for_timeout(500)
    assert kubeapi.requests.count(method="PATCH") == patches and not WeightChange.objects.exists()
    assert bookstore_split(kubeapi)["spec"]["backends"][1]["weight"] == 0

    # What is applied next is what the page shows.
    page.click('button[name="action"][value="preview"]')
    page.click('button[name="action"][value="apply"]')
    page.wait_for_url(at_path("/splits/#split-bookstore-bookstore-split"), timeout=15000)
    assert bookstore_split(kubeapi)["spec"]["backends"] == [
        {"service": "bookstore-v1", "weight": 50},
        {"service": "bookstore-v2", "weight": 50},
    ]
    assert list(WeightChange.objects.values_list("result", "weights_after")) == [
        ("applied", [{"service": "bookstore-v1", "weight": 50}, {"service": "bookstore-v2", "weight": 50}])
    ]
    assert not page.errors
