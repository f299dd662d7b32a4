"""The overview and the graph "as of" a past time: the configuration from the history (recorded by the real collector
against the stand-in, at chosen times), the KPIs from a real Prometheus holding backfilled sidecar series, evaluated
then.

The story, two hours of it ending more than an hour ago:
- H0 (half an hour before Prometheus holds anything): the bookstore split at 75/25 and a TrafficTarget letting
  bookthief buy from bookstore are first collected.
- T0..T1: bookbuyer sends 7.5 req/s to bookstore-v1 and 2.5 to bookstore-v2; bookthief 1 req/s to bookstore-v1.
- T1: the split moves to 50/50 and the TrafficTarget is removed (collected at T1); from then on bookbuyer sends 5 and 5,
  and bookthief's sidecar has no route left (its counter stops).
- The present: the snapshot of after T1, and the KPIs the metrics cycle stored for a moment near T2.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from playwright.sync_api import expect

from apps.clusters.models import Cluster
from apps.history.services import after_collection, record_snapshot
from apps.mesh.services import collect_and_record
from apps.mesh.signals import snapshot_stored
from apps.metrics.services import collect_and_record as collect_metrics
from lab.metrics_data import OpenMetrics, sample_times
from lab.seeds.loader import load_seed
from tests.helpers import custom_api, set_bookstore_backends

ACCESS = ("access.smi-spec.io", "v1alpha3")
STEP = 15.0
T0 = (int(time.time()) // 3600 - 3) * 3600
T1 = T0 + 3600
T2 = T0 + 7200
H0 = T0 - 1800
A, B = T0 + 1800, T1 + 1800  # a time in each phase

BUYER = {"source_namespace": "bookbuyer", "source_service": "bookbuyer", "source_workload_kind": "Deployment",
         "source_workload_name": "bookbuyer", "source_pod_name": "bookbuyer-1"}  # fmt: skip
THIEF = {"source_namespace": "bookthief", "source_service": "bookthief", "source_workload_kind": "Deployment",
         "source_workload_name": "bookthief", "source_pod_name": "bookthief-1"}  # fmt: skip
# (caller, destination cluster) -> req/s before T1 and after
TRAFFIC = {
    (0, "bookstore/bookstore-v1|14001"): (7.5, 5.0),
    (0, "bookstore/bookstore-v2|14001"): (2.5, 5.0),
    (1, "bookstore/bookstore-v1|14001"): (1.0, 0.0),
}


def _phased(rate_a: float, rate_b: float):
    """A counter growing at `rate_a`/s until T1, then at `rate_b`/s."""

    def value(_i: int, t: float) -> float:
        return 1000.0 + rate_a * (min(t, T1) - T0) + rate_b * max(0.0, t - T1)

    return value


@pytest.fixture(scope="module")
def replay_prometheus(prometheus_factory):
    om = OpenMetrics(sample_times(T0, T2, STEP))
    for (caller, cluster_name), (rate_a, rate_b) in TRAFFIC.items():
        labels = {**(BUYER, THIEF)[caller], "envoy_cluster_name": cluster_name}
        om.series("envoy_cluster_upstream_rq_xx", {**labels, "envoy_response_code_class": "2"}, _phased(rate_a, rate_b))
        om.series("envoy_cluster_upstream_rq_total", labels, _phased(rate_a, rate_b))
        om.gauge("envoy_cluster_upstream_cx_active", labels, 1.0)
    return prometheus_factory(om.text(), name="replay")


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _q(unix: float) -> str:
    return quote(_at(unix).isoformat())


@pytest.fixture
def history_at_chosen_times():
    """The history records what the test says, at the times it says (record_snapshot's `at`), not at each
    collection's own time."""
    snapshot_stored.disconnect(after_collection)
    yield
    snapshot_stored.connect(after_collection)


@pytest.fixture
def replay(db, kubeapi, replay_prometheus, history_at_chosen_times):
    cluster = Cluster.objects.create(
        name="replay", kubeconfig_path=str(kubeapi.kubeconfig), prometheus_url=replay_prometheus.url
    )
    custom = custom_api(kubeapi)
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 75}, {"service": "bookstore-v2", "weight": 25}]
    )
    custom.create_namespaced_custom_object(*ACCESS, "bookstore", "traffictargets", _thief_target())
    _collect(cluster)
    record_snapshot(cluster, at=_at(H0))
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 50}, {"service": "bookstore-v2", "weight": 50}]
    )
    custom.delete_namespaced_custom_object(*ACCESS, "bookstore", "traffictargets", "bookthief-to-bookstore")
    _collect(cluster)
    record_snapshot(cluster, at=_at(T1))
    _run, error = collect_metrics(cluster, at=T2 - 60)  # the present's stored KPIs
    assert error is None, error
    return cluster


