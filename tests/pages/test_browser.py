"""The pages in a real browser (Debian's chromium driven by Playwright) against a live server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser_fixtures import at_path, login, screenshot
from tests.helpers import set_bookstore_backends


def _login(page, live_server, username: str, password: str) -> None:
    login(page, live_server.url, username, password)


@pytest.fixture
def bookstore_metrics(bookstore, prometheus_factory, redis):
    """The last 50 minutes of bookbuyer's sidecar stats to both bookstore versions, in a real Prometheus, collected
    by the real metrics collector (the KPI rows of `bookstore` are replaced by measured ones)."""
    import time

    from apps.metrics.services import collect_and_record as collect_metrics
    from lab.metrics_data import OpenMetrics, envoy_edge, piecewise_cdf, sample_times

    now = time.time()
    om = OpenMetrics(sample_times(now - 3000, now, 15))
    buyer = {
        "source_namespace": "bookbuyer",
        "source_service": "bookbuyer",
        "source_pod_name": "bookbuyer-5b8d-abcde",
        "source_workload_kind": "Deployment",
        "source_workload_name": "bookbuyer",
    }
    fast, slow = piecewise_cdf([(5, 0.5), (10, 0.9), (25, 1.0)]), piecewise_cdf([(25, 0.3), (50, 0.8), (100, 1.0)])
    envoy_edge(om, buyer, "bookstore/bookstore-v1|14001", rps_by_class={"2": 8.0}, cdf=fast, bytes_sent=900.0)
    envoy_edge(om, buyer, "bookstore/bookstore-v2|14001", rps_by_class={"2": 1.6, "5": 0.4}, cdf=slow)
    server = prometheus_factory(om.text(), scrape_interval="15s", name="bookstore")
    bookstore.prometheus_url = server.url
    bookstore.save()
    _run, error = collect_metrics(bookstore)
    assert error is None, error
    return bookstore


def test_it_walks_from_login_to_overview_to_a_service_and_the_splits(page, live_server, viewer, bookstore_metrics):
    _login(page, live_server, "vera", "a-long-viewer-pass")

    row = page.locator('tr[data-service="bookstore/bookstore-v2"]')
    assert row.locator(".health").inner_text() == "failing"
    text = row.inner_text()
    assert "5xx 20% of" in text and "80%" in text  # measured by the collector from the real Prometheus
    screenshot(page, "overview")

    page.click('a[href="/services/bookstore/bookstore-v2/"]')
    page.wait_for_url(at_path("/services/bookstore/bookstore-v2/"))
    assert page.locator("h1").inner_text().startswith("bookstore-v2")
    page.wait_for_selector(".chart .main-svg", timeout=15000)  # Plotly drew, under the strict CSP
    for chart in page.locator(".chart").all():
        expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    assert "Envoy histogram" in page.locator(".latency-source").inner_text()
    screenshot(page, "service")

    page.click("nav >> text=Splits")
    page.wait_for_url(at_path("/splits/"))
    assert page.locator('section[data-split="bookstore/bookstore-split"]').is_visible()
    screenshot(page, "splits")
    assert not [e for e in page.errors if "Content Security Policy" in e or "Refused" in e], page.errors


def test_it_shows_hostile_strings_as_text_without_running_them(page, live_server, viewer, bookstore, kubeapi):
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from apps.mesh.services import collect_and_record

    hostile = "<img src=x onerror=\"document.body.dataset.pwned='1'\"><script>document.body.dataset.pwned='2'</script>"
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeapi.kubeconfig)))
    core.patch_namespaced_service("bookstore-v1", "bookstore", {"metadata": {"annotations": {"note": hostile}}})
    collect_and_record(bookstore)
    _login(page, live_server, "vera", "a-long-viewer-pass")

    page.goto(f"{live_server.url}/services/bookstore/bookstore-v1/")

    assert hostile in page.locator("section[aria-label='Labels and annotations']").inner_text()
    assert page.evaluate("document.body.dataset.pwned") is None
    assert page.locator("img[src=x]").count() == 0


def test_it_refreshes_the_table_in_place_and_can_pause(page, live_server, viewer, bookstore):
    from apps.metrics.models import ServiceKPI

    _login(page, live_server, "vera", "a-long-viewer-pass")
    ServiceKPI.objects.filter(service="bookstore-v1").update(request_rate=777.0)

    page.evaluate("htmx.trigger(document.body, 'mb:refresh')")

    # Playwright's own matchers: wait_for_function would evaluate a string, which the page's CSP forbids.
    expect(page.locator('tr[data-service="bookstore/bookstore-v1"]')).to_contain_text("777")
    page.select_option("#refresh", "off")
    assert page.evaluate("localStorage.getItem('mb-refresh')") == "off"


def test_it_shows_live_shares_and_keeps_percent_mode_at_100(page, live_server, operator, bookstore, kubeapi):

    from apps.mesh.services import collect_and_record

    set_bookstore_backends(kubeapi, [
            {"service": "bookstore-v1", "weight": 300}, {"service": "bookstore-v2", "weight": 100},
            {"service": "bookstore", "weight": 0},
        ])  # fmt: skip
    collect_and_record(bookstore)
    _login(page, live_server, "otto", "a-long-operator-pass")
    page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
    shares = page.locator("td.pct")
    expect(shares.nth(0)).to_have_text("75.0%")  # SMI weights are relative: 300 of 400
    expect(shares.nth(1)).to_have_text("25.0%")

    page.check("#percent-mode")
    weights = page.locator(".weight-row input[type=number]")
    expect(weights.nth(0)).to_have_value("75")
    page.locator(".weight-row input.lock").nth(0).check()  # keep v1 at 75
    weights.nth(1).fill("5")
    weights.nth(1).dispatch_event("input")
    expect(weights.nth(2)).to_have_value("20")  # the unlocked rest takes what is left: 100 - 75 - 5
    expect(shares.nth(2)).to_have_text("20.0%")
    screenshot(page, "editor")


def test_zooming_a_chart_puts_the_range_in_the_url_for_every_chart(page, live_server, viewer, bookstore_metrics):
    _login(page, live_server, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/services/bookstore/bookstore-v1/?window=1h")
    page.wait_for_selector('.chart[data-chart="requests"] .main-svg', timeout=15000)

    # A user's drag across the middle of the request-rate chart (Plotly's default drag zooms), scrolled into view
    # first: the mouse reaches only what is in the viewport.
    drag = page.locator('.chart[data-chart="requests"] .nsewdrag').first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    page.mouse.up()

    page.wait_for_url(re.compile(r"[?&]start=\d+&end=\d+"))
    start, end = (int(v) for v in re.search(r"start=(\d+)&end=(\d+)", page.url).groups())
    assert 15 * 60 <= end - start <= 30 * 60  # about 40 % of the hour
    for chart in page.locator(".chart").all():
        assert chart.get_attribute("data-series-url").endswith(f"?start={start}&end={end}")
        expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
    assert "min ending" in page.locator("select[name=window] option:checked").inner_text()
    assert page.locator(f'nav a[href="/graph/?start={start}&end={end}"]').count() == 1

    page.locator("select[name=window]").select_option("6h")  # back to a window ending now
    page.wait_for_url(re.compile(r"window=6h"))
    assert "start=" not in page.url
