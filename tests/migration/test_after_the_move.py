"""The bookstore after the move: the assistant's bundle applied to the stand-in (OSM removed, Istio's control plane,
istio-proxy sidecars) reads back as the OSM original did: the same graph edges, splits and policy answers.

One traffic model, two vocabularies in one real Prometheus (promtool backfill): OSM's Envoy cluster stats for the
OSM cluster, istio-proxy's standard metrics (both reporters) for the Istio one. bookbuyer calls the bookstore root
(its split sends all to bookstore-v1), bookstore calls bookwarehouse, bookwarehouse opens TCP to mysql, and bookthief,
which SMI policy denies, calls bookstore: OSM's sidecar has no route for it (no series), Istio's destination sidecar
answers 403 (counted): the one edge only the Istio graph can draw.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from apps.clusters.models import Cluster
from apps.mesh.models import MeshState
from apps.mesh.services import collect_and_record as collect_objects
from apps.metrics.models import EdgeKPI, SplitShare
from apps.metrics.ranges import service_series
from apps.metrics.services import collect_and_record as collect_metrics
from apps.metrics.workload_ranges import PASSTHROUGH, workload_series
from apps.migration import services
from apps.policies import istio_access, smi_access
from lab.metrics_data import bookstore_openmetrics, sample_times
from lab.seeds.istio import BUNDLE_FILE, REVISION
from lab.seeds.loader import istio_bookstore_seed
from tests.browser_fixtures import login, screenshot

pytestmark = pytest.mark.django_db

T0 = (int(time.time()) // 3600 - 3) * 3600
AT = T0 + 1800.0
TIMES = sample_times(T0, AT, 15.0)


def _openmetrics() -> str:
    return bookstore_openmetrics(TIMES, TIMES)


@pytest.fixture
def before_and_after(collected, kubeapi_factory, prometheus_factory) -> tuple[Cluster, Cluster]:
    prometheus = prometheus_factory(_openmetrics(), name="before-after")
    before, _server = collected()
    bundle = services.bundle_yaml(services.build(before, REVISION))
    after_server = kubeapi_factory(istio_bookstore_seed(bundle))
    after = Cluster.objects.create(name="after", kubeconfig_path=str(after_server.kubeconfig))
    _run, error = collect_objects(after)
    assert error is None, error
    for cluster in (before, after):
        Cluster.objects.filter(pk=cluster.pk).update(prometheus_url=prometheus.url)
        cluster.refresh_from_db()
        _run, error = collect_metrics(cluster, at=AT)
        assert error is None, error
    return before, after


def test_it_keeps_the_checked_in_bundle_as_the_assistant_writes_it(bookstore_cluster):
    """`--seed istio-bookstore` applies a checked-in bundle: it must be what the assistant writes today."""
    migration = services.build(bookstore_cluster, REVISION)

    assert services.bundle_yaml(migration) == BUNDLE_FILE.read_text()


def _graph(client, cluster: Cluster) -> dict:
    response = client.get("/graph/data", {"cluster": cluster.name})
    assert response.status_code == 200
    return json.loads(response.content)


def _edges(graph: dict) -> dict[tuple[str, str, str], dict]:
    """Traffic and split edges. The OSM graph also draws its IngressBackends' ingress edges; on Istio the ingress
    controller's admission is an AuthorizationPolicy, which the graph does not draw (yet)."""
    return {
        (e["data"]["source"], e["data"]["target"], e["data"]["kind"]): e["data"]
        for e in graph["elements"]["edges"]
        if not e["data"].get("idle") and e["data"]["kind"] in ("traffic", "split")
    }


