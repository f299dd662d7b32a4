"""The mesh's edge on the pages, in Chromium against the lab mesh (issue 21): real Envoys programmed from the
bookstore seed's IngressBackends, Egress, UpstreamTrafficSetting and Retry, a real Prometheus with 1 s scrapes, both
collectors running as beat would run them.

The lab's generator sends 2 req/s through the ingress controller's Envoy to each of its two Ingress paths (HTTP to
bookstore's pods, HTTPS with the controller's client certificate to bookstore-v1's), and bookbuyer 1 req/s to
books.example.com through its Egress policy. The graph shows the controller as an entry node and the Egress as an
external node, with those rates within 10 % (as the lab's own clients counted them over the same stretch)."""

from __future__ import annotations

import re
import time

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from lab.waiting import wait_for
from tests.browser_fixtures import login, screenshot
from tests.labmesh.test_policies import EGRESS, HTTP_IN, HTTPS_IN

pytestmark = pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s")

CONTROLLER = "svc:ingress-nginx/ingress-nginx-controller"
INTO_ROOT = f"ingress:bookstore/bookstore-http:{CONTROLLER}>svc:bookstore/bookstore"
INTO_V1 = f"ingress:bookstore/bookstore-mtls:{CONTROLLER}>svc:bookstore/bookstore-v1"
EXTERNAL = "ext:bookbuyer/bookbuyer-external"
EGRESS_EDGE = "egress:bookbuyer/bookbuyer-external:wl:bookbuyer/bookbuyer"


@pytest.fixture
def viewer_page(page, live_server, lab_cluster, redis):
    call_command("create_user", "wendy", role="viewer", password="a-long-viewer-pass")
    login(page, live_server.url, "wendy", "a-long-viewer-pass")
    return page


def _data(page, element_id: str) -> dict | None:
    return page.evaluate(
        "(id) => { const e = window.mbGraph && mbGraph.cy && mbGraph.cy.getElementById(id);"
        " return e && e.length ? Object.assign({visible: e.visible(), classes: e.classes().join(' ')}, e.data())"
        " : null; }",
        element_id,
    )


def _sent(stack, *clients: str) -> float:
    traffic = stack.lab.traffic()
    return sum(traffic[c]["requests"] for c in clients)


