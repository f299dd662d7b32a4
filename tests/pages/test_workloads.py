"""Workload pages and the overview's workloads view through HTTP: what a person reads, and where each caller links.

The cluster is the bookstore demo plus a DaemonSet (bookwarehouse/log-shipper), a pod no controller owns
(bookstore/debug-shell) and a ReplicaSet no Deployment owns (bookwarehouse/reports-6d5f8), with KPIs and refusals
as the metrics collector stores them: bookbuyer calls bookstore-v1 and -v2 (20 req/s), bookthief only sends to the
egress passthrough (2 conn/s, SMI allows it nothing), and bookstore's sidecars refuse that for want of mTLS.
"""

from __future__ import annotations

import html as html_lib
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.clusters.models import Cluster
from apps.mesh.models import Pod, Workload
from apps.mesh.services import collect_and_record
from apps.metrics.models import EdgeKPI, MetricsState, Refusal, ServiceKPI
from lab.seeds.loader import load_seed
from tests.workload_objects import bookstore_with_extra_workloads

BUYER = "/workloads/bookbuyer/deployment/bookbuyer/"
THIEF = "/workloads/bookthief/deployment/bookthief/"


def _edge(cluster, source, kind, workload, dns, dsvc, **kpis) -> EdgeKPI:
    ns, app = source
    return EdgeKPI.objects.create(
        cluster=cluster,
        source_namespace=ns,
        source_service=app,
        source_workload_kind=kind,
        source_workload_name=workload,
        destination_namespace=dns,
        destination_service=dsvc,
        collected_at=timezone.now(),
        **kpis,
    )


def _refusal(cluster, side, kind, ns, app, workload_kind, workload, rate) -> Refusal:
    return Refusal.objects.create(
        cluster=cluster,
        side=side,
        kind=kind,
        namespace=ns,
        app=app,
        workload_kind=workload_kind,
        workload_name=workload,
        rate=rate,
        collected_at=timezone.now(),
    )


@pytest.fixture
def mesh(db, kubeapi_factory) -> Cluster:
    server = kubeapi_factory(bookstore_with_extra_workloads())
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(server.kubeconfig))
    _run, error = collect_and_record(cluster)
    assert error is None, error
    now = timezone.now()
    MetricsState.objects.create(cluster=cluster, collected_at=now, latency_source="envoy")
    ok = {"success_rate": 1.0, "rate_5xx": 0.0, "rate_4xx": 0.0}
    _edge(cluster, ("bookbuyer", "bookbuyer"), "Deployment", "bookbuyer", "bookstore", "bookstore-v1",
          request_rate=12.0, rate_2xx=12.0, p99_ms=11.0, tcp_bytes_sent_rate=900.0, **ok)  # fmt: skip
    _edge(cluster, ("bookbuyer", "bookbuyer"), "Deployment", "bookbuyer", "bookstore", "bookstore-v2",
          request_rate=8.0, rate_2xx=7.6, rate_5xx=0.4, rate_4xx=0.0, success_rate=0.95, p99_ms=61.0)  # fmt: skip
    _edge(cluster, ("bookstore", "bookstore"), "Deployment", "bookstore", "bookwarehouse", "bookwarehouse",
          request_rate=1.0, success_rate=1.0, rate_5xx=0.0)  # fmt: skip
    _edge(cluster, ("bookwarehouse", "log-shipper"), "DaemonSet", "log-shipper", "bookwarehouse", "bookwarehouse",
          request_rate=0.5, success_rate=1.0, rate_5xx=0.0)  # fmt: skip
    # The bare pod has no controller: only its app label names its calls.
    _edge(cluster, ("bookstore", "debug"), "", "", "bookstore", "bookstore-v1", request_rate=1.5, rate_5xx=0.0,
          success_rate=1.0)  # fmt: skip
    # The bare ReplicaSet's pods are named as OSM's relabeling names them: Deployment `reports`.
    _edge(cluster, ("bookwarehouse", "reports"), "Deployment", "reports", "bookwarehouse", "mysql",
          tcp_bytes_sent_rate=300.0, tcp_bytes_received_rate=700.0)  # fmt: skip
    # From a Prometheus without the workload labels: the app label `bookstore` is v1's and v2's.
    _edge(cluster, ("bookstore", "bookstore"), "", "", "bookwarehouse", "mysql", tcp_bytes_sent_rate=10.0)
    _refusal(cluster, "caller", "passthrough", "bookthief", "bookthief", "Deployment", "bookthief", 2.0)
    _refusal(cluster, "destination", "no-mtls", "bookstore", "bookstore", "Deployment", "bookstore", 2.0)
    for service, rps, r5, p99, routed in (
        ("bookstore", 20.0, 0.4, 58.0, ["bookstore-v1", "bookstore-v2"]),
        ("bookstore-v1", 12.0, 0.0, 11.0, []),
        ("bookstore-v2", 8.0, 0.4, 61.0, []),
    ):
        ServiceKPI.objects.create(
            cluster=cluster, namespace="bookstore", service=service, collected_at=now, request_rate=rps,
            rate_5xx=r5, success_rate=(rps - r5) / rps, p99_ms=p99, routed_backends=routed,
        )  # fmt: skip
    return cluster


