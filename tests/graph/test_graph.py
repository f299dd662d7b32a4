"""The graph JSON from the snapshot: nodes, namespace boxes, splits, peers, locks, labels, filters, query count."""

from __future__ import annotations

import gzip
import json

import pytest
from django.db import connection
from django.http import JsonResponse
from django.test.utils import CaptureQueriesContext

from apps.clusters.models import Access, Cluster
from apps.graph.graph import _judged, build_graph, traffic_label
from apps.mesh.models import Pod
from apps.mesh.services import collect_and_record
from apps.metrics.models import EdgeKPI
from lab.seeds.loader import load_seed
from lab.synthetic import generate
from lab.synthetic_kpis import fill_kpis, metrics_cycle_ended

from .conftest import add_edges

URL = "/graph/data"


def _index(graph):
    nodes = {n["data"]["id"]: n for n in graph["elements"]["nodes"]}
    edges = {e["data"]["id"]: e for e in graph["elements"]["edges"]}
    return nodes, edges


def _shown(graph):
    """The elements the filters leave (every element is sent; the filtered ones carry the class `filtered`)."""
    return tuple(
        {i: e for i, e in elements.items() if "filtered" not in e["classes"].split()} for elements in _index(graph)
    )


def test_it_boxes_every_node_in_its_namespace(mesh):
    nodes, _ = _index(build_graph(mesh))
    boxes = {i for i, n in nodes.items() if n["data"]["kind"] == "namespace"}
    assert {"ns:bookstore", "ns:bookbuyer", "ns:bookthief", "ns:bookwarehouse"} <= boxes
    for node_id, node in nodes.items():
        if node_id not in boxes:
            assert node["data"]["parent"] == f"ns:{node['data']['namespace']}"
            assert node["data"]["parent"] in boxes
    assert nodes["ns:bookstore"]["data"]["monitored"] is True
    assert "unmonitored" in nodes["ns:osm-system"]["classes"]


def test_it_sums_each_namespaces_kpis_for_its_collapsed_node(mesh):
    nodes, _ = _index(build_graph(mesh, hide="ns=bookstore"))  # filters hide; a namespace's sums stay whole
    store = nodes["ns:bookstore"]["data"]
    members = [n["data"] for n in nodes.values() if n["data"].get("parent") == "ns:bookstore"]
    assert len(members) == store["members"] == store["services"] == 3 and store["workloads"] == 0
    # The personas' KPIs: bookstore 20 req/s (2 5xx), v1 10 (0), v2 10 (2); p99 15, 11, 60 ms.
    assert (store["rps"], store["p99_ms"]) == (40.0, 60.0)
    assert store["error"] == pytest.approx(0.1)
    counts = {h: sum(m["health"] == h for m in members) for h in ("failing", "degraded", "healthy", "unknown")}
    assert store["health_counts"] == counts and store["health"] == "failing"
    assert sum(store[f"pie_{h}"] for h in counts) == pytest.approx(100.0)
    # A caller and its Egress policy's external node: counted, no KPIs of their own to add.
    buyer = nodes["ns:bookbuyer"]["data"]
    assert (buyer["members"], buyer["workloads"], buyer["rps"], buyer["error"], buyer["p99_ms"]) == (
        2,
        1,
        None,
        None,
        None,
    )


def test_it_draws_the_bookstore_chain_with_labels_and_padlocks(mesh):
    nodes, edges = _index(build_graph(mesh))
    chain = [
        # the seed's Retry (bookbuyer's service account to bookstore) and bookstore's rate limit mark the edge
        ("wl:bookbuyer/bookbuyer", "svc:bookstore/bookstore", "10 rps · 5% 5xx · p99 60 ms · ↻ retry · ⇥ rate limit"),
        ("svc:bookstore/bookstore", "svc:bookwarehouse/bookwarehouse", "5 rps · 0% 5xx · p99 6 ms"),
        ("svc:bookwarehouse/bookwarehouse", "svc:bookwarehouse/mysql", "TCP 1.2 kB/s"),
    ]
    for source, target, label in chain:
        edge = edges[f"e:{source}>{target}"]["data"]
        assert edge["kind"] == "traffic"
        assert edge["label"] == label
        assert edge["lock"] == "mtls"
    # bookbuyer has no Service: it is drawn by its pods' app label, as OSM's source_service names it.
    assert nodes["wl:bookbuyer/bookbuyer"]["data"]["kind"] == "workload"
    assert nodes["wl:bookbuyer/bookbuyer"]["data"]["sidecars"] == "all"
    assert nodes["svc:bookstore/bookstore"]["data"]["url"] == "/services/bookstore/bookstore/"