def _thief_target() -> dict:
    return {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": "bookthief-to-bookstore", "namespace": "bookstore"},
        "spec": {
            "destination": {"kind": "ServiceAccount", "name": "bookstore", "namespace": "bookstore"},
            "rules": [{"kind": "HTTPRouteGroup", "name": "bookstore-service-routes", "matches": ["buy-a-book"]}],
            "sources": [{"kind": "ServiceAccount", "name": "bookthief", "namespace": "bookthief"}],
        },
    }


def _collect(cluster) -> None:
    _run, error = collect_and_record(cluster)
    assert error is None, error


def _row(html: str, service: str) -> str:
    start = html.index(f'<tr data-service="bookstore/{service}"')
    return html[start : html.index("</tr>", start)]


def _cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def _rps(html: str, service: str) -> str:
    return _cells(_row(html, service))[3]


def _weights(html: str) -> str:
    return re.search(r'data-weights="([^"]*)"', _row(html, "bookstore")).group(1)


def test_it_shows_the_overview_with_the_weights_and_kpis_of_then(client, viewer, replay):
    client.force_login(viewer)
    then = client.get(f"/?as_of={_q(A)}").content.decode()
    assert 'class="banner past-view"' in then and "Back to now" in then
    assert _weights(then) == "bookstore-v1=75 bookstore-v2=25"
    assert (_rps(then, "bookstore-v1"), _rps(then, "bookstore-v2")) == ("8.5", "2.5")  # bookbuyer 7.5 + bookthief 1
    assert _rps(then, "bookstore") == "11"  # the root's KPIs: its backends' as routed
    assert "latest snapshot" in then  # what comes from the present, said
    # The time stays with the links: sorting, the graph and the policies of then, a service's charts ending then.
    assert f"sort=rps&amp;as_of={_q(A)}" in then  # a column's sort link
    assert f'href="/graph/?as_of={_q(A)}"' in then and f'href="/policies/?as_of={_q(A)}"' in then
    assert f'href="/services/bookstore/bookstore-v2/?start={A - 3600:.0f}&amp;end={A:.0f}"' in then
    assert 'hx-trigger="mb:refresh' not in then  # the past does not refresh itself

    later = client.get(f"/?as_of={_q(B)}").content.decode()
    assert _weights(later) == "bookstore-v1=50 bookstore-v2=50"
    assert (_rps(later, "bookstore-v1"), _rps(later, "bookstore-v2")) == ("5", "5")

    now = client.get("/").content.decode()
    assert "past-view" not in now and _weights(now) == "bookstore-v1=50 bookstore-v2=50"
    assert _rps(now, "bookstore-v2") == "5"  # the stored KPIs, unlike those of A


def test_it_draws_the_graph_as_of_then_edge_allowed_then_denied_now(client, viewer, replay):
    client.force_login(viewer)
    then = client.get(f"/graph/data?as_of={_q(A)}").json()
    now = client.get("/graph/data").json()
    thief = "e:wl:bookthief/bookthief>svc:bookstore/bookstore"
    edges_then = {e["data"]["id"]: e for e in then["elements"]["edges"]}
    edges_now = {e["data"]["id"]: e for e in now["elements"]["edges"]}
    assert edges_then[thief]["data"]["policy"] == "allowed" and "policy-denied" not in edges_then[thief]["classes"]
    assert edges_then[thief]["data"]["rps"] == pytest.approx(1.0)
    assert edges_now[thief]["data"]["policy"] == "denied" and "policy-denied" in edges_now[thief]["classes"]
    split_then = edges_then["split:bookstore/bookstore-split>bookstore-v2"]["data"]
    split_now = edges_now["split:bookstore/bookstore-split>bookstore-v2"]["data"]
    assert (split_then["weight_pct"], split_now["weight_pct"]) == (25, 50)
    assert split_then["observed_pct"] == pytest.approx(2.5 / 11 * 100)  # bookstore-v2's share of the root's traffic
    assert then["as_of"]["time"] == _at(A).isoformat() and then["as_of"]["kpis"] == ""
    assert now["as_of"] is None and then["policy_mode"] == now["policy_mode"] == "smi"

    nodes_then = {n["data"]["id"]: n["data"] for n in then["elements"]["nodes"]}
    assert (
        nodes_then["svc:bookstore/bookstore-v2"]["url"]
        == f"/services/bookstore/bookstore-v2/?start={A - 3600:.0f}&end={A:.0f}"
    )
    page = client.get(f"/graph/?as_of={_q(A)}").content.decode()
    assert 'class="banner past-view"' in page and f'"asOf": "{_at(A).isoformat()}"' in page
    assert re.search(r'rel="preload" href="/graph/data\?as_of=[^"]+"', page)  # the preload asks for then too