def test_it_reads_the_moved_bookstore_back_as_the_osm_original(before_and_after, client, viewer):
    before, after = before_and_after
    assert not MeshState.objects.get(cluster=before).is_istio
    assert MeshState.objects.get(cluster=after).is_istio
    client.force_login(viewer)

    # The graph: the same traffic and split edges, with the same rates and the same policy verdicts; only the
    # denied bookthief edge is new, measured by Istio (403s) and marked denied by policy.
    osm, istio = _edges(_graph(client, before)), _edges(_graph(client, after))
    thief = ("wl:bookthief/bookthief", "svc:bookstore/bookstore", "traffic")
    assert thief not in osm or osm[thief].get("policy") == "denied"
    assert istio[thief]["policy"] == "denied", istio[thief]
    assert set(istio) - {thief} == set(osm) - {thief}, (sorted(osm), sorted(istio))
    for key, edge in osm.items():
        if key == thief:
            continue
        for field in ("policy", "weight", "weight_pct"):
            assert istio[key].get(field) == edge.get(field), (key, field, edge, istio[key])
    split = next(e for k, e in istio.items() if k[2] == "split")
    assert split["split"] == "meshboard-ts-bookstore-split" and split["weight_pct"] == pytest.approx(100.0)

    # Rates per edge: the same model read from two vocabularies (the bookthief edge only on Istio, as 403s).
    def rates(cluster: Cluster) -> dict:
        return {
            (e.source_service, e.destination_service): (e.request_rate, e.tcp_bytes_sent_rate)
            for e in EdgeKPI.objects.filter(cluster=cluster)
        }

    osm_rates, istio_rates = rates(before), rates(after)
    assert set(istio_rates) == set(osm_rates) | {("bookthief", "bookstore-v1")}
    for key, (rps, sent) in osm_rates.items():
        if rps is None:  # mysql's TCP edge: bytes, no requests on either
            assert istio_rates[key] == (None, pytest.approx(sent, rel=0.1)), (key, istio_rates[key], sent)
        else:  # HTTP: Istio counts no bytes for it (istio_tcp_* are TCP-only)
            assert istio_rates[key][0] == pytest.approx(rps, rel=0.1), (key, istio_rates[key], rps)
    assert EdgeKPI.objects.get(cluster=after, source_service="bookthief").rate_4xx == pytest.approx(2.0, rel=0.1)

    # Splits: the TrafficSplit and its VirtualService, same backends, weights and observed shares.
    def shares(cluster: Cluster) -> dict:
        return {s.backend: round(s.share_short or 0, 3) for s in SplitShare.objects.filter(cluster=cluster)}

    assert shares(after) == shares(before) == {"bookstore-v1": 1.0}

    # Policy answers: every meshed caller's service account to every one behind a Service, OSM's SMI policy against
    # the Istio evaluator over the live AuthorizationPolicies.
    osm_policy = smi_access.load_policy(before)
    access = istio_access.load_istio_access(after)
    callers = sorted({g.identity for g in access.groups if g.meshed and g.namespace.startswith("book")})
    served = sorted({g.identity for g in access.groups if g.ports and g.namespace.startswith("book")})
    answers = {}
    for src in callers:
        for dst in served:
            osm_says = smi_access.pair_policy(osm_policy, [src], [dst])
            answers[(str(src), str(dst))] = (osm_says, access.pair([src], [dst]))
    assert all(osm == ist for osm, ist in answers.values()), {k: v for k, v in answers.items() if v[0] != v[1]}
    allowed = {k for k, (osm, _) in answers.items() if osm == "allowed"}
    assert allowed == {
        ("bookbuyer/bookbuyer", "bookstore/bookstore"),
        ("bookbuyer/bookbuyer", "bookstore/bookstore-v2"),
        ("bookstore/bookstore", "bookwarehouse/bookwarehouse"),
        ("bookwarehouse/bookwarehouse", "bookwarehouse/mysql"),
    }, allowed