def test_it_routes_split_traffic_through_the_root_and_shows_weights_beside_observed_share(mesh):
    nodes, edges = _index(build_graph(mesh))
    assert nodes["svc:bookstore/bookstore"]["data"]["split"] == "root"
    assert "root" in nodes["svc:bookstore/bookstore"]["classes"]
    for backend in ("bookstore-v1", "bookstore-v2"):
        assert nodes[f"svc:bookstore/{backend}"]["data"]["split"] == "backend"
        # Envoy reports bookbuyer → backend; drawn bookbuyer → root → backend.
        assert f"e:wl:bookbuyer/bookbuyer>svc:bookstore/{backend}" not in edges
    v1 = edges["split:bookstore/bookstore-split>bookstore-v1"]["data"]
    v2 = edges["split:bookstore/bookstore-split>bookstore-v2"]["data"]
    assert (v1["source"], v1["target"]) == ("svc:bookstore/bookstore", "svc:bookstore/bookstore-v1")
    assert (v1["weight"], v1["weight_pct"], v1["observed_pct"]) == (75, 75.0, 62.0)
    assert (v2["weight"], v2["weight_pct"], v2["observed_pct"]) == (25, 25.0, 38.0)
    assert v1["label"] == "weight 75% · observed 62%"
    assert v2["label"] == "weight 25% · observed 38%"
    assert v2["observed_5m_pct"] == pytest.approx(5.0)
    # Each split edge carries its backend's own traffic; the caller edge is the sum.
    assert (v1["rps"], v2["rps"], v2["error"]) == (7.5, 2.5, 0.2)
    caller = edges["e:wl:bookbuyer/bookbuyer>svc:bookstore/bookstore"]["data"]
    assert (caller["rps"], caller["error"], caller["p99_ms"]) == (10.0, 0.05, 60.0)


def test_it_says_unknown_when_the_observed_share_is_not_measured(mesh):
    from apps.metrics.models import SplitShare

    SplitShare.objects.filter(backend="bookstore-v2").update(share_short=None)
    _, edges = _index(build_graph(mesh))
    assert edges["split:bookstore/bookstore-split>bookstore-v2"]["data"]["label"] == "weight 25% · observed unknown"


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (["50", 50], [None, None]),  # a string is not a weight: no meaningful total
        ([-10, 50], [None, None]),  # a negative weight wraps around in OSM: no meaningful total
        ([33.5, 66.5], [33.5, 66.5]),  # fractions are flagged, but still add up
        ([0, 3], [0.0, 100.0]),
    ],
)
def test_it_shows_the_same_weight_shares_as_the_splits_page(mesh, weights, expected):
    from apps.canary.splits import split_views
    from apps.mesh.models import TrafficSplit

    split = TrafficSplit.objects.get(cluster=mesh, name="bookstore-split")
    split.backends = [{"service": b["service"], "weight": w} for b, w in zip(split.backends, weights, strict=True)]
    split.save()
    _, edges = _index(build_graph(mesh))
    graph = [edges[f"split:bookstore/bookstore-split>{b['service']}"]["data"]["weight_pct"] for b in split.backends]
    (page,) = [v for v in split_views(mesh) if v.split.name == "bookstore-split"]
    assert graph == [b.percent for b in page.backends] == expected


