"""End to end: an operator moves the bookstore canary in Chromium, real Envoy traffic follows, the splits page shows
the observed share converge; a rollback from the audit page brings it back (issues: canary editor, lab mesh)."""

from __future__ import annotations

import re
import time

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from lab.waiting import wait_for
from tests.browser_fixtures import at_path, login, screenshot

pytestmark = pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s")


def _observed(page, backend: str) -> float | None:
    cell = page.locator(f'section[data-split="bookstore/bookstore-split"] tr[data-backend="{backend}"] td').nth(3)
    match = re.match(r"([\d.]+)%", cell.inner_text().strip())
    return float(match.group(1)) if match else None


def _wait_for_share(page, url: str, backend: str, low: float, high: float, timeout: float = 90.0) -> float:
    """Reload `url` until `backend`'s observed share lies in low..high (`low` > 0: a share in range is truthy)."""
    seen: list[float | None] = [None]

    def in_range() -> float | None:
        page.goto(url)
        seen.append(_observed(page, backend))
        return seen[-1] if seen[-1] is not None and low <= seen[-1] <= high else None

    try:
        return wait_for(in_range, timeout=timeout, interval=2)
    except AssertionError:
        raise AssertionError(
            f"{backend}'s observed share stayed outside {low}..{high} for {timeout} s (last {seen[-1]})"
        ) from None


def test_it_moves_real_traffic_from_the_browser_and_rolls_it_back(page, live_server, lab_cluster, lab_stack):
    call_command("create_user", "olga", role="operator", password="a-long-operator-pass")
    login(page, live_server.url, "olga", "a-long-operator-pass")

    page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
    page.select_option("select[name=add_backend]", "bookstore-v2")
    page.click("button[value=add]")
    expect(page.locator("input[name=weight_1]")).to_have_value("0")
    page.check('input[name="canary_backend"][value="bookstore-v2"]')  # presets move traffic to the marked canary
    expect(page.locator("button[value=even]")).to_be_enabled()
    page.click("button[value=even]")
    expect(page.locator("input[name=weight_1]")).to_have_value("50")
    page.click("button[value=preview]")
    expect(page.locator("pre.diff")).to_contain_text("bookstore-v2")
    page.click("button[value=apply]")
    page.wait_for_url(at_path("/splits/#split-bookstore-bookstore-split"))
    expect(page.locator(".messages")).to_contain_text("bookstore-v2 50 (50%)")

    started = time.monotonic()
    share = _wait_for_share(page, f"{live_server.url}/splits/", "bookstore-v2", 40, 60)
    moved_after = time.monotonic() - started
    screenshot(page, "splits-50-50")

    page.goto(f"{live_server.url}/splits/audit/")
    page.locator("tr.result-applied").first.locator("a", has_text="Roll back").click()
    expect(page.locator(".rollback pre.diff")).to_contain_text("-    weight: 50")  # what it will do, before it does
    page.click("text=Confirm the rollback")
    page.wait_for_url(at_path("/splits/#split-bookstore-bookstore-split"))
    expect(page.locator(".messages")).to_contain_text("Applied")
    _wait_for_share(page, f"{live_server.url}/splits/", "bookstore-v1", 90, 100)
    print(f"observed 50/50 after {moved_after:.1f} s (v2 at {share:.1f}%)")
