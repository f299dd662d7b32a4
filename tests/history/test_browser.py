"""The history's timelines and the Policies page "as of" in a real browser (Debian chromium via Playwright)."""

from __future__ import annotations

from apps.history.models import Change, Version
from apps.mesh.services import collect_and_record
from tests.browser_fixtures import at_path, login, screenshot
from tests.helpers import custom_api

ACCESS = ("access.smi-spec.io", "v1alpha3")


def test_it_goes_from_a_removed_traffic_target_to_the_policy_before_its_removal(
    page, live_server, viewer, kubeapi, bookstore
):
    custom = custom_api(kubeapi)
    target = {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": "bookthief-to-bookstore", "namespace": "bookstore"},
        "spec": {
            "destination": {"kind": "ServiceAccount", "name": "bookstore", "namespace": "bookstore"},
            "rules": [{"kind": "HTTPRouteGroup", "name": "bookstore-service-routes", "matches": ["buy-a-book"]}],
            "sources": [{"kind": "ServiceAccount", "name": "bookthief", "namespace": "bookthief"}],
        },
    }
    custom.create_namespaced_custom_object(*ACCESS, "bookstore", "traffictargets", target)
    assert collect_and_record(bookstore)[1] is None
    custom.delete_namespaced_custom_object(*ACCESS, "bookstore", "traffictargets", "bookthief-to-bookstore")
    assert collect_and_record(bookstore)[1] is None
    assert Version.objects.filter(name="bookthief-to-bookstore", change=Change.DELETED).exists()

    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/policies/")
    page.click('[data-target="bookstore/bookstore"] >> text=History')
    page.wait_for_url(at_path("/history/traffictarget/bookstore/bookstore/"))
    page.click("text=Configuration history")
    page.wait_for_url(at_path("/history/"))
    removed = page.locator('[data-change="TrafficTarget bookstore/bookthief-to-bookstore deleted"]')
    assert "-    name: bookthief" in removed.locator("pre.diff").inner_text()
    screenshot(page, "history-mesh-timeline")

    removed.locator("text=just before").click()
    page.wait_for_selector(".banner.past-view")
    assert page.locator('[data-pair="bookthief/bookthief→bookstore/bookstore"]').count() == 1
    page.fill("input[name=from]", "workload bookthief/bookthief")
    page.fill("input[name=to]", "service bookstore/bookstore-v1")
    page.click("#can-talk button[type=submit]")
    page.wait_for_selector('#verdict [data-answer="yes"]')
    assert "as_of=" in page.url
    screenshot(page, "history-policies-as-of")

    page.click("#verdict >> text=ask now")
    page.wait_for_selector('#verdict [data-answer="no"]')
    assert page.locator(".banner.past-view").count() == 0 and "as_of" not in page.url
    page.goto(f"{live_server.url}/policies/?as_of=yesterday")
    assert "is not a time" in page.locator(".as-of-error").inner_text()
    page.click('.traffic-target a:text-is("History") >> nth=0')
    assert "/history/traffictarget/" in page.url
    assert not [e for e in page.errors if "Content Security Policy" in e or "Refused" in e], page.errors