def test_it_draws_unmeshed_callers_and_unknown_peers_distinctly_with_a_broken_lock(mesh):
    Pod.objects.filter(cluster=mesh, namespace="bookthief").update(has_sidecar=False)
    add_edges(
        mesh,
        {
            ("ghost", "phantom", "bookstore", "bookstore"): (1.0, 0.0, 3.0, None, 0.0),
            ("bookstore", "bookstore", "elsewhere", "gone"): (0.5, 0.0, 2.0, None, 0.0),
        },
    )
    nodes, edges = _index(build_graph(mesh))
    thief = nodes["wl:bookthief/bookthief"]
    assert thief["data"]["sidecars"] == "none"
    assert "sidecars-none" in thief["classes"]
    assert edges["e:wl:bookthief/bookthief>svc:bookstore/bookstore"]["data"]["lock"] == "plain"
    ghost = nodes["svc:ghost/phantom"]["data"]
    assert (ghost["kind"], ghost["health"], ghost["url"]) == ("unknown", "unknown", "")
    assert ghost["reasons"] == ["not in the latest snapshot: named only by the metrics"]
    assert nodes["ns:ghost"]["data"]["kind"] == "namespace"
    assert nodes["svc:elsewhere/gone"]["data"]["kind"] == "unknown"
    assert edges["e:svc:ghost/phantom>svc:bookstore/bookstore"]["data"]["lock"] == "unknown"
    assert edges["e:svc:bookstore/bookstore>svc:elsewhere/gone"]["data"]["lock"] == "unknown"


def test_it_marks_a_partly_meshed_service_as_partial(mesh):
    from apps.mesh.models import Service

    Service.objects.filter(cluster=mesh, name="bookwarehouse").update(pods_total=2, pods_meshed=1)
    nodes, edges = _index(build_graph(mesh))
    assert nodes["svc:bookwarehouse/bookwarehouse"]["data"]["sidecars"] == "some"
    assert edges["e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse"]["data"]["lock"] == "partial"


def test_it_colours_nodes_by_the_overviews_health_rule(mesh):
    nodes, _ = _index(build_graph(mesh))
    v2 = nodes["svc:bookstore/bookstore-v2"]
    assert v2["data"]["health"] == "failing"
    assert v2["data"]["reasons"] == ["5xx 20% of 10 req/s ≥ 10%"]
    assert "failing" in v2["classes"]
    assert nodes["svc:bookwarehouse/bookwarehouse"]["data"]["reasons"] == ["4xx 10% of 5 req/s (≥ 10%)"]


def test_it_keeps_the_chosen_namespaces_and_the_peers_they_talk_to(mesh):
    nodes, edges = _shown(build_graph(mesh, namespaces=["bookwarehouse"]))
    leaves = {i for i, n in nodes.items() if n["data"]["kind"] != "namespace"}
    assert leaves == {"svc:bookwarehouse/bookwarehouse", "svc:bookwarehouse/mysql", "svc:bookstore/bookstore"}
    assert set(edges) == {
        "e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse",
        "e:svc:bookwarehouse/bookwarehouse>svc:bookwarehouse/mysql",
    }


def test_it_hides_and_finds_by_expression(mesh):
    graph = build_graph(mesh, hide="ns=osm-system or ns=default", find="error>1%")
    nodes, edges = _shown(graph)
    assert not [i for i in nodes if "osm-system" in i or "default" in i]
    found = {i for i, e in {**nodes, **edges}.items() if e["data"].get("found")}
    assert found == {
        "svc:bookstore/bookstore",
        "svc:bookstore/bookstore-v2",
        "e:wl:bookbuyer/bookbuyer>svc:bookstore/bookstore",
        "e:wl:bookthief/bookthief>svc:bookstore/bookstore",
        "split:bookstore/bookstore-split>bookstore-v2",
    }
    assert all("found" in e["classes"] for i, e in {**nodes, **edges}.items() if i in found)
    assert graph["counts"]["found"] == len(found)
    assert graph["counts"]["hidden"] == 5  # default/kubernetes and the four OSM control-plane services
    hidden_edges = _shown(build_graph(mesh, hide="!mtls or denied"))[1]
    assert "e:wl:bookthief/bookthief>svc:bookstore/bookstore" not in hidden_edges


