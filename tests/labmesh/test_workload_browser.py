"""Workload pages in Chromium against the lab mesh: real Envoys, real Prometheus, both collectors running as beat
would run them (issue 15 item 3). bookbuyer and bookthief have no Service, so these pages are the only place their
traffic is seen: bookbuyer sends about 20 req/s to bookstore; bookthief's 2 req/s go to the egress passthrough,
since SMI allows it nothing, and bookstore's sidecars refuse them."""

from __future__ import annotations

import re
import time

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from lab.waiting import wait_for
from tests.browser_fixtures import at_path, login, screenshot

pytestmark = pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s")

BUYER = "/workloads/bookbuyer/deployment/bookbuyer/"
THIEF = "/workloads/bookthief/deployment/bookthief/"
NUMBER = re.compile(r"([\d.]+)")


@pytest.fixture
def viewer_page(page, live_server, lab_cluster, redis):
    call_command("create_user", "wendy", role="viewer", password="a-long-viewer-pass")
    login(page, live_server.url, "wendy", "a-long-viewer-pass")
    return page


def _number(text: str) -> float | None:
    match = NUMBER.search(text.replace(",", ""))
    return float(match.group(1)) if match else None


def _wait_for(page, url: str, selector: str, low: float, high: float, timeout: float = 90.0) -> float:
    """Reload `url` until the number in `selector` lies in low..high (the KPI window fills after a few seconds);
    `low` > 0, so a number in range is truthy for wait_for."""
    seen: list[float | None] = [None]

    def in_range() -> float | None:
        page.goto(url)
        cell = page.locator(selector)
        seen.append(_number(cell.first.inner_text()) if cell.count() else None)
        return seen[-1] if seen[-1] is not None and low <= seen[-1] <= high else None

    try:
        return wait_for(in_range, timeout=timeout, interval=2)
    except AssertionError:
        raise AssertionError(
            f"{selector} on {url} stayed outside {low}..{high} for {timeout} s (last {seen[-1]})"
        ) from None


def test_bookbuyers_page_shows_its_outbound_rate_and_charts(viewer_page, live_server, lab_stack):
    page = viewer_page
    url = f"{live_server.url}{BUYER}?window=15m"
    first = lab_stack.lab.traffic()["bookbuyer -> bookstore/bookstore"]["requests"]
    started = time.monotonic()

    rate = _wait_for(page, url, "dd.outbound-rate", 18.0, 22.0)  # the generator's 20 req/s, within 10 %

    sent = (lab_stack.lab.traffic()["bookbuyer -> bookstore/bookstore"]["requests"] - first) / (
        time.monotonic() - started
    )
    expect(page.locator("h1")).to_contain_text("bookbuyer")
    expect(page.locator("dd.service-account")).to_have_text("bookbuyer")
    expect(page.locator("dd.selected-by")).to_contain_text("no Service")
    expect(page.locator("section.policy")).to_contain_text("allowed by TrafficTarget bookstore/bookstore")
    v1 = page.locator('section[aria-label="Outbound by destination"] tr[data-destination="bookstore/bookstore-v1"]')
    expect(v1).to_contain_text("100%")  # bookstore-v1 answers every request
    requests_chart = page.locator('.chart[data-chart="requests"]')
    expect(requests_chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=20_000)
    screenshot(page, "workload-bookbuyer")
    assert page.errors == []
    print(f"bookbuyer: page {rate} req/s, generator {sent:.1f} req/s")


def test_bookthiefs_page_shows_its_passthrough_traffic_and_that_nothing_allows_it(viewer_page, live_server):
    page = viewer_page
    url = f"{live_server.url}{THIEF}?window=15m"

    passthrough = _wait_for(page, url, "li.refusal.caller.passthrough strong", 1.4, 2.6)  # 2 conn/s, within 30 %

    expect(page.locator("li.refusal.caller.passthrough")).to_contain_text("sent outside its routes")
    expect(page.locator("p.nothing-allows")).to_contain_text("no TrafficTarget lists bookthief/bookthief")
    expect(page.locator("p.denied-destinations")).to_contain_text("bookstore/bookstore")
    chart = page.locator('.chart[data-chart="passthrough"]')  # its passthrough over time, from its own sidecar
    expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=20_000)
    screenshot(page, "workload-bookthief")
    assert page.errors == []
    print(f"bookthief: {passthrough} conn/s to the egress passthrough")


def test_clicking_bookbuyer_in_the_bookstore_service_pages_inbound_table_opens_its_page(viewer_page, live_server):
    page = viewer_page
    caller = page.locator('section[aria-label="Inbound"] a', has_text="bookbuyer/bookbuyer")

    def listed() -> int:  # until the first metrics run has stored bookbuyer's edges
        page.goto(f"{live_server.url}/services/bookstore/bookstore/")
        return caller.count()

    wait_for(listed, timeout=60, interval=2)

    caller.first.click()

    page.wait_for_url(at_path(BUYER))
    expect(page.locator("h1")).to_contain_text("bookbuyer")
    page.goto(f"{live_server.url}/")
    page.click('nav.switch a:has-text("Workloads")')
    expect(page.locator('tr[data-workload="bookthief/Deployment/bookthief"]')).to_be_visible()
    page.select_option("select[name=namespace]", "bookbuyer")  # a namespace with no Service, offered
    expect(page.locator("tr[data-workload]")).to_have_count(1)
    assert page.errors == []