def test_it_says_no_data_then_for_a_time_prometheus_holds_nothing_for(client, viewer, replay):
    client.force_login(viewer)
    html = client.get(f"/?as_of={_q(H0 + 60)}").content.decode()
    assert 'class="banner past-view"' in html and _weights(html) == "bookstore-v1=75 bookstore-v2=25"
    assert 'data-kpis="no-data"' in html and "no data then" in html
    assert _rps(html, "bookstore-v2") == "–" and _rps(html, "bookstore") == "–"  # unknown, not zeros
    body = client.get(f"/graph/data?as_of={_q(H0 + 60)}").json()
    assert body["as_of"]["no_data"] and body["as_of"]["kpis"].startswith("no data then")


def test_it_says_metrics_unavailable_when_prometheus_does_not_answer(client, viewer, replay):
    replay.prometheus_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    replay.save()
    client.force_login(viewer)
    html = client.get(f"/?as_of={_q(A)}").content.decode()
    assert 'data-kpis="unavailable"' in html and "metrics unavailable" in html
    assert _weights(html) == "bookstore-v1=75 bookstore-v2=25" and _rps(html, "bookstore-v2") == "–"


@pytest.mark.parametrize(
    ("as_of", "says"),
    [
        ("yesterday-ish", "is not a time"),
        ("2999-01-01T00:00:00Z", "is in the future"),
        (_at(H0 - 3600).isoformat(), "is before it"),
    ],
)
def test_it_explains_a_time_it_cannot_show_and_shows_the_present(client, viewer, replay, as_of, says):
    client.force_login(viewer)
    for url in ("/", "/graph/"):
        html = client.get(f"{url}?as_of={quote(as_of)}").content.decode()
        assert 'class="banner problem as-of-error"' in html and says in html and "Showing the present" in html
        assert "past-view" not in html
    assert _weights(client.get(f"/?as_of={quote(as_of)}").content.decode()) == "bookstore-v1=50 bookstore-v2=50"
    body = client.get(f"/graph/data?as_of={quote(as_of)}").json()
    assert body["as_of"] is None and says in body["as_of_error"]


def test_it_says_the_workloads_and_fleet_views_have_no_past_view(client, viewer, replay):
    client.force_login(viewer)
    for show in ("workloads", "fleet"):
        html = client.get(f"/?show={show}&as_of={_q(A)}").content.decode()
        assert f"The {show} view has no past view" in html and "past-view" not in html


def test_it_links_the_policies_page_of_then_to_the_mesh_of_then(client, viewer, replay):
    client.force_login(viewer)
    html = client.get(f"/policies/?as_of={_q(A)}").content.decode()
    assert f'href="/?as_of={_q(A)}"' in html and f'href="/graph/?as_of={_q(A)}"' in html
    assert 'type="datetime-local" name="as_of"' in html


def test_it_links_each_timeline_entry_to_the_mesh_as_of_then(client, viewer, replay):
    client.force_login(viewer)
    html = client.get("/history/").content.decode()
    t1 = quote(_at(T1).isoformat(), safe="")
    assert f'href="/?as_of={t1}"' in html and f'href="/graph/?as_of={t1}"' in html


def test_it_makes_the_same_number_of_queries_as_of_then_whatever_the_mesh_size(
    client, viewer, kubeapi_factory, replay_prometheus, history_at_chosen_times
):
    from lab.synthetic import generate
    from lab.synthetic_kpis import fill_kpis

    client.force_login(viewer)
    counts = []
    for services in (10, 120):
        cluster = Cluster.objects.create(
            name=f"s{services}",
            kubeconfig_path=str(kubeapi_factory(load_seed("synthetic", services=services)).kubeconfig),
            prometheus_url=replay_prometheus.url,
        )
        _collect(cluster)
        record_snapshot(cluster, at=_at(H0))
        fill_kpis(cluster, generate(services))
        with CaptureQueriesContext(connection) as overview:
            assert client.get(f"/?cluster={cluster.name}&as_of={_q(A)}").status_code == 200
        with CaptureQueriesContext(connection) as graph:
            response = client.get(f"/graph/data?cluster={cluster.name}&as_of={_q(A)}")
        assert response.status_code == 200 and json.loads(response.content)["as_of"]["kpis"] == ""
        counts.append((len(overview), len(graph)))
    assert counts[0] == counts[1], counts


def test_it_keeps_the_past_from_anonymous_visitors(client, replay):
    for url in (f"/?as_of={_q(A)}", f"/graph/data?as_of={_q(A)}"):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"]