def test_the_graph_shows_the_ingress_controller_and_the_egress_destination_with_measured_traffic(
    viewer_page, live_server, lab_stack
):
    page = viewer_page
    started, first_in, first_out = time.monotonic(), _sent(lab_stack, HTTP_IN, HTTPS_IN), _sent(lab_stack, EGRESS)
    seen: dict = {}

    def measured() -> bool:
        page.goto(f"{live_server.url}/graph/")
        expect(page.locator("body")).to_have_attribute("data-graph-renders", re.compile(r"^[1-9]\d*$"), timeout=20_000)
        seen.update(controller=_data(page, CONTROLLER), external=_data(page, EXTERNAL))
        seen.update(root=_data(page, INTO_ROOT), v1=_data(page, INTO_V1), egress=_data(page, EGRESS_EDGE))
        rates = [(seen["controller"] or {}).get("ingress_rps"), (seen["external"] or {}).get("egress_rps")]
        # the KPI window fills after a few scrapes: wait for both rates to near the generator's 4 and 1 req/s
        return all(r is not None for r in rates) and 3.6 <= rates[0] <= 4.4 and 0.9 <= rates[1] <= 1.1

    try:
        wait_for(measured, timeout=90, interval=2)
    except AssertionError:
        raise AssertionError(f"the graph's boundary rates did not settle: {seen}") from None
    elapsed = time.monotonic() - started
    ingress_rate = (_sent(lab_stack, HTTP_IN, HTTPS_IN) - first_in) / elapsed
    egress_rate = (_sent(lab_stack, EGRESS) - first_out) / elapsed
    controller, external = seen["controller"], seen["external"]
    assert controller["ingress_rps"] == pytest.approx(ingress_rate, rel=0.10), (controller, ingress_rate)
    assert external["egress_rps"] == pytest.approx(egress_rate, rel=0.10), (external, egress_rate)

    # The controller is an entry node; each IngressBackend an edge to the backend it admits, with the protocol.
    assert controller["kind"] == "ingress" and controller["visible"]
    root, v1 = seen["root"], seen["v1"]
    assert root["visible"] and v1["visible"]
    assert root["label"].startswith("ingress http · ") and "ingress" in root["classes"].split()
    assert v1["label"].startswith("ingress https · ") and v1["lock"] == "mtls"
    # bookstore's pods take all the ingress (HTTP to both pods, HTTPS to v1's), bookstore-v1's pod less of it
    assert root["rps"] == pytest.approx(controller["ingress_rps"], rel=0.01)
    assert 0 < v1["rps"] < root["rps"]
    # The Egress policy: an external node reached from bookbuyer's workload.
    assert external["kind"] == "external" and external["name"] == "books.example.com" and external["visible"]
    egress = seen["egress"]
    assert egress["visible"] and egress["label"].startswith("egress · ") and not egress["idle"]
    # bookbuyer's edge to bookstore carries the Retry and bookstore's local rate limit.
    buyer = _data(page, "e:wl:bookbuyer/bookbuyer>svc:bookstore/bookstore")
    assert {"retry", "ratelimit"} <= set(buyer["classes"].split()), buyer
    assert "↻ retry" in buyer["label"] and "⇥ rate limit" in buyer["label"]

    # Selecting the controller and the egress edge says what the policy allows and how it was counted.
    page.evaluate(f"() => mbGraph.cy.getElementById('{CONTROLLER}').emit('tap')")
    panel = page.locator("#graph-panel")
    expect(panel).to_contain_text("sends into the mesh")
    expect(panel).to_contain_text("counted by the backends' sidecars")
    page.evaluate(f"() => mbGraph.cy.getElementById('{INTO_V1}').emit('tap')")
    expect(panel).to_contain_text("HTTPS, client certificate validated")
    expect(panel).to_contain_text("AuthenticatedPrincipal ingress-nginx.ingress-nginx.cluster.local")
    page.evaluate(f"() => mbGraph.cy.getElementById('{EXTERNAL}').emit('tap')")
    expect(panel).to_contain_text("books.example.com on 80/http")
    page.evaluate("() => mbGraph.cy.fit(mbGraph.cy.nodes(':visible'), 30)")
    screenshot(page, "graph-lab-ingress-egress")
    assert page.errors == []
    print(
        f"graph: ingress {controller['ingress_rps']:.2f} req/s (generator {ingress_rate:.2f}), "
        f"egress {external['egress_rps']:.2f} req/s (generator {egress_rate:.2f})"
    )


def test_bookstores_page_shows_its_rate_limited_requests_and_its_ingress(viewer_page, live_server):
    page = viewer_page
    url = f"{live_server.url}/services/bookstore/bookstore/"

    def limited() -> bool:
        page.goto(url)
        text = page.locator('dd[data-kpi="rate-limited"]').inner_text()
        return "req/s" in text and not text.startswith("0 ")

    wait_for(limited, timeout=90, interval=2)
    expect(page.locator('dd[data-kpi="rate-limited"]')).to_contain_text("local rate limit")
    expect(page.locator("body")).to_contain_text("bookstore-http")
    # bookstore selects both pods: all of the controller's 4 req/s (2 HTTP to either pod, 2 HTTPS to v1's)
    measured = page.locator('p[data-kpi="ingress"]').inner_text()
    rate = float(re.search(r"Measured from outside: ([\d.]+) req/s", measured).group(1))
    assert 3.6 <= rate <= 4.4, measured
    screenshot(page, "service-bookstore-lab-resilience")
    assert page.errors == []
