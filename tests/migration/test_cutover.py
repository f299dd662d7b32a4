"""A cut-over in place: the bookstore cluster ran OSM for a week, then OSM was uninstalled and Istio installed in the
same cluster (the assistant's own bundle applied). One real Prometheus (promtool backfill) holds OSM's Envoy series
for the week before the cut-over and istio-proxy's standard metrics (both reporters) for the two days after it; the
configuration history holds the OSM configuration collected before the cut-over and, at the cut-over, the
collection that saw OSM's MeshConfig, TrafficTargets and TrafficSplit go.

The before/after page, asked for the same cluster twice, finds the cut-over in the history, reads each Service's
KPIs over the last OSM week and the first Istio days, and checks the SMI policy of before the cut-over against the
live AuthorizationPolicies.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from apps.clusters.models import Cluster
from apps.history.models import HistoryState, Tracked, Version
from apps.mesh.models import MeshState
from apps.mesh.services import collect_and_record as collect_objects
from apps.migration import services
from lab.metrics_data import bookstore_openmetrics, latency_cdf, sample_times
from lab.seeds.istio import REVISION
from lab.seeds.loader import istio_bookstore_seed
from tests.browser_fixtures import login, screenshot

pytestmark = pytest.mark.django_db

STEP = 600.0  # one sample every 10 minutes keeps a week of series small; every rate here spans days
CUT = float((int(time.time()) // 3600 - 48) * 3600)  # two days ago, on the hour
OSM_TIMES = sample_times(CUT - 7 * 86400, CUT, STEP)  # OSM's sidecars, up to the cut-over
ISTIO_TIMES = sample_times(CUT + STEP, time.time() - 30, STEP)  # istio-proxy's, from the first scrape after it
LATENCY = latency_cdf(20.0, 80.0, 150.0)
URL = "/migrate/before-after/"


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.fixture(scope="session")
def cutover_prometheus(prometheus_factory):
    """One Prometheus for every test here (pytest-django runs the browser test apart from the others): backfilling a
    week of series is the slow part."""
    return prometheus_factory(
        bookstore_openmetrics(OSM_TIMES, ISTIO_TIMES, cdf=LATENCY), name="cutover", block_hours=10 * 24
    )


@pytest.fixture
def cut_over(collected, kubeapi_factory, cutover_prometheus) -> Cluster:
    """The bookstore cluster collected on OSM (its history backdated to a week before the cut-over), then collected
    again once the stand-in serves the moved bookstore (the history's deletions dated at the cut-over)."""
    prometheus = cutover_prometheus
    cluster, _osm_server = collected()
    osm_seen = _at(CUT - 8 * 86400)
    Version.objects.filter(cluster=cluster).update(recorded_at=osm_seen)
    Tracked.objects.filter(cluster=cluster).update(last_recorded_at=osm_seen)
    HistoryState.objects.filter(cluster=cluster).update(started_at=osm_seen, complete_from=osm_seen)
    bundle = services.bundle_yaml(services.build(cluster, REVISION))
    istio_server = kubeapi_factory(istio_bookstore_seed(bundle))
    Cluster.objects.filter(pk=cluster.pk).update(
        kubeconfig_path=str(istio_server.kubeconfig), prometheus_url=prometheus.url
    )
    cluster.refresh_from_db()
    _run, error = collect_objects(cluster)
    assert error is None, error
    assert MeshState.objects.get(cluster=cluster).is_istio
    gone = Version.objects.filter(cluster=cluster, recorded_at__gt=osm_seen)
    assert {v.kind for v in gone if v.change == "deleted"} >= {"MeshConfig", "TrafficTarget", "TrafficSplit"}
    gone.update(recorded_at=_at(CUT))
    return cluster


def _row(html: str, service: str) -> str:
    section = html.split('<section id="cutover"', 1)[1]
    return section.split(f'<tr data-service="{service}">', 1)[1].split("</tr>")[0]


def _rate(row: str, side: str) -> float:
    return float(re.search(rf'<td class="num {side}-rate">([0-9.]+)</td>', row).group(1))


def test_it_shows_the_last_osm_week_beside_the_first_istio_days(cut_over, client, viewer):
    client.force_login(viewer)
    response = client.get(URL, {"before": cut_over.name, "after": cut_over.name, "namespace": "bookstore"})
    html = response.content.decode()
    assert response.status_code == 200, html
    cut = _at(CUT)
    assert f'data-cutover="{cut.isoformat()}"' in html, html
    assert f"Same cluster, cut-over at {cut:%Y-%m-%d %H:%M} UTC" in html
    assert "as the history saw it" in html
    # A fixed set, whatever the number of services: OSM's cycle less its TLS/refusal/resilience stats, and Istio's
    # (each asks its latency buckets in two parts).
    assert "15 queries to Prometheus." in html
    assert "before-unavailable" not in html and "after-unavailable" not in html
    # bookstore-v1: bookbuyer's 8 req/s on OSM (bookthief had no route); on Istio bookthief's 2 req/s are 403s.
    v1 = _row(html, "bookstore-v1")
    assert _rate(v1, "before") == pytest.approx(8.0, rel=0.1) and _rate(v1, "after") == pytest.approx(10.0, rel=0.1)
    cells = re.findall(r'<td class="num">([^<]*)</td>', v1)
    # Success is the share of answers that are not 5xx on both meshes, so the 403s keep it at 100%.
    assert cells[:2] == ["100%", "100%"], cells
    # Latency: the same distribution on both sides, each p99 from its mesh's histogram (Envoy's buckets, interpolated
    # between 100 and 250 ms).
    assert cells[2] == cells[3] and cells[2].endswith(" ms") and 100 < float(cells[2][:-3]) < 250, cells
    # The split root charts its backends on both sides: the TrafficSplit before, the VirtualService after.
    root = _row(html, "bookstore")
    assert _rate(root, "before") == pytest.approx(8.0, rel=0.1) and _rate(root, "after") == pytest.approx(10.0, rel=0.1)
    # bookstore-v2, the split's other backend, took no traffic: 0 req/s and nothing else on either side.
    v2 = _row(html, "bookstore-v2")
    assert _rate(v2, "before") == _rate(v2, "after") == 0 and v2.count("–") == 4


def test_it_matches_the_generator_in_another_namespace(cut_over, client, viewer):
    client.force_login(viewer)
    html = client.get(URL, {"before": cut_over.name, "after": cut_over.name, "namespace": "bookwarehouse"})
    html = html.content.decode()
    row = _row(html, "bookwarehouse")
    assert _rate(row, "before") == pytest.approx(6.0, rel=0.1) and _rate(row, "after") == pytest.approx(6.0, rel=0.1)


def test_it_checks_the_policy_before_the_cut_over_against_the_live_istio_objects(cut_over, client, viewer):
    client.force_login(viewer)
    html = client.get(URL, {"before": cut_over.name, "after": cut_over.name, "namespace": "bookstore"})
    section = html.content.decode().split('<section id="cutover"', 1)[1]
    # One difference: OSM admitted its ingress controller (outside the mesh) through an IngressBackend, which the
    # history does not keep, so SMI alone says denied; the bundle's AuthorizationPolicy allows the now-meshed caller.
    differs = re.findall(
        r'<tr class="differs" data-pair="([^"]+)">.*?<td>(\w+)</td><td>(\w+)</td><td>different', section
    )
    assert differs == [
        ("ingress-nginx/ingress-nginx>bookstore/bookstore", "denied", "allowed"),
        ("ingress-nginx/ingress-nginx>bookstore/bookstore-v2", "denied", "allowed"),
    ], differs
    assert 'data-differences="2"' in section and "not its IngressBackends" in section
    assert "Before: the smi policy as last collected before the cut-over; after: the live istio policy." in section
    row = section.split('data-pair="bookbuyer/bookbuyer>bookstore/bookstore"', 1)[1].split("</tr>")[0]
    assert "<td>allowed</td><td>allowed</td><td>same</td>" in row
    row = section.split('data-pair="bookthief/bookthief>bookstore/bookstore"', 1)[1].split("</tr>")[0]
    assert "<td>denied</td><td>denied</td><td>same</td>" in row


def test_it_takes_a_cut_over_time_the_user_gives(cut_over, client, viewer):
    client.force_login(viewer)
    given = _at(CUT + 86400)  # a day late: the OSM "week" then ends with a day of no OSM series
    query = {"before": cut_over.name, "after": cut_over.name, "namespace": "bookstore"}
    response = client.get(URL, {**query, "cutover": f"{given:%Y-%m-%dT%H:%M}"})
    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-cutover="{given.isoformat()}"' in html and "as given" in html
    v1 = _row(html, "bookstore-v1")
    assert _rate(v1, "after") == pytest.approx(10.0, rel=0.1)
    assert _rate(v1, "before") < 8.0 * 0.95  # six OSM days over a seven-day window
    bad = client.get(URL, {"before": cut_over.name, "after": cut_over.name, "namespace": "bookstore", "cutover": "x"})
    assert bad.status_code == 400 and "Cut-over time:" in bad.content.decode()


def test_it_says_when_no_cut_over_is_known(bookstore_cluster, client, viewer):
    client.force_login(viewer)
    response = client.get(URL, {"before": "lab", "after": "lab", "namespace": "bookstore"})
    assert response.status_code == 200  # nothing to compare yet is no error of the visitor's
    assert "No cut-over of cluster lab in its history" in response.content.decode()


def test_it_says_metrics_unavailable_when_prometheus_does_not_answer(cut_over, client, viewer):
    Cluster.objects.filter(pk=cut_over.pk).update(prometheus_url="http://127.0.0.1:9")  # nothing listens on 9
    client.force_login(viewer)
    html = client.get(URL, {"before": cut_over.name, "after": cut_over.name, "namespace": "bookstore"}).content.decode()
    assert "OSM week: metrics unavailable" in html and "Istio days: metrics unavailable" in html
    # The policy check needs no Prometheus.
    assert 'data-pair="bookbuyer/bookbuyer>bookstore/bookstore"' in html


def test_it_shows_the_cut_over_in_a_browser(cut_over, page, live_server, viewer):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}{URL}?before={cut_over.name}&after={cut_over.name}&namespace=bookstore")
    section = page.locator("#cutover")
    expect(section).to_be_visible()
    after = section.locator('tr[data-service="bookstore-v1"] td.after-rate')
    expect(after).to_have_text(re.compile(r"^\d"))
    assert float(after.inner_text()) == pytest.approx(10.0, rel=0.1)
    assert float(section.locator('tr[data-service="bookstore-v1"] td.before-rate').inner_text()) == pytest.approx(8.0)
    expect(section.locator("tr.differs")).to_have_count(2)
    screenshot(page, "cutover-before-after")
    assert page.errors == []