def test_it_reads_a_datetime_field_value_as_utc(client, viewer, replay):
    client.force_login(viewer)
    picked = _at(A).strftime("%Y-%m-%dT%H:%M:%S")  # what <input type="datetime-local"> sends: no zone
    html = client.get(f"/?as_of={picked}").content.decode()
    assert f'data-as-of="{_at(A).isoformat()}"' in html and _weights(html) == "bookstore-v1=75 bookstore-v2=25"
    assert f'name="as_of" step="1" required value="{picked}"' in html


def _graph_edge(page, edge_id: str) -> dict:
    return page.evaluate(
        "(id) => { const e = mbGraph.cy.getElementById(id); return e.length ? {display: e.data('display'),"
        " policy: e.data('policy'), rps: e.data('rps'), classes: e.classes().join(' ')} : null; }",
        edge_id,
    )


def _drawn(page, times: int = 1) -> None:
    expect(page.locator("body")).to_have_attribute(
        "data-graph-renders", re.compile("|".join(rf"^{n}$" for n in range(times, 10))), timeout=20000
    )


def test_it_draws_the_graph_as_of_a_past_time_in_the_browser(page, live_server, viewer, replay):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "vera")
    page.fill("#id_password", "a-long-viewer-pass")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"^{re.escape(live_server.url)}/(?:\?.*)?$"))

    page.goto(f"{live_server.url}/graph/?as_of={_q(A)}")
    _drawn(page)
    expect(page.locator(".banner.past-view")).to_contain_text(f"Past view as of {_at(A):%Y-%m-%d %H:%M:%S}")
    expect(page.locator("#graph-kpis-then")).to_be_hidden()  # Prometheus answered for then
    thief = _graph_edge(page, "e:wl:bookthief/bookthief>svc:bookstore/bookstore")
    assert thief["policy"] == "allowed" and "policy-denied" not in thief["classes"] and thief["rps"] == 1.0
    v2 = _graph_edge(page, "split:bookstore/bookstore-split>bookstore-v2")
    assert v2["display"] == "weight 25% · observed 23%"
    page.evaluate(
        "() => { mbGraph.cy.getElementById('e:wl:bookthief/bookthief>svc:bookstore/bookstore').emit('tap'); }"
    )
    expect(page.locator("#graph-panel")).to_contain_text("policy then")
    expect(page.locator("#graph-panel")).to_contain_text("allowed: a TrafficTarget admits")

    # Pick another time with the field: after the change, 50/50.
    page.fill(".as-of-form input[name=as_of]", _at(B).strftime("%Y-%m-%dT%H:%M:%S"))
    page.click(".as-of-form button[type=submit]")
    # The field sends minutes only when the seconds are 0, as Chromium writes a datetime-local value.
    page.wait_for_url(re.compile(r"/graph/\?[^#]*as_of=" + re.escape(quote(_at(B).strftime("%Y-%m-%dT%H:%M")))))
    _drawn(page)
    expect(page.locator(".banner.past-view")).to_contain_text(f"{_at(B):%Y-%m-%d %H:%M:%S}")
    assert _graph_edge(page, "split:bookstore/bookstore-split>bookstore-v2")["display"] == "weight 50% · observed 50%"

    # Back to now: the pair is denied by the policy of now.
    page.click("a.back-to-now")
    page.wait_for_url(re.compile(r"/graph/(\?(?![^#]*as_of=)[^#]*)?$"))  # the page may write its window in
    _drawn(page)
    expect(page.locator(".banner.past-view")).to_have_count(0)
    thief = _graph_edge(page, "e:wl:bookthief/bookthief>svc:bookstore/bookstore")
    assert thief["policy"] == "denied" and "policy-denied" in thief["classes"]
    assert not [e for e in page.errors if "Content Security Policy" in e or "Refused" in e], page.errors


def test_it_names_no_hidden_namespace_to_a_namespace_limited_viewer(client, viewer, replay):
    """Prometheus knows no namespace scope: a past view must hide what the snapshot's scoped tables hide."""
    from apps.clusters.models import Access

    Access.objects.update_or_create(user=viewer, defaults={"namespaces": ["bookstore"], "operate_namespaces": []})
    client.force_login(viewer)
    body = client.get(f"/graph/data?as_of={_q(A)}").json()
    text = json.dumps(body)
    assert "bookbuyer" not in text and "bookthief" not in text
    edges = {e["data"]["id"]: e["data"] for e in body["elements"]["edges"]}
    hidden = "e:svc:(hidden)/(other namespaces)>svc:bookstore/bookstore"
    assert edges[hidden]["rps"] == pytest.approx(11.0)  # bookbuyer's 7.5 + 2.5 and bookthief's 1, unnamed
    html = client.get(f"/?as_of={_q(A)}").content.decode()
    assert "past-view" in html and "bookbuyer" not in html and _weights(html) == "bookstore-v1=75 bookstore-v2=25"