def test_it_answers_can_a_talk_to_b_from_the_live_istio_policies(before_and_after, client, viewer):
    _before, after = before_and_after
    client.force_login(viewer)
    page = "/policies/"
    response = client.get(page, {"cluster": after.name, "from": "bookbuyer/bookbuyer", "to": "bookstore/bookstore"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-mode="istio"' in html and "STRICT mTLS in bookbuyer, bookstore, bookthief, bookwarehouse" in html
    assert 'data-answer="yes"' in html and "meshboard-tt-bookstore" in html
    response = client.get(page, {"cluster": after.name, "from": "bookthief/bookthief", "to": "bookstore/bookstore"})
    html = response.content.decode()
    assert 'data-answer="no"' in html and "no rule of the ALLOW policies" in html


def test_it_shows_the_virtual_service_split_read_only_with_its_observed_share(before_and_after, client, viewer):
    _before, after = before_and_after
    client.force_login(viewer)
    response = client.get("/splits/", {"cluster": after.name})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-virtual-service="bookstore/meshboard-ts-bookstore-split"' in html
    section = html.split('data-virtual-service="bookstore/meshboard-ts-bookstore-split"', 1)[1].split("</section>")[0]
    assert "read-only" in section and "Edit weights" not in section and "/edit" not in section
    row = section.split('data-backend="bookstore-v1"', 1)[1].split("</tr>")[0]
    assert row.count("100.0%") == 3  # configured, observed over the short window and over 5 minutes


def _row(html: str, service: str) -> str:
    start = html.index(f'<tr data-service="{service}">')
    return html[start : html.index("</tr>", start)]


def test_it_shows_the_same_kpis_on_the_overview_service_and_workload_pages(before_and_after, client, viewer):
    before, after = before_and_after
    client.force_login(viewer)
    pages = {}
    for cluster in (before, after):
        overview = client.get("/", {"cluster": cluster.name}).content.decode()
        service = client.get("/services/bookwarehouse/bookwarehouse/", {"cluster": cluster.name})
        workload = client.get("/workloads/bookstore/deployment/bookstore/", {"cluster": cluster.name})
        assert service.status_code == workload.status_code == 200
        row = _row(overview, "bookwarehouse/bookwarehouse")
        pages[cluster.name] = (row, service.content.decode(), workload.content.decode())
    (osm_row, osm_service, osm_workload), (istio_row, istio_service, istio_workload) = pages.values()
    # The same row but the TCP bytes: OSM's sidecars count an HTTP edge's bytes, Istio's TCP metrics do not.
    assert '<td class="num">6</td>' in osm_row
    assert istio_row == osm_row.replace('<td class="num">0 B/s</td>', '<td class="num">–</td>')
    for html in (osm_service, istio_service):
        assert "<dt>Request rate</dt><dd>6 req/s</dd>" in html
    for html in (osm_workload, istio_workload):  # bookstore's outbound: its calls to bookwarehouse
        assert '<dt>Request rate</dt><dd class="outbound-rate">6 req/s</dd>' in html


def test_it_charts_a_service_from_the_same_traffic_before_and_after(before_and_after, redis):
    before, after = before_and_after
    osm = service_series(before, "bookwarehouse", "bookwarehouse", "1h", now=AT)
    istio = service_series(after, "bookwarehouse", "bookwarehouse", "1h", now=AT)
    assert istio["timestamps"] == osm["timestamps"]
    assert osm["series"]["request_rate"][-1] == pytest.approx(6.0)
    assert istio["series"]["request_rate"][-1] == pytest.approx(6.0)
    assert istio["series"]["success_rate"][-1] == pytest.approx(1.0)
    # A split root charts its backends' traffic: on Istio the VirtualService's, bookthief's 403s included.
    root = service_series(after, "bookstore", "bookstore", "1h", now=AT)["series"]
    assert root["request_rate"][-1] == pytest.approx(10.0) and root["rate_4xx"][-1] == pytest.approx(2.0)
    mysql = service_series(after, "bookwarehouse", "mysql", "1h", now=AT)["series"]
    assert mysql["tcp_bytes_sent_rate"][-1] == pytest.approx(2000.0)


def test_it_charts_a_workload_from_the_destination_reporter(before_and_after, redis):
    """A workload's charts on Istio: what its calls did, from the destination reporter by source workload (one of
    the two reporters: 6 req/s, not 12), the same series as OSM's caller-side cluster stats."""
    before, after = before_and_after
    osm = workload_series(before, "bookstore", "Deployment", "bookstore", "1h", app="bookstore", now=AT)
    istio = workload_series(after, "bookstore", "Deployment", "bookstore", "1h", app="bookstore", now=AT)
    assert istio["timestamps"] == osm["timestamps"]
    assert 'source_workload_namespace="bookstore",source_workload="bookstore"' in istio["selector"]
    for data in (osm, istio):
        assert data["series"]["request_rate"][-1] == pytest.approx(6.0)
        assert data["series"]["success_rate"][-1] == pytest.approx(1.0)
    # Istio has no egress passthrough counter: the chart says so instead of drawing nothing.
    assert istio["unavailable"][PASSTHROUGH] == "not on Istio: its standard metrics have no egress passthrough counter"
    assert all(v is None for v in istio["series"][PASSTHROUGH])
    thief = workload_series(after, "bookthief", "Deployment", "bookthief", "1h", app="bookthief", now=AT)["series"]
    assert thief["request_rate"][-1] == pytest.approx(2.0) and thief["rate_4xx"][-1] == pytest.approx(2.0)
    mysql = workload_series(after, "bookwarehouse", "Deployment", "bookwarehouse", "1h", now=AT)["series"]
    assert mysql["tcp_bytes_sent_rate"][-1] == pytest.approx(2000.0)


def test_it_shows_each_edges_mtls_share_and_says_istio_has_no_certificate_expiry(before_and_after, client, viewer):
    before, after = before_and_after
    client.force_login(viewer)
    osm, istio = (
        client.get("/services/bookwarehouse/bookwarehouse/", {"cluster": c.name}).content.decode()
        for c in (before, after)
    )
    assert "<th>TLS handshakes/s</th>" in osm and "mtls-share" not in osm
    assert "<th>mTLS share</th>" in istio and "<th>TLS handshakes/s</th>" not in istio
    inbound = istio.split('<tr data-source="bookstore/bookstore">', 1)[1].split("</tr>")[0]
    assert '<span class="mtls-share">100%</span>' in inbound
    expiry = istio.split("<dt>Certificate expiry</dt>", 1)[1].split("</dd>")[0]
    assert "certificate expiry are Envoy cluster stats that Istio&#x27;s standard metrics do not carry" in expiry
    workload = client.get("/workloads/bookstore/deployment/bookstore/", {"cluster": after.name}).content.decode()
    row = workload.split('<tr data-destination="bookwarehouse/bookwarehouse">', 1)[1].split("</tr>")[0]
    assert "<th>mTLS share</th>" in workload and '<span class="mtls-share">100%</span>' in row


def test_it_judges_a_workloads_calls_by_the_live_authorization_policies(before_and_after, client, viewer):
    _before, after = before_and_after
    client.force_login(viewer)
    page = client.get("/workloads/bookstore/deployment/bookstore/", {"cluster": after.name}).content.decode()
    refusals = page.split('<section class="refusals"', 1)[1].split("</section>")[0]
    assert "the 403s the destination&#x27;s sidecar answered (its AuthorizationPolicies)" in refusals
    policy = page.split('<section class="policy"', 1)[1].split("</section>")[0]
    assert "Mode: Istio: each call is judged by the destination's live AuthorizationPolicies" in policy
    assert "Nothing allows it" not in policy and "TrafficTarget</th>" not in policy
    called = policy.split('<li data-destination="bookwarehouse/bookwarehouse">', 1)[1].split("</li>")[0]
    assert (
        "<strong>yes</strong>" in called
        and "ALLOW policy bookwarehouse/meshboard-tt-bookstore-access-bookwarehouse" in called
    )
    thief = client.get("/workloads/bookthief/deployment/bookthief/", {"cluster": after.name}).content.decode()
    called = thief.split('<li data-destination="bookstore/bookstore-v1">', 1)[1].split("</li>")[0]
    assert "<strong>no</strong>" in called and "no rule of the ALLOW policies" in called, called


def test_it_draws_a_workloads_charts_on_istio_in_a_browser(before_and_after, page, live_server, viewer):
    _before, after = before_and_after
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/workloads/bookstore/deployment/bookstore/?cluster={after.name}&window=6h")
    requests = page.locator('.chart[data-chart="requests"]')
    expect(requests).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=20000)
    passthrough = page.locator('.chart[data-chart="passthrough"]')
    expect(passthrough).to_contain_text("No data: not on Istio: its standard metrics have no egress passthrough")
    screenshot(page, "istio-workload-charts")
    assert page.errors == []


def test_it_draws_the_moved_bookstore_in_a_browser(before_and_after, page, live_server, viewer):
    """The graph page of the Istio cluster in Debian's chromium: the same chain with padlocks, the VirtualService's
    split edge with its observed share, and bookthief's 403s drawn as an edge policy denies."""
    _before, after = before_and_after
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/graph/?cluster={after.name}")
    expect(page.locator("body")).to_have_attribute("data-graph-renders", re.compile(r"^[1-9]\d*$"), timeout=20000)
    edges = page.evaluate(
        "() => { const out = {}; mbGraph.cy.edges().forEach((e) => { out[e.id()] = {display: e.data('display'),"
        " lock: e.data('lock'), policy: e.data('policy'), classes: e.classes().join(' ')}; }); return out; }"
    )
    chain = (
        "e:wl:bookbuyer/bookbuyer>svc:bookstore/bookstore",
        "e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse",
        "e:svc:bookwarehouse/bookwarehouse>svc:bookwarehouse/mysql",
    )
    # bookstore's app label is on bookstore-v2's pods too, whose service account may not call bookwarehouse: partly,
    # as on OSM.
    for edge_id, policy in zip(chain, ("allowed", "partly", "allowed"), strict=True):
        assert edges[edge_id]["lock"] == "mtls" and edges[edge_id]["policy"] == policy, (edge_id, edges[edge_id])
    assert "8 rps" in edges[chain[0]]["display"] and "TCP 2 kB/s" in edges[chain[2]]["display"]
    thief = edges["e:wl:bookthief/bookthief>svc:bookstore/bookstore"]
    assert thief["policy"] == "denied" and "policy-denied" in thief["classes"].split()
    split = edges["split:bookstore/meshboard-ts-bookstore-split>bookstore-v1"]
    assert split["display"] == "weight 100% · observed 100%"
    screenshot(page, "istio-bookstore-graph")
    page.goto(f"{live_server.url}/splits/?cluster={after.name}")
    expect(page.locator('[data-virtual-service="bookstore/meshboard-ts-bookstore-split"]')).to_be_visible()
    screenshot(page, "istio-bookstore-splits")
    assert page.errors == []


def test_it_shows_one_namespace_before_and_after_the_move(before_and_after, client, viewer):
    before, after = before_and_after
    client.force_login(viewer)
    url = "/migrate/before-after/"
    response = client.get(url, {"before": before.name, "after": after.name, "namespace": "bookstore"})
    html = response.content.decode()
    assert response.status_code == 200
    # Every answer agrees: the live AuthorizationPolicies say what the TrafficTargets said.
    assert 'data-namespace="bookstore" data-differences="0"' in html
    assert "Before: smi policy; after: istio." in html
    assert '<tr data-pair="bookbuyer/bookbuyer>bookstore/bookstore"><td>bookbuyer/bookbuyer</td>' in html
    row = html.split('data-pair="bookthief/bookthief>bookstore/bookstore"', 1)[1].split("</tr>")[0]
    assert "<td>denied</td><td>denied</td><td>same</td>" in row
    # bookstore-v1's KPIs: 8 req/s before; after, bookthief's 2 req/s of 403s are counted too.
    v1 = html.split('<tr data-service="bookstore-v1">', 1)[1].split("</tr>")[0]
    assert '<td class="num before-rate">8</td>' in v1 and '<td class="num after-rate">10</td>' in v1
    refused = client.get(url, {"before": before.name, "after": "nope", "namespace": "bookstore"})
    assert refused.status_code == 400 and "Choose two clusters" in refused.content.decode()