def test_it_sends_every_element_in_the_same_order_whatever_the_filters(mesh):
    """The page lays out everything once and a filter only hides: so every filter gets the same ids, sorted."""
    plain = build_graph(mesh)
    filtered = build_graph(mesh, namespaces=["bookwarehouse"], hide="ns=bookstore", find="rps>1")
    for kind in ("nodes", "edges"):
        ids = [e["data"]["id"] for e in plain["elements"][kind]]
        assert ids == [e["data"]["id"] for e in filtered["elements"][kind]]
        leaves = [i for i in ids if not i.startswith("ns:")]
        assert leaves == sorted(leaves)
    nodes, _ = _index(filtered)
    assert (
        "filtered" in nodes["svc:bookbuyer/bookbuyer"]["classes"].split()
        if "svc:bookbuyer/bookbuyer" in nodes
        else True
    )
    assert "filtered" in nodes["ns:osm-system"]["classes"].split()
    assert "filtered" not in nodes["ns:bookwarehouse"]["classes"].split()
    assert "filtered" in nodes["svc:bookstore/bookstore"]["classes"].split()  # a peer, but hidden by `hide`
    assert not any(n["data"].get("found") for i, n in nodes.items() if "filtered" in n["classes"].split())


def test_it_marks_idle_edges_and_the_peers_seen_only_on_them(mesh):
    from .conftest import IDLE_EDGES

    add_edges(mesh, IDLE_EDGES)
    graph = build_graph(mesh)
    nodes, edges = _index(graph)
    idle = {i for i, e in edges.items() if e["data"]["idle"]}
    assert idle == {
        "e:svc:bookwarehouse/mysql>svc:bookstore/bookstore",
        "e:svc:bookstore/bookstore>svc:bookstore/bookstore",
        "e:wl:bookbuyer/bookbuyer>svc:bookwarehouse/bookwarehouse",
        "e:wl:bookthief/bookthief>svc:bookwarehouse/bookwarehouse",
        "e:wl:bookbuyer/bookbuyer>svc:bookwarehouse/mysql",
        "e:svc:ghost/ghost-app>svc:bookstore/bookstore",
        "egress:bookbuyer/bookbuyer-external:wl:bookbuyer/bookbuyer",  # an Egress policy nobody used
    }
    assert all("idle" in edges[i]["classes"].split() for i in idle)
    assert edges["e:svc:bookstore/bookstore>svc:bookstore/bookstore"]["data"]["label"] == "policy-only · 0 rps"
    assert edges["e:wl:bookthief/bookthief>svc:bookwarehouse/bookwarehouse"]["data"]["label"] == (
        "policy-only · nothing measured"
    )
    # The ghost peer is named only by an idle series: idle too. Services and busy callers never are.
    assert {i for i, n in nodes.items() if n["data"].get("idle")} == {
        "ext:bookbuyer/bookbuyer-external",
        "ns:ghost",
        "svc:ghost/ghost-app",
    }
    assert nodes["ns:ghost"]["data"]["idle"] is True and nodes["ns:bookstore"]["data"]["idle"] is False
    leaves = [n for i, n in nodes.items() if not i.startswith("ns:")]
    assert graph["counts"] == {
        "nodes": len(leaves) - 2,
        "edges": 8,
        "idle_nodes": 2,
        "idle_edges": 7,
        "hidden": 0,
        "found": None,
    }
    assert {i for i, e in _index(build_graph(mesh, find="idle"))[1].items() if e["data"].get("found")} == idle
    # bookbuyer talks to bookwarehouse only on an idle edge: with that namespace chosen it goes with its edge.
    nodes, _ = _shown(build_graph(mesh, namespaces=["bookwarehouse"]))
    assert "idle" in nodes["wl:bookbuyer/bookbuyer"]["classes"].split()
    assert "idle" not in nodes["svc:bookstore/bookstore"]["classes"].split()  # it calls bookwarehouse


def test_it_labels_a_denied_edge_with_its_rate(mesh):
    _, edges = _index(build_graph(mesh))
    thief = edges["e:wl:bookthief/bookthief>svc:bookstore/bookstore"]
    assert thief["data"]["label"] == "denied 3 of 3 rps · 100% 5xx · ⇥ rate limit"
    assert {"denied", "traffic"} <= set(thief["classes"].split()) and "idle" not in thief["classes"].split()
    # As the demo has it: refusals counted, no request rate.
    EdgeKPI.objects.filter(cluster=mesh, source_service="bookthief").update(
        request_rate=None, rate_2xx=None, rate_4xx=None, rate_5xx=None, success_rate=None, denied_rate=2.0
    )
    thief = _index(build_graph(mesh))[1]["e:wl:bookthief/bookthief>svc:bookstore/bookstore"]
    assert (thief["data"]["label"], thief["data"]["denied_rps"], thief["data"]["idle"]) == (
        "denied 2 rps · ⇥ rate limit",
        2.0,
        False,
    )


