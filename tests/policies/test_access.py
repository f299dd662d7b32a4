"""'Can A talk to B?' and the access matrix on the bookstore demo (SMI mode) and its variations."""

from __future__ import annotations

import pytest

from apps.policies.smi_access import UnknownEndpoint, access_matrix, can_talk, load_policy, parse_endpoint

from .conftest import find, of_kind


def test_it_allows_bookbuyer_to_reach_bookstore_via_its_route_group(mesh):
    verdict = can_talk(mesh(), "workload bookbuyer/bookbuyer", "service bookstore/bookstore")

    assert verdict.answer == "yes" and verdict.mode == "smi"
    assert "TrafficTarget bookstore/bookstore via HTTPRouteGroup bookstore-service-routes" in verdict.reason
    routes = {(r.group, r.match, r.path_regex) for g in verdict.allowing for r in g.routes}
    assert ("bookstore-service-routes", "buy-a-book", ".*a-book.*new") in routes
    assert not verdict.missing


def test_it_denies_bookthief_and_says_what_is_missing(mesh):
    verdict = can_talk(mesh(), "bookthief/bookthief", "bookstore/bookstore")

    assert verdict.answer == "no" and not verdict.allowing
    assert verdict.reason == (
        "denied: no TrafficTarget allows bookthief/bookthief → bookstore/bookstore;"
        " bookthief/bookthief → bookstore/bookstore-v2"
    )
    missing = verdict.missing[0]
    assert "no TrafficTarget in namespace bookstore with destination ServiceAccount bookstore lists" in missing
    assert "source ServiceAccount bookthief/bookthief" in missing and "allow only bookbuyer/bookbuyer" in missing


def test_it_follows_tcp_routes_between_pods(mesh):
    cluster = mesh()
    pod = can_talk(cluster, "workload bookwarehouse/bookwarehouse", "service bookwarehouse/mysql").pairs[0]

    assert pod.allowed and pod.allowing[0].routes[0].ports == ("3306",)


def test_it_allows_everything_in_the_mesh_in_permissive_mode(mesh):
    def permissive(objects):
        config = find(objects, "MeshConfig", "osm-system", "osm-mesh-config")
        config["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] = True

    verdict = can_talk(mesh(permissive), "bookthief/bookthief", "bookstore/bookstore")

    assert verdict.answer == "yes" and verdict.mode == "permissive"
    assert verdict.reason.startswith("allowed by permissive mode") and "TrafficTargets are ignored" in verdict.reason


def test_it_says_an_unmeshed_pod_is_not_in_the_mesh(mesh):
    def unmesh(objects):
        pod = next(p for p in of_kind(objects, "Pod") if p["metadata"]["namespace"] == "bookbuyer")
        pod["metadata"]["labels"].pop("osm-proxy-uuid", None)
        pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "envoy"]

    cluster = mesh(unmesh)
    from apps.mesh.models import Pod

    name = Pod.objects.get(cluster=cluster, namespace="bookbuyer").name
    verdict = can_talk(cluster, f"pod bookbuyer/{name}", "bookstore/bookstore")

    assert verdict.answer == "no"
    assert f"pod bookbuyer/{name} is not in the mesh" in verdict.reason


def test_it_explains_a_traffic_target_osm_ignores(mesh):
    def udp(objects):
        find(objects, "TrafficTarget", "bookstore", "bookstore")["spec"]["rules"][0]["kind"] = "UDPRoute"

    cluster = mesh(udp)
    verdict = can_talk(cluster, "bookbuyer/bookbuyer", "bookstore/bookstore-v1")

    assert verdict.answer == "no"
    assert "TrafficTarget bookstore/bookstore names it but OSM ignores it: rule kind UDPRoute" in verdict.missing[0]
    rows = {(str(r.source), str(r.destination)): r for r in access_matrix(load_policy(cluster))}
    assert not rows[("bookbuyer/bookbuyer", "bookstore/bookstore")].allowed


def test_it_builds_the_matrix_of_the_demo(mesh):
    rows = {(str(r.source), str(r.destination)): r for r in access_matrix(load_policy(mesh()))}

    assert set(rows) == {
        ("bookbuyer/bookbuyer", "bookstore/bookstore"),
        ("bookbuyer/bookbuyer", "bookstore/bookstore-v2"),
        ("bookstore/bookstore", "bookwarehouse/bookwarehouse"),
        ("bookwarehouse/bookwarehouse", "bookwarehouse/mysql"),
    }
    assert all(r.allowed for r in rows.values())
    assert [r.methods for r in rows[("bookstore/bookstore", "bookwarehouse/bookwarehouse")].routes] == [("POST",)]


def test_it_rejects_unknown_or_malformed_endpoints(mesh):
    cluster = mesh()
    with pytest.raises(UnknownEndpoint, match="no service, workload or pod bookstore/nope"):
        can_talk(cluster, "bookstore/nope", "bookstore/bookstore")
    with pytest.raises(UnknownEndpoint):
        can_talk(cluster, "just-a-name", "bookstore/bookstore")
    assert parse_endpoint("pod a/b") == ("pod", "a", "b")
    with pytest.raises(ValueError):
        parse_endpoint("deployment a/b")
