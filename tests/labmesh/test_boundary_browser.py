"""The mesh's edge on the pages, in Chromium against the lab mesh (issue 21): real Envoys programmed from the
bookstore seed's IngressBackends, Egress, UpstreamTrafficSetting and Retry, a real Prometheus with 1 s scrapes, both
collectors running as beat would run them.

The lab's generator sends 2 req/s through the ingress controller's Envoy to each of its two Ingress paths (HTTP to
bookstore's pods, HTTPS with the controller's client certificate to bookstore-v1's), and bookbuyer 4 req/s to
books.example.com through its Egress policy. The graph shows the controller as an entry node and the Egress as an
external node, with those rates within 10 % of what the lab's own clients sent over the KPI's window."""

from __future__ import annotations

import copy
import re
import time

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from lab.waiting import wait_for
from tests.browser_fixtures import login, screenshot
from tests.labmesh.recording import Recorder, generator
from tests.labmesh.test_policies import BUYER, EGRESS, HTTP_IN, HTTPS_IN

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


def test_the_graph_shows_the_ingress_controller_and_the_egress_destination_with_measured_traffic(
    page, live_server, lab_stack, transactional_db, redis
):
    """One collection at a chosen instant (as tests/metrics/test_resilience_lab.py does), so the graph's rates and
    the generator's counts cover the same window: the KPI's (10 s at 1 s scrapes)."""
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record as collect_objects
    from apps.metrics import catalog
    from apps.metrics.services import collect_and_record as collect_metrics

    cluster = Cluster.objects.create(
        name="lab", kubeconfig_path=lab_stack.kubeconfig, prometheus_url=lab_stack.lab.prometheus_url
    )
    assert collect_objects(cluster)[1] is None
    ingress = 'envoy_http_rds_ingress_downstream_rq_total{{source_workload_name="{}"}}'
    egress = 'envoy_cluster_upstream_rq_total{envoy_cluster_name="books_example_com_80"}'
    window = catalog.windows(1.0).short
    with Recorder(lambda: generator(lab_stack)) as recorder:
        wait_for(
            lambda: (
                lab_stack.query(f"{ingress.format('bookstore')} > 20")
                and lab_stack.query(f"{ingress.format('bookstore-v2')} > 10")
                and lab_stack.query(f"{egress} > 40")
            ),
            60,
        )
        time.sleep(window + 2)  # a whole window of steady traffic inside the recording
        at = time.time() - 1.5  # scraped by now
        assert collect_metrics(cluster, at=at)[1] is None
        time.sleep(0.3)

    def rate(*clients: str) -> float:
        return sum(recorder.at(at, f"{c} sent") - recorder.at(at - window, f"{c} sent") for c in clients) / window

    ingress_rate, egress_rate = rate(HTTP_IN, HTTPS_IN), rate(EGRESS)
    call_command("create_user", "wendy", role="viewer", password="a-long-viewer-pass")
    login(page, live_server.url, "wendy", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/graph/")
    expect(page.locator("body")).to_have_attribute("data-graph-renders", re.compile(r"^[1-9]\d*$"), timeout=20_000)
    controller, external = _data(page, CONTROLLER), _data(page, EXTERNAL)
    root, v1, out = _data(page, INTO_ROOT), _data(page, INTO_V1), _data(page, EGRESS_EDGE)
    assert ingress_rate > 3 and egress_rate > 3, (ingress_rate, egress_rate)  # 2 req/s per Ingress path; 4 out
    assert controller["ingress_rps"] == pytest.approx(ingress_rate, rel=0.10), (controller, ingress_rate)
    assert external["egress_rps"] == pytest.approx(egress_rate, rel=0.10), (external, egress_rate)

    # The controller is an entry node; each IngressBackend an edge to the backend it admits, with the protocol.
    assert controller["kind"] == "ingress" and controller["visible"]
    assert root["visible"] and v1["visible"]
    assert root["label"].startswith("ingress http · ") and "ingress" in root["classes"].split()
    assert v1["label"].startswith("ingress https · ") and v1["lock"] == "mtls"
    # bookstore's pods take all the ingress (HTTP to both pods, HTTPS to v1's), bookstore-v1's pod less of it
    assert root["rps"] == pytest.approx(controller["ingress_rps"], rel=0.01)
    assert 0 < v1["rps"] < root["rps"]
    # The Egress policy: an external node reached from bookbuyer's workload.
    assert external["kind"] == "external" and external["name"] == "books.example.com" and external["visible"]
    assert out["visible"] and out["label"].startswith("egress · ") and not out["idle"]
    # bookbuyer's edge to bookstore carries the Retry and bookstore's local rate limit.
    buyer = _data(page, "e:wl:bookbuyer/bookbuyer>svc:bookstore/bookstore")
    assert {"retry", "ratelimit"} <= set(buyer["classes"].split()), buyer
    assert "↻ retry" in buyer["label"] and "⇥ rate limit" in buyer["label"]

    # Selecting the controller and the edges says what the policy allows and how it was counted.
    page.evaluate(f"() => {{ mbGraph.cy.getElementById('{CONTROLLER}').emit('tap'); }}")
    panel = page.locator("#graph-panel")
    expect(panel).to_contain_text("sends into the mesh")
    expect(panel).to_contain_text("counted by the backends' sidecars")
    page.evaluate(f"() => {{ mbGraph.cy.getElementById('{INTO_V1}').emit('tap'); }}")
    expect(panel).to_contain_text("HTTPS, client certificate validated")
    expect(panel).to_contain_text("AuthenticatedPrincipal ingress-nginx.ingress-nginx.cluster.local")
    page.evaluate(f"() => {{ mbGraph.cy.getElementById('{EXTERNAL}').emit('tap'); }}")
    expect(panel).to_contain_text("books.example.com on 80/http")
    # in braces: the arrow returns nothing (Playwright would serialise the Cytoscape core fit() returns, and run out
    # of memory doing so)
    page.evaluate("() => { mbGraph.cy.fit(mbGraph.cy.nodes(':visible'), 30); }")
    screenshot(page, "graph-lab-ingress-egress")
    assert page.errors == []
    print(
        f"graph: ingress {controller['ingress_rps']:.2f} req/s (generator {ingress_rate:.2f}), "
        f"egress {external['egress_rps']:.2f} req/s (generator {egress_rate:.2f})"
    )


def test_bookstores_page_shows_its_rate_limited_requests_and_its_ingress(viewer_page, live_server, lab_stack):
    page = viewer_page
    url = f"{live_server.url}/services/bookstore/bookstore/"
    # bookbuyer's steady 20 req/s stay under bookstore's limit; a burst empties its bucket (as
    # tests/metrics/test_resilience_lab.py does), then some of the steady requests get a 429
    lab_stack.lab.clients[BUYER].burst(1200, connections=4)

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


# -- each OSM policy-API check on a seeded mistake, on the lab's own stand-in (issue 21 item 6) ----------------------

POLICY_API_CODES = ("MB-INGRESS", "MB-EGRESS", "MB-UPSTREAM", "MB-RETRY", "MB-CERT")
PLURALS = {
    "IngressBackend": "ingressbackends",
    "Egress": "egresses",
    "UpstreamTrafficSetting": "upstreamtrafficsettings",
    "Retry": "retries",
    "MeshConfig": "meshconfigs",
    "MeshRootCertificate": "meshrootcertificates",
    "HTTPRouteGroup": "httproutegroups",
}


def _key(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _changes(before: list[dict], after: list[dict]) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """What an edit of the seed changed: ((before, after) of changed objects, added objects, removed objects)."""
    old, new = {_key(o): o for o in before}, {_key(o): o for o in after}
    changed = [(old[k], new[k]) for k in new if k in old and new[k] != old[k]]
    return changed, [new[k] for k in new if k not in old], [old[k] for k in old if k not in new]


def _merge_patch(old: dict, new: dict) -> dict:
    patch: dict = {k: None for k in old if k not in new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            patch[key] = _merge_patch(old[key], value)
        elif key not in old or old[key] != value:
            patch[key] = value
    return patch


class Cluster:
    """Writes seed objects to the lab's stand-in through the official client, as kubectl would."""

    def __init__(self, stack) -> None:
        self.api = stack.custom_api()

    def _where(self, obj: dict) -> tuple[str, str, str, str]:
        group, version = obj["apiVersion"].split("/")
        return group, version, obj["metadata"]["namespace"], PLURALS[obj["kind"]]

    def put(self, old: dict, new: dict) -> None:
        """Turn the object's spec (and status) from `old` into `new`: JSON merge patches (RFC 7386), a key `new`
        lacks set to null."""
        group, version, ns, plural = self._where(new)
        name = new["metadata"]["name"]
        spec = _merge_patch(old.get("spec") or {}, new.get("spec") or {})
        self.api.patch_namespaced_custom_object(group, version, ns, plural, name, {"spec": spec})
        if old.get("status") != new.get("status"):
            status = _merge_patch(old.get("status") or {}, new.get("status") or {})
            self.api.patch_namespaced_custom_object_status(group, version, ns, plural, name, {"status": status})

    def create(self, obj: dict) -> None:
        group, version, ns, plural = self._where(obj)
        body = {k: v for k, v in obj.items() if k != "status"}
        body["metadata"] = {k: v for k, v in obj["metadata"].items() if k in ("name", "namespace", "labels")}
        self.api.create_namespaced_custom_object(group, version, ns, plural, body)

    def delete(self, obj: dict) -> None:
        group, version, ns, plural = self._where(obj)
        self.api.delete_namespaced_custom_object(group, version, ns, plural, obj["metadata"]["name"])


def _apply(cluster: Cluster, before: list[dict], after: list[dict]) -> None:
    changed, added, removed = _changes(before, after)
    for old, new in changed:
        cluster.put(old, new)
    for obj in added:
        cluster.create(obj)
    for obj in removed:
        cluster.delete(obj)


def _codes(page, url: str) -> set[str]:
    page.goto(url)
    return set(page.locator("li.finding").evaluate_all("(els) => els.map((e) => e.dataset.code)"))


def test_each_policy_api_check_fires_on_a_seeded_mistake_and_not_on_the_clean_seed(viewer_page, live_server, lab_stack):
    """The Mesh page lists every finding. On the lab's clean seed none of the policy API's checks fires; each seeded
    mistake (the cases of tests/policies/test_checks.py, written to the running lab's stand-in with the official
    client) makes its code appear within a few collections, and putting the seed back makes it go."""
    from lab.seeds.loader import load_seed
    from tests.policies.test_checks import CASES

    page, url = viewer_page, f"{live_server.url}/mesh/"
    clean = [copy.deepcopy(o) for o in load_seed("bookstore").objects]
    cluster = Cluster(lab_stack)
    codes = sorted(c for c in CASES if c.startswith(POLICY_API_CODES))
    assert len(codes) == 12, codes  # 5 ingress, 2 egress, 2 upstream, 2 retry, 1 certificate
    quiet = _codes(page, url)
    assert not {c for c in quiet if c.startswith(POLICY_API_CODES)}, quiet
    for code in codes:
        broken = [copy.deepcopy(o) for o in clean]
        CASES[code][0](broken)
        _apply(cluster, clean, broken)
        try:
            wait_for(lambda code=code: code in _codes(page, url), timeout=30, interval=1)
        except AssertionError:
            raise AssertionError(f"{code} did not fire on its seeded mistake") from None
        finding = page.locator(f'li.finding[data-code="{code}"]').first
        expect(finding).to_contain_text(code)
        if code == "MB-INGRESS-004":
            screenshot(page, "mesh-lab-check-ingress")
        _apply(cluster, broken, clean)
        try:
            wait_for(lambda code=code: code not in _codes(page, url), timeout=30, interval=1)
        except AssertionError:
            raise AssertionError(f"{code} still fires once the seed is back") from None
    assert page.errors == []