def _text(html: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def _section(html: str, label: str) -> str:
    start = html.index(f'aria-label="{label}"')
    return html[start : html.index("</section>", start)]


def test_it_shows_bookbuyer_with_its_outbound_rate_destinations_pods_and_policy(client, viewer, mesh):
    client.force_login(viewer)
    response = client.get(BUYER)
    assert response.status_code == 200
    html = response.content.decode()

    summary = _text(_section(html, "Summary"))
    assert "Deployment" in summary and "Replicas ready 1 of 1" in summary
    assert "Service account bookbuyer" in summary and "Sidecars 1 of 1 pods (in the mesh: mTLS)" in summary
    assert "no Service" in summary  # a client only
    outbound = _text(_section(html, "Outbound KPIs"))
    assert "Request rate 20 req/s" in outbound and "Success 98%" in outbound
    assert "Latency percentiles cannot be summed" in outbound and "by app label" not in outbound
    by_destination = _section(html, "Outbound by destination")
    v1 = by_destination[by_destination.index('data-destination="bookstore/bookstore-v1"') :]
    assert "11 ms" in v1.split("</tr>")[0] and 'href="/services/bookstore/bookstore-v1/"' in v1
    assert "61 ms" in by_destination and "95%" in by_destination
    pods = _text(_section(html, "Pods"))
    assert "bookbuyer-" in pods and "envoy" in pods and "ready" in pods
    policy = _text(_section(html, "Access policy"))
    assert "SMI" in policy and "bookstore/bookstore" in policy and "HTTPRouteGroup bookstore-service-routes" in policy
    assert "bookstore/bookstore-v1: yes" in policy and "Nothing allows it" not in policy
    assert f'data-series-url="{BUYER}series?window=15m"' in html and "plotly-strict.min.js" in html


def test_it_shows_bookthiefs_passthrough_and_that_nothing_allows_it(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get(THIEF).content.decode()

    refusals = _text(_section(html, "Refused and passed-through traffic"))
    assert "As a caller: sent outside its routes (egress passthrough): 2 conn/s" in refusals
    policy = _text(_section(html, "Access policy"))
    assert "Nothing allows it: no TrafficTarget lists bookthief/bookthief as a source" in policy
    assert "bookstore/bookstore" in policy  # the destination refusing what policy denies it (inferred)
    assert "No outbound traffic to a mesh service observed (what it sent went outside its routes" in _text(html)


def test_it_shows_a_statefulset_with_the_services_that_select_it(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/workloads/bookwarehouse/statefulset/mysql/").content.decode()

    summary = _section(html, "Summary")
    assert "StatefulSet" in summary and 'href="/services/bookwarehouse/mysql/"' in summary
    assert "mysql-0" in _section(html, "Pods")


def test_it_shows_a_daemonset_with_its_pods_per_node_restarts_and_sidecars(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/workloads/bookwarehouse/daemonset/log-shipper/").content.decode()

    summary = _text(_section(html, "Summary"))
    assert "DaemonSet" in summary and "Replicas ready 1 of 2 (one per eligible node)" in summary
    assert "Sidecars 1 of 2 pods (partly in the mesh)" in summary and "log-shipper" in summary
    pods = _section(html, "Pods")
    ready = pods[pods.index('data-pod="log-shipper-xk2lp"') :].split("</tr>")[0]
    assert ">envoy<" in ready and ">3<" in ready
    unready = pods[pods.index('data-pod="log-shipper-q9wzt"') :].split("</tr>")[0]
    assert "not ready" in unready and 'class="lock off"' in unready
    assert "Request rate 0.5 req/s" in _text(_section(html, "Outbound KPIs"))


def test_it_shows_a_bare_pod_attributed_by_its_app_label(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/workloads/bookstore/pod/debug-shell/").content.decode()

    assert "Pod (no controller)" in _text(_section(html, "Summary"))
    outbound = _text(_section(html, "Outbound KPIs"))
    assert "Request rate 1.5 req/s" in outbound
    assert "Attributed by app label (app=debug)" in outbound and "shared by every workload" in outbound


def test_it_shows_a_bare_replicaset_by_the_name_osm_gives_its_calls(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/workloads/bookwarehouse/replicaset/reports-6d5f8/").content.decode()

    assert "ReplicaSet (no Deployment)" in _text(_section(html, "Summary"))
    assert 'data-destination="bookwarehouse/mysql"' in _section(html, "Outbound by destination")


def test_it_says_when_traffic_is_shared_by_the_workloads_of_one_app_label(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/workloads/bookstore/deployment/bookstore-v2/").content.decode()

    outbound = _section(html, "Outbound KPIs")
    assert "Attributed by app label (app=bookstore)" in _text(outbound)
    assert 'href="/workloads/bookstore/deployment/bookstore/"' in outbound  # the other workload of that label
    assert "by app label" in _section(html, "Outbound by destination")


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/workloads/bookbuyer/deployment/nope/", "No Deployment bookbuyer/nope in the latest snapshot of cluster lab"),
        ("/workloads/bookbuyer/statefulset/bookbuyer/", "No StatefulSet bookbuyer/bookbuyer"),
        ("/workloads/bookbuyer/job/bookbuyer/", "No workload of kind 'job' bookbuyer/bookbuyer"),
        ("/workloads/bookstore/pod/bookstore-v2-mpp88qd8w2-x/", "No bare pod bookstore/bookstore-v2-mpp88qd8w2-x"),
        ("/workloads/bookbuyer/deployment/%3Cscript%3Ealert(1)%3C%5Cscript%3E/", "&lt;script&gt;alert(1)"),
        ("/services/bookstore/nope/", "No Service bookstore/nope"),
    ],
)
def test_it_answers_404_in_the_products_words(client, viewer, mesh, path, says):
    client.force_login(viewer)
    response = client.get(path)
    assert response.status_code == 404
    html = response.content.decode()
    assert html_lib.unescape(says) in _text(html) and "<script>alert" not in html
    # a way on: the workloads' list, or the services' for a Service
    assert ('href="/"' if path.startswith("/services/") else 'href="/?show=workloads"') in html


def test_it_never_routes_a_name_with_a_slash(client, viewer, mesh):
    client.force_login(viewer)
    assert client.get("/workloads/bookbuyer/deployment/book/buyer/").status_code == 404


def test_it_requires_a_meshboard_role(client, nobody, mesh):
    assert client.get(BUYER).status_code == 302  # anonymous: to the login page
    client.force_login(nobody)
    assert client.get(BUYER).status_code == 403
    assert client.get(f"{BUYER}series").status_code == 403


def test_it_serves_chart_data_saying_how_it_selected_the_series(client, viewer, mesh, redis):
    client.force_login(viewer)
    data = json.loads(client.get(f"{BUYER}series?window=15m").content)
    assert data["selected_by"] == "workload" and data["unavailable"] == {"*": "this cluster has no Prometheus URL"}
    assert 'source_workload_kind="Deployment",source_workload_name="bookbuyer"' in data["selector"]
    bare = json.loads(client.get("/workloads/bookstore/pod/debug-shell/series").content)
    assert bare["selected_by"] == "pod" and 'source_pod_name="debug-shell"' in bare["selector"]
    shared = json.loads(client.get("/workloads/bookwarehouse/replicaset/reports-6d5f8/series").content)
    assert 'source_workload_name="reports"' in shared["selector"]


# -- the overview's workloads view -----------------------------------------------------------------------------


def _workload_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-workload="([^"]+)">', html)


def _workload_row(html: str, key: str) -> str:
    start = html.index(f'<tr data-workload="{key}">')
    return html[start : html.index("</tr>", start)]


def test_it_switches_the_overview_to_workloads_with_their_outbound_kpis(client, viewer, mesh):
    client.force_login(viewer)
    services = client.get("/").content.decode()
    assert 'href="?show=workloads&amp;namespace=&amp;q="' in services and "<h1>Services" in services

    html = client.get("/?show=workloads").content.decode()

    assert "<h1>Workloads" in html and 'href="?namespace=&amp;q="' in html  # back to services
    rows = set(_workload_rows(html))
    assert {
        "bookbuyer/Deployment/bookbuyer",
        "bookthief/Deployment/bookthief",
        "bookwarehouse/StatefulSet/mysql",
        "bookwarehouse/DaemonSet/log-shipper",
        "bookwarehouse/ReplicaSet/reports-6d5f8",
        "bookstore/Pod/debug-shell",
    } <= rows
    assert (
        len(rows)
        == Workload.objects.filter(cluster=mesh).count() + Pod.objects.filter(cluster=mesh, workload_kind="").count()
    )
    buyer = _workload_row(html, "bookbuyer/Deployment/bookbuyer")
    assert f'href="{BUYER}"' in buyer and ">20<" in buyer.replace(" ", "") and "98%" in buyer
    assert "1/1" in buyer and 'class="lock on"' in buyer
    thief = _workload_row(html, "bookthief/Deployment/bookthief")
    assert "2 conn/s" in thief
    shipper = _workload_row(html, "bookwarehouse/DaemonSet/log-shipper")
    assert "1/2" in shipper and 'class="lock partial"' in shipper
    assert "by app label" in _workload_row(html, "bookstore/Pod/debug-shell")


def test_it_offers_namespaces_that_hold_only_workloads(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/").content.decode()
    assert '<option value="bookbuyer">' in html and '<option value="bookthief">' in html

    only = client.get("/?show=workloads&namespace=bookthief").content.decode()
    assert _workload_rows(only) == ["bookthief/Deployment/bookthief"]
    empty = client.get("/?namespace=bookbuyer").content.decode()
    assert 'href="?show=workloads&amp;namespace=bookbuyer"' in empty  # no service there: the way to its workloads


def test_it_searches_sorts_and_pages_workloads(client, viewer, mesh, settings):
    client.force_login(viewer)
    assert _workload_rows(client.get("/?show=workloads&q=THIEF").content.decode()) == ["bookthief/Deployment/bookthief"]
    by_rate = _workload_rows(client.get("/?show=workloads&sort=-rps").content.decode())
    assert by_rate[0] == "bookbuyer/Deployment/bookbuyer"
    for sort in ("name", "kind", "-ready", "success", "-tcp", "refused", "-coverage", "namespace", "bogus"):
        assert client.get(f"/?show=workloads&sort={sort}").status_code == 200
    settings.MESHBOARD_PAGE_SIZE = 3
    page2 = client.get("/?show=workloads&namespace=bookwarehouse&page=2").content.decode()
    assert "page 2 of 2" in page2 and 'href="?show=workloads&amp;namespace=bookwarehouse' in page2
    partial = client.get("/?show=workloads", headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<div id="overview"') and "data-workload=" in partial


def test_it_lists_workloads_in_the_same_number_of_queries_whatever_the_mesh_size(client, viewer, kubeapi_factory):
    client.force_login(viewer)
    counts = []
    for index, services in enumerate((10, 120)):
        server = kubeapi_factory(load_seed("synthetic", services=services))
        cluster = Cluster.objects.create(name=f"w{index}", kubeconfig_path=str(server.kubeconfig))
        collect_and_record(cluster)
        for workload in Workload.objects.filter(cluster=cluster)[:20]:  # outbound KPIs to join
            _edge(cluster, (workload.namespace, workload.template_labels.get("app", "")), workload.kind,
                  workload.name, workload.namespace, "anything", request_rate=1.0, rate_5xx=0.0)  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/?cluster={cluster.name}&show=workloads")
        assert response.status_code == 200
        listed = _workload_rows(response.content.decode())
        assert len(listed) == min(50, Workload.objects.filter(cluster=cluster).count())
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


# -- every caller links to its page -----------------------------------------------------------------------------


def test_it_links_each_caller_in_the_service_pages_inbound_table_to_its_workload(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/services/bookstore/bookstore-v1/").content.decode()
    inbound = _section(html, "Inbound")

    buyer = inbound[inbound.index('data-source="bookbuyer/bookbuyer"') :].split("</tr>")[0]
    assert f'<a href="{BUYER}"' in buyer  # by its workload labels
    debug = inbound[inbound.index('data-source="bookstore/debug"') :].split("</tr>")[0]
    assert '<a href="/workloads/bookstore/pod/debug-shell/"' in debug  # the one workload with app=debug

    warehouse = client.get("/services/bookwarehouse/mysql/").content.decode()
    shared = _section(warehouse, "Inbound")
    row = shared[shared.index('data-source="bookstore/bookstore"') :].split("</tr>")[0]
    assert "<a " not in row and "no single workload" in row  # app=bookstore is v1's and v2's
    reports = shared[shared.index('data-source="bookwarehouse/reports"') :].split("</tr>")[0]
    assert '<a href="/workloads/bookwarehouse/replicaset/reports-6d5f8/"' in reports


def test_it_links_the_callers_of_the_service_pages_outbound_rows_and_its_pods_workloads(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/services/bookstore/bookstore-v1/").content.decode()

    outbound = _section(html, "Outbound")
    row = outbound[outbound.index('data-source="bookstore/bookstore"') :].split("</tr>")[0]
    assert 'href="/workloads/bookstore/deployment/bookstore/"' in row and "bookwarehouse/bookwarehouse" in row
    assert 'href="/workloads/bookstore/deployment/bookstore/"' in _section(html, "Pods")


def test_it_breaks_a_split_roots_traffic_down_by_backend(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get("/services/bookstore/bookstore/").content.decode()

    routed = _section(html, "Routed to its backends")
    assert "Traffic addressed to bookstore, as routed to its backends" in routed
    v1 = routed[routed.index('data-backend="bookstore-v1"') :].split("</tr>")[0]
    assert ">12<" in v1 and "60%" in v1 and "100%" in v1 and "11 ms" in v1
    v2 = routed[routed.index('data-backend="bookstore-v2"') :].split("</tr>")[0]
    assert ">8<" in v2 and "40%" in v2 and "95%" in v2 and "61 ms" in v2
    assert "percentiles cannot be summed" in _text(routed)
    inbound = _section(html, "Inbound")  # its callers, as routed: each row names the backend reached
    rows = [r for r in inbound.split("</tr>") if 'data-source="bookbuyer/bookbuyer"' in r]
    assert len(rows) == 2 and all(f'<a href="{BUYER}"' in r for r in rows)
    assert 'href="/services/bookstore/bookstore-v2/">bookstore-v2<' in rows[1]
    overview = client.get("/?namespace=bookstore").content.decode()
    root = overview[overview.index('<tr data-service="bookstore/bookstore">') :].split("</tr>")[0]
    assert "via 2 backends" in root
    assert "via" not in overview[overview.index('<tr data-service="bookstore/bookstore-v1">') :].split("</tr>")[0]


def test_it_links_graph_workload_nodes_to_their_pages(client, viewer, mesh):
    client.force_login(viewer)
    body = json.loads(client.get("/graph/data").content)
    nodes = {n["data"]["id"]: n["data"] for n in body["elements"]["nodes"]}
    assert nodes["wl:bookbuyer/bookbuyer"]["url"] == BUYER
    assert nodes["wl:bookstore/debug"]["url"] == "/workloads/bookstore/pod/debug-shell/"


# -- hostile names from the cluster ------------------------------------------------------------------------------


def test_it_shows_hostile_workload_names_as_inert_text(client, viewer, mesh):
    for name in ("<script>alert(1)</script>", "a/b", "..", ""):
        Workload.objects.create(cluster=mesh, namespace="bookbuyer", kind="Deployment", name=name or "x" * 300)
    _edge(mesh, ("bookbuyer", "bookbuyer"), "Deployment", "<script>alert(1)</script>", "bookstore", "bookstore-v1",
          request_rate=1.0)  # fmt: skip
    client.force_login(viewer)

    html = client.get("/?show=workloads&namespace=bookbuyer").content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("not a valid Deployment name: no page") == 4
    assert 'href="/workloads/bookbuyer/deployment/a/b/"' not in html
    detail = client.get("/services/bookstore/bookstore-v1/").content.decode()
    assert "<script>alert(1)" not in detail and "bookbuyer/&lt;script&gt;" in detail
