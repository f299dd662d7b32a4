"""End to end: an operator splits the bookstore canary 50/50 in the editor, someone else changes it with another
client, and the compare page (in Chromium) calls the erroring, slower v2 worse than v1 with its counts, draws both
backends on one time axis and marks both weight changes, the second as made outside Meshboard (issue: canary evidence).
"""

from __future__ import annotations

import json
import time

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from lab.mesh.pytest_plugin import LabStack
from tests.browser_fixtures import at_path, login, screenshot
from tests.labmesh.conftest import SPLIT

pytestmark = pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s")
MC = ("config.openservicemesh.io", "v1alpha2", "osm-system", "meshconfigs", "osm-mesh-config")


def test_it_compares_v2_with_v1_and_marks_weight_changes(page, live_server, lab_cluster, lab_stack: LabStack):
    call_command("create_user", "olga", role="operator", password="a-long-operator-pass")
    login(page, live_server.url, "olga", "a-long-operator-pass")
    lab_stack.lab.set_behaviour("bookstore-v2", error_rate=0.2)
    # The seed's Retry bookbuyer-to-bookstore would retry v2's failures away (Envoy counts a retried attempt's code
    # under `retry.`, not in upstream_rq_xx); this test is about the canary's own errors, so retries are off for it.
    lab_stack.custom_api().patch_namespaced_custom_object(*MC, {"spec": {"featureFlags": {"enableRetryPolicy": False}}})
    try:
        page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
        page.select_option("select[name=add_backend]", "bookstore-v2")
        page.click("button[value=add]")
        page.check('input[name="canary_backend"][value="bookstore-v2"]')
        page.click("button[value=even]")
        page.click("button[value=preview]")
        page.click("button[value=apply]")
        page.wait_for_url(at_path("/splits/#split-bookstore-bookstore-split"))
        time.sleep(3)
        backends = [{"service": "bookstore-v1", "weight": 60}, {"service": "bookstore-v2", "weight": 40}]
        lab_stack.custom_api().patch_namespaced_custom_object(
            *SPLIT, {"spec": {"backends": backends}}, field_manager="kubectl-edit"
        )
        time.sleep(25)  # traffic at the new weights, and the snapshot holds the other client's write

        page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
        page.click("a.compare-link")
        page.select_option("#compare select[name=window]", "1m")
        page.click("#compare button[type=submit]")
        success = page.locator('.verdicts[data-backend="bookstore-v2"] li[data-metric="success"]')
        expect(success).to_have_attribute("data-outcome", "worse")
        expect(success).to_contain_text("bookstore-v2 worse than bookstore-v1")
        latency = page.locator('.verdicts[data-backend="bookstore-v2"] li[data-metric="latency"]')
        expect(latency).to_have_attribute("data-outcome", "worse")
        expect(latency).to_contain_text("requests slower than")
        rate_chart = page.locator('.compare-chart[data-chart="rate"]')
        expect(rate_chart).to_have_attribute("data-markers", "2", timeout=20_000)
        expect(rate_chart).to_have_attribute("data-traces", "4")  # v1, v2, v2's weight share as steps, the markers
        expect(rate_chart).to_have_attribute("data-steps", "1")
        screenshot(page, "compare-v1-v2")

        series_url = rate_chart.get_attribute("data-series-url")
        markers = json.loads(page.evaluate(f"fetch({json.dumps(series_url)}).then(r => r.text())"))["markers"]
        texts = [m["text"] for m in markers]
        assert any(t.startswith("olga set bookstore-v1 50, bookstore-v2 50") for t in texts), texts
        assert any("changed outside Meshboard by kubectl-edit" in t for t in texts), texts
        assert [m["outside"] for m in markers] == [False, True]
    finally:
        lab_stack.lab.set_behaviour("bookstore-v2", error_rate=0.05)
        lab_stack.custom_api().patch_namespaced_custom_object(
            *MC, {"spec": {"featureFlags": {"enableRetryPolicy": True}}}
        )