@pytest.mark.parametrize(
    ("rps", "denied", "label"),
    [(None, 2.0, "denied 2 rps"), (5.0, 2.0, "denied 2 of 5 rps"), (1.0, 2.0, "denied 2 rps · 1 rps"),
     (0.0, 2.0, "denied 2 rps"), (5.0, 0.0, "5 rps")],
)  # fmt: skip
def test_it_puts_denied_requests_first_in_a_label(rps, denied, label):
    assert traffic_label(rps, None, None, None, denied) == label


def test_it_draws_each_of_two_splits_on_one_root_with_a_warning(two_splits):
    graph = build_graph(two_splits)
    nodes, edges = _index(graph)
    split_edges = {i: e["data"] for i, e in edges.items() if e["data"]["kind"] == "split"}
    assert set(split_edges) == {
        "split:bookstore/bookstore-split>bookstore-v1",
        "split:bookstore/bookstore-split>bookstore-v2",
        "split:bookstore/bookstore-v2-only>bookstore-v2",
    }
    # Each split keeps its own weights: the later one no longer overwrites the earlier one's edge to bookstore-v2.
    assert split_edges["split:bookstore/bookstore-split>bookstore-v2"]["weight_pct"] == 25.0
    assert split_edges["split:bookstore/bookstore-v2-only>bookstore-v2"]["weight_pct"] == 100.0
    assert split_edges["split:bookstore/bookstore-split>bookstore-v2"]["label"] == (
        "⚠ bookstore-split: weight 25% · observed 38%"
    )
    assert split_edges["split:bookstore/bookstore-v2-only>bookstore-v2"]["label"] == (
        "⚠ bookstore-v2-only: weight 100% · observed unknown"
    )
    text = (
        "2 TrafficSplits for root bookstore/bookstore: bookstore-split, bookstore-v2-only; OSM uses only one of them, "
        "so each is drawn apart and the weights of the others are not applied (MB-SPLIT-001)"
    )
    assert graph["warnings"] == [
        {"node": "svc:bookstore/bookstore", "splits": ["bookstore-split", "bookstore-v2-only"], "text": text}
    ]
    root = nodes["svc:bookstore/bookstore"]
    assert root["data"]["warnings"] == [text] and "warning" in root["classes"].split()
    assert all(e["warnings"] == [text] for e in split_edges.values())
    assert nodes["svc:bookstore/bookstore-v1"]["data"]["warnings"] == []


