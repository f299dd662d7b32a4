"""The policies and Mesh pages in a real browser (Debian chromium via Playwright) on the bookstore demo."""

from __future__ import annotations

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from apps.mesh.services import collect_and_record
from tests.browser_fixtures import at_path, login, screenshot

HOSTILE = "<img src=x onerror=\"document.body.dataset.pwned='1'\"><script>document.body.dataset.pwned='2'</script>"


def _ask(page, source: str, destination: str, answer: str):
    page.fill("input[name=from]", source)
    page.fill("input[name=to]", destination)
    page.click("#can-talk button[type=submit]")
    return page.wait_for_selector(f'#verdict [data-answer="{answer}"]')


def test_it_answers_who_may_talk_and_lists_the_checks_of_the_demo(page, live_server, viewer, bookstore):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.click("nav >> text=Policies")
    page.wait_for_url(at_path("/policies/"))

    assert "SMI mode" in page.locator(".banner.mode").inner_text()
    _ask(page, "workload bookbuyer/bookbuyer", "service bookstore/bookstore", "yes")
    verdict = page.locator("#verdict").inner_text()
    assert "bookstore-service-routes" in verdict and "TrafficTarget bookstore/bookstore" in verdict
    assert "from=workload%20bookbuyer" in page.url  # the question is in the address, so it can be shared
    screenshot(page, "policies-allowed")

    _ask(page, "workload bookthief/bookthief", "service bookstore/bookstore", "no")
    verdict = page.locator("#verdict").inner_text()
    assert "source ServiceAccount bookthief/bookthief" in verdict and "allow only bookbuyer/bookbuyer" in verdict
    screenshot(page, "policies-denied")

    page.click("nav >> text=Mesh")
    page.wait_for_url(at_path("/mesh/"))
    codes = page.locator(".finding .code").all_inner_texts()
    assert {"MB-AKS-001", "MB-AKS-002", "MB-AKS-003", "MB-AKS-004"} <= set(codes), codes
    assert page.locator('.finding[data-code="MB-AKS-002"]').inner_text().count("169.254.169.254") >= 1
    screenshot(page, "mesh-checks")
    assert not [e for e in page.errors if "Content Security Policy" in e or "Refused" in e], page.errors


def test_it_shows_a_hostile_route_regex_and_header_as_text(page, live_server, viewer, bookstore, kubeapi):
    api = k8s.CustomObjectsApi(k8s_config.new_client_from_config(str(kubeapi.kubeconfig)))
    api.patch_namespaced_custom_object(
        "specs.smi-spec.io",
        "v1alpha4",
        "bookstore",
        "httproutegroups",
        "bookstore-service-routes",
        {"spec": {"matches": [{"name": "buy-a-book", "pathRegex": HOSTILE, "headers": [{"x-evil": HOSTILE}]}]}},
    )
    collect_and_record(bookstore)
    login(page, live_server.url, "vera", "a-long-viewer-pass")

    page.goto(f"{live_server.url}/policies/")
    _ask(page, "bookbuyer/bookbuyer", "bookstore/bookstore", "yes")

    matrix = page.locator("table.matrix").inner_text()
    assert matrix.count(HOSTILE) == 4  # path regex and header, for bookstore and bookstore-v2
    assert HOSTILE in page.locator("#verdict").inner_text()
    assert page.evaluate("document.body.dataset.pwned") is None
    assert page.locator("img[src=x]").count() == 0