def test_it_serves_the_graph_as_json_and_rejects_a_bad_expression_with_the_reason(client, viewer, mesh):
    client.force_login(viewer)
    response = client.get(URL, {"ns": ["bookstore"], "find": "rps>1"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {
        *("cluster", "namespaces", "selected", "find", "hide", "counts", "warnings", "elements"),
        *("policy_mode", "as_of", "as_of_error"),
    }
    assert body["as_of"] is None and body["as_of_error"] == "" and body["policy_mode"] == "smi"
    assert body["selected"] == ["bookstore"]
    assert "bookwarehouse" in body["namespaces"]
    response = client.get(URL, {"hide": "rps>>1"})
    assert response.status_code == 400
    assert response.json() == {"error": "rps needs a number at character 1, not '>1' (e.g. rps>10)", "field": "hide"}


def _synthetic(index: int, services: int, kubeapi_factory) -> Cluster:
    cluster = Cluster.objects.create(
        name=f"g{index}", kubeconfig_path=str(kubeapi_factory(load_seed("synthetic", services=services)).kubeconfig)
    )
    _run, error = collect_and_record(cluster)
    assert error is None, error
    fill_kpis(cluster, generate(services))
    return cluster


def test_it_makes_the_same_number_of_queries_whatever_the_mesh_size(client, viewer, kubeapi_factory):
    client.force_login(viewer)
    counts, sizes = [], []
    for index, services in enumerate((10, 120)):
        cluster = _synthetic(index, services, kubeapi_factory)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(URL, {"cluster": cluster.name})
        assert response.status_code == 200
        counts.append(len(queries))
        body = json.loads(response.content)
        sizes.append((body["counts"]["nodes"], body["counts"]["edges"]))
    assert counts[0] == counts[1], counts
    assert sizes[1][0] > 5 * sizes[0][0] and sizes[1][1] > 5 * sizes[0][1], sizes


BUYER = "e:wl:bookbuyer/bookbuyer>svc:bookstore/bookstore"
THIEF = "e:wl:bookthief/bookthief>svc:bookstore/bookstore"


def test_its_json_reads_back_as_the_standard_encoder_writes_it(client, viewer, mesh):
    """orjson writes the graph (apps/core/json_response.py); the browser must read the same values JsonResponse wrote,
    hostile names included."""
    add_edges(mesh, {("bookbuyer", 'buyer"</script>\u2028é', "bookstore", "bookstore-v1"): (1.0, 0.0, 5.0, None, 0.0)})
    client.force_login(viewer)
    ours = client.get(URL).content
    expected = JsonResponse({**build_graph(mesh), "as_of_error": ""}).content
    assert json.loads(ours) == json.loads(expected)
    assert "\u2028é" in ours.decode() and b"</script>" in ours


def _verdicts(graph) -> dict[str, str]:
    return {i: e["data"]["policy"] for i, e in _index(graph)[1].items() if e["data"].get("policy")}


def test_edge_verdicts_follow_the_policy_each_collection_finds(mesh, kubeapi):
    """The policy, the service accounts and the verdicts said are kept between requests (apps.mesh.kept) until the
    snapshot changes: a deleted TrafficTarget (a table) and then the MeshConfig's permissive mode (the mesh's state,
    no table) each show at the first request after the collection that saw them, not before."""
    from tests.helpers import custom_api

    _judged.clear()
    with CaptureQueriesContext(connection) as queries:
        before = _verdicts(build_graph(mesh))
    assert [q for q in queries if "mesh_traffictarget" in q["sql"]]
    assert before[BUYER] == "allowed" and before[THIEF] == "denied"
    api = custom_api(kubeapi)
    api.delete_namespaced_custom_object("access.smi-spec.io", "v1alpha3", "bookstore", "traffictargets", "bookstore")
    with CaptureQueriesContext(connection) as queries:
        assert _verdicts(build_graph(mesh)) == before  # not collected yet: the snapshot is as it was
    assert not [q for q in queries if "mesh_traffictarget" in q["sql"]]  # kept: the policy is not read again
    assert collect_and_record(mesh)[1] is None
    # bookstore's v1 pods no longer allow bookbuyer; its v2 pods still do (TrafficTarget bookstore-v2).
    assert _verdicts(build_graph(mesh)) == {**before, BUYER: "partly"}

    patch = {"spec": {"traffic": {"enablePermissiveTrafficPolicyMode": True}}}
    api.patch_namespaced_custom_object(
        "config.openservicemesh.io", "v1alpha2", "osm-system", "meshconfigs", "osm-mesh-config", patch
    )
    assert collect_and_record(mesh)[1] is None
    permissive = build_graph(mesh)
    assert permissive["policy_mode"] == "permissive"
    assert _verdicts(permissive)[THIEF] == "allowed"


def test_a_namespace_limited_users_kept_policy_is_not_served_to_another(client, viewer, operator, mesh):
    """The policy and accounts are kept per namespace scope: a bookstore-only user's (who cannot see bookbuyer's
    pods) must not answer for an unlimited viewer, whose graph judges bookbuyer's calls."""
    Access.objects.update_or_create(user=operator, defaults={"namespaces": ["bookstore"]})
    _judged.clear()
    client.force_login(operator)
    assert client.get(URL).status_code == 200
    client.force_login(viewer)
    after_limited = _verdicts(client.get(URL).json())
    _judged.clear()
    assert after_limited == _verdicts(client.get(URL).json())
    assert after_limited[BUYER] == "allowed" and after_limited[THIEF] == "denied"


def test_a_request_with_nothing_new_is_answered_304_without_a_body(client, viewer, mesh, kubeapi):
    """The present graph carries an ETag made of the versions it is built from: asked again with it, the answer is a
    304 until a metrics cycle or a collection changes something, then the new graph with a new tag."""
    metrics_cycle_ended(mesh)
    client.force_login(viewer)
    first = client.get(URL, {"ns": ["bookstore"]})
    tag = first["ETag"]
    assert first.status_code == 200 and first["Cache-Control"] == "private, no-cache" and tag.startswith('W/"')
    with CaptureQueriesContext(connection) as queries:
        again = client.get(URL, {"ns": ["bookstore"]}, HTTP_IF_NONE_MATCH=tag)
    assert (again.status_code, again.content, again["ETag"]) == (304, b"", tag)
    # Versions only: no row of the graph is read for a 304.
    assert not [q for q in queries if "edgekpi" in q["sql"] or "mesh_pod" in q["sql"] or "mesh_service" in q["sql"]]
    assert again["Cache-Control"] == "private, no-cache"
    # Another query is another answer.
    assert client.get(URL, {"ns": ["bookwarehouse"]}, HTTP_IF_NONE_MATCH=tag).status_code == 200

    EdgeKPI.objects.filter(source_service="bookstore", destination_service="bookwarehouse").update(request_rate=777.0)
    metrics_cycle_ended(mesh)
    changed = client.get(URL, {"ns": ["bookstore"]}, HTTP_IF_NONE_MATCH=tag)
    assert changed.status_code == 200 and changed["ETag"] != tag
    edge = _index(changed.json())[1]["e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse"]
    assert edge["data"]["rps"] == 777.0
    tag = changed["ETag"]

    from tests.helpers import custom_api

    custom_api(kubeapi).delete_namespaced_custom_object(
        "access.smi-spec.io", "v1alpha3", "bookstore", "traffictargets", "bookstore"
    )
    assert client.get(URL, {"ns": ["bookstore"]}, HTTP_IF_NONE_MATCH=tag).status_code == 304  # not collected yet
    assert collect_and_record(mesh)[1] is None
    collected = client.get(URL, {"ns": ["bookstore"]}, HTTP_IF_NONE_MATCH=tag)
    assert collected.status_code == 200 and collected["ETag"] != tag
    assert _verdicts(collected.json())[BUYER] == "partly"


def test_the_body_built_after_a_cycle_answers_every_user_with_the_same_scope_and_query(client, viewer, operator, mesh):
    """After a metrics cycle, the first request builds the graph; another user's with the same scope and query (an
    operator's, a viewer's: the addresses hidden from viewers are rewritten after) is answered with that body, no row
    of the graph read. A new cycle, another scope or another query builds its own."""
    metrics_cycle_ended(mesh)
    client.force_login(operator)
    first = client.get(URL, {"ns": ["bookstore"]})
    for user in (viewer, operator):
        client.force_login(user)
        with CaptureQueriesContext(connection) as queries:
            again = client.get(URL, {"ns": ["bookstore"]})
        assert again.status_code == 200 and again["Cache-Control"] == "private, no-cache"
        assert not [q for q in queries if "edgekpi" in q["sql"] or "mesh_pod" in q["sql"] or "mesh_service" in q["sql"]]
    assert again["ETag"] == first["ETag"] and again.json() == first.json()

    edge = "e:svc:bookstore/bookstore>svc:bookwarehouse/bookwarehouse"
    EdgeKPI.objects.filter(source_service="bookstore", destination_service="bookwarehouse").update(request_rate=777.0)
    # The rows changed, not their versions (only a test writes so; Meshboard's writers draw new ones): still kept.
    assert _index(client.get(URL, {"ns": ["bookstore"]}).json())[1][edge]["data"]["rps"] != 777.0
    metrics_cycle_ended(mesh)
    after = client.get(URL, {"ns": ["bookstore"]})
    assert after["ETag"] != first["ETag"] and _index(after.json())[1][edge]["data"]["rps"] == 777.0

    whole = client.get(URL)  # another query
    assert {n["data"].get("namespace") for n in _index(whole.json())[0].values()} > {"bookstore", "bookbuyer"}
    Access.objects.update_or_create(user=viewer, defaults={"namespaces": ["bookstore"]})
    client.force_login(viewer)
    limited = client.get(URL)
    assert limited["ETag"] != whole["ETag"]
    assert "bookbuyer" not in {n["data"].get("namespace") for n in _index(limited.json())[0].values()}


def test_each_user_and_role_has_its_own_tag(client, viewer, operator, mesh):
    """The answer differs by namespace scope and, for viewers, by the internal addresses rewritten in it: a tag one
    user was given never spares another user the whole answer."""
    metrics_cycle_ended(mesh)
    client.force_login(viewer)
    viewers = client.get(URL)["ETag"]
    client.force_login(operator)
    operators = client.get(URL)["ETag"]
    assert operators != viewers
    assert client.get(URL, HTTP_IF_NONE_MATCH=viewers).status_code == 200
    Access.objects.update_or_create(user=operator, defaults={"namespaces": ["bookstore"]})
    limited = client.get(URL, HTTP_IF_NONE_MATCH=operators)
    assert limited.status_code == 200 and limited["ETag"] not in (operators, viewers)
    assert not [n for n in _index(limited.json())[0].values() if n["data"].get("namespace") == "bookbuyer"]

    client.force_login(viewer)
    Cluster.objects.filter(pk=mesh.pk).update(prometheus_url="http://prometheus.internal:9090")
    assert client.get(URL, HTTP_IF_NONE_MATCH=viewers).status_code == 200  # a new address to hide from viewers


def test_what_is_not_tagged_is_never_kept(client, viewer, mesh, settings):
    """No tag before the first metrics cycle, for a past view (Prometheus answers it) or a refused expression; a
    changed health threshold (settings) changes every tag."""
    client.force_login(viewer)
    before_metrics = client.get(URL)
    assert before_metrics.status_code == 200 and "ETag" not in before_metrics
    assert before_metrics["Cache-Control"] == "no-store"
    metrics_cycle_ended(mesh)
    tag = client.get(URL)["ETag"]
    past = client.get(URL, {"as_of": "2026-01-01T00:00"})
    assert "ETag" not in past and past["Cache-Control"] == "no-store"
    refused = client.get(URL, {"hide": "rps>>1"})
    assert refused.status_code == 400 and "ETag" not in refused
    settings.MESHBOARD_HEALTH = {**settings.MESHBOARD_HEALTH, "5xx_failing": 0.5}
    assert client.get(URL, HTTP_IF_NONE_MATCH=tag).status_code == 200


def test_its_answer_is_gzipped_for_a_browser_after_the_internal_addresses_are_hidden(client, viewer, operator, mesh):
    """The graph's JSON goes gzipped to a client that accepts it (a tenth of the bytes, and small enough for a
    browser's in-memory cache to keep); a viewer's copy has the internal addresses hidden all the same."""
    address = "prometheus.internal:9090"
    Cluster.objects.filter(pk=mesh.pk).update(prometheus_url=f"http://{address}")
    add_edges(mesh, {("bookbuyer", "bookbuyer", "bookstore", f"x-{address}"): (1.0, 0.0, 5.0, None, 0.0)})
    for user, shown in ((viewer, False), (operator, True)):
        client.force_login(user)
        plain = client.get(URL)
        zipped = client.get(URL, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
        assert "Content-Encoding" not in plain and zipped["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in plain["Vary"] and "Accept-Encoding" in zipped["Vary"]
        body = gzip.decompress(zipped.content)
        assert len(zipped.content) * 4 < len(body) and int(zipped["Content-Length"]) == len(zipped.content)
        assert json.loads(body) == plain.json()
        assert (address in body.decode()) is shown and (address in plain.content.decode()) is shown
    # Small answers and errors go as they are.
    refused = client.get(URL, {"hide": "rps>>1"}, HTTP_ACCEPT_ENCODING="gzip")
    assert refused.status_code == 400 and "Content-Encoding" not in refused
