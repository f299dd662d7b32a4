"""The OSM evaluator pinned by vectors from OSM's documentation and the bookstore demo (osm-docs release-v1.2:
`manifests/access/traffic-access-v1.yaml`, `...-allow-bookthief.yaml`, the install_apps.md matrix, permissive_mode.md),
and by the route semantics of OSM 1.2's code (full RE2 matches; an empty pathRegex is `.*`, no methods is `*`; the
first matching route decides)."""

from __future__ import annotations

import pytest

from apps.migration.model import PERMISSIVE, SMI, TCP
from apps.migration.osm_eval import OsmPolicy

from .builders import grants, group, http, request, tcp, tcp_request

BOOKSTORE = group("bookstore/bookstore", labels={"app": "bookstore", "version": "v1"}, ports=((14001, "http"),))
BOOKWAREHOUSE = group("bookwarehouse/bookwarehouse", labels={"app": "bookwarehouse"}, ports=((14001, "http"),))
MYSQL = group("bookwarehouse/mysql", labels={"app": "mysql"}, ports=((3306, TCP),), kind="StatefulSet")
UA = ("user-agent", ".*-http-client/*.*")
ROUTES = [
    http("bookstore-service-routes", "books-bought", "/books-bought", ("GET",), (UA, ("client-app", "bookbuyer"))),
    http("bookstore-service-routes", "buy-a-book", ".*a-book.*new", ("GET",)),
]


def demo(*, allow_bookthief: bool = False, mode: str = SMI) -> OsmPolicy:
    sources = ["bookbuyer/bookbuyer"] + (["bookthief/bookthief"] if allow_bookthief else [])
    return OsmPolicy(
        mode,
        grants("bookstore/bookstore", "bookstore/bookstore", sources, ROUTES)
        + grants(
            "bookwarehouse/bookstore-access-bookwarehouse",
            "bookwarehouse/bookwarehouse",
            ["bookstore/bookstore"],
            [http("bookwarehouse-service-routes", "restock-books", methods=("POST",))],
        )
        + grants("bookwarehouse/mysql", "bookwarehouse/mysql", ["bookwarehouse/bookwarehouse"], [tcp("mysql", 3306)]),
    )


BUYER_HEADERS = {"User-Agent": "Go-http-client/1.1", "client-app": "bookbuyer"}


@pytest.mark.parametrize(
    ("source", "dest", "path", "method", "headers", "expected"),
    [
        # install_apps.md: bookbuyer → bookstore ✔, bookthief → bookstore ✘ in SMI mode
        ("bookbuyer/bookbuyer", BOOKSTORE, "/books-bought", "GET", BUYER_HEADERS, True),
        ("bookbuyer/bookbuyer", BOOKSTORE, "/buy-a-book/new", "GET", {}, True),
        ("bookthief/bookthief", BOOKSTORE, "/books-bought", "GET", BUYER_HEADERS, False),
        ("bookthief/bookthief", BOOKSTORE, "/buy-a-book/new", "GET", {}, False),
        # bookstore → bookwarehouse ✔ (restock-books: POST, any path)
        ("bookstore/bookstore", BOOKWAREHOUSE, "/restock-books", "POST", {}, True),
        ("bookstore/bookstore", BOOKWAREHOUSE, "/anything", "POST", {}, True),
        ("bookstore/bookstore", BOOKWAREHOUSE, "/restock-books", "GET", {}, False),
        ("bookbuyer/bookbuyer", BOOKWAREHOUSE, "/restock-books", "POST", {}, False),
        # the route's regexes are full matches
        ("bookbuyer/bookbuyer", BOOKSTORE, "/books-bought/x", "GET", BUYER_HEADERS, False),
        ("bookbuyer/bookbuyer", BOOKSTORE, "/buy-a-book/newer", "GET", {}, False),
        ("bookbuyer/bookbuyer", BOOKSTORE, "/books-bought", "GET", {"client-app": "bookbuyer"}, False),
        (
            "bookbuyer/bookbuyer",
            BOOKSTORE,
            "/books-bought",
            "GET",
            {**BUYER_HEADERS, "client-app": "bookbuyerx"},
            False,
        ),
        ("bookbuyer/bookbuyer", BOOKSTORE, "/books-bought", "POST", BUYER_HEADERS, False),
    ],
)
def test_it_follows_the_bookstore_demo_in_smi_mode(source, dest, path, method, headers, expected):
    assert demo().evaluate(request(source, dest, path, method, headers)).allowed is expected


def test_it_allows_tcp_by_tcproute_port():
    # bookwarehouse → mysql ✔ over TCPRoute mysql (3306); nobody else.
    policy = demo()
    assert policy.evaluate(tcp_request("bookwarehouse/bookwarehouse", MYSQL, 3306)).allowed
    assert not policy.evaluate(tcp_request("bookstore/bookstore", MYSQL, 3306)).allowed


def test_it_lets_bookthief_in_with_the_allow_bookthief_manifest():
    policy = demo(allow_bookthief=True)
    assert policy.evaluate(request("bookthief/bookthief", BOOKSTORE, "/buy-a-book/new")).allowed


def test_it_allows_every_meshed_source_in_permissive_mode():
    policy = demo(mode=PERMISSIVE)
    assert policy.evaluate(request("bookthief/bookthief", BOOKSTORE, "/anything", "DELETE")).allowed
    assert policy.evaluate(tcp_request("bookstore/bookstore", MYSQL, 3306)).allowed
    assert not policy.evaluate(request(None, BOOKSTORE)).allowed  # no sidecar, no mTLS


def test_it_reads_an_empty_path_regex_and_no_methods_as_any():
    dest = group("ns/api")
    policy = OsmPolicy(SMI, grants("ns/t", "ns/api", ["ns/client"], [http("routes", "all")]))
    assert policy.evaluate(request("ns/client", dest, "/deep/path", "PATCH")).allowed


def test_it_answers_a_request_no_route_matches_with_a_refusal_and_says_so():
    verdict = demo().evaluate(request("bookbuyer/bookbuyer", BOOKSTORE, "/nothing"))
    assert not verdict.allowed
    assert "404" in verdict.reason


def test_it_admits_http_only_sources_on_every_tcp_port_and_tcproute_sources_on_their_ports_only():
    dest = group("ns/db", ports=((8080, "http"), (5432, TCP)))
    policy = OsmPolicy(
        SMI,
        grants("ns/web", "ns/db", ["ns/web"], [http("routes", "all")])
        + grants("ns/batch", "ns/db", ["ns/batch"], [tcp("batch", 5432)]),
    )
    assert policy.evaluate(tcp_request("ns/web", dest, 5432)).allowed  # no TCPRoute: any port at L4
    assert policy.evaluate(tcp_request("ns/batch", dest, 5432)).allowed
    assert not policy.evaluate(request("ns/batch", dest, "/", port=8080)).allowed  # L4: 5432 only


def test_it_takes_the_first_matching_route_and_says_when_the_order_decides():
    dest = group("ns/api")
    policy = OsmPolicy(
        SMI,
        grants("ns/a-wide", "ns/api", ["ns/reader"], [http("wide", "all", "/api/.*")])
        + grants("ns/b-admin", "ns/api", ["ns/admin"], [http("admin", "admin", "/api/admin")]),
    )
    verdict = policy.evaluate(request("ns/admin", dest, "/api/admin"))
    assert not verdict.allowed  # the wide route comes first and does not list ns/admin
    assert verdict.order_dependent
    assert not policy.evaluate(request("ns/reader", dest, "/api/x")).order_dependent


def test_it_merges_identical_matches_of_several_traffic_targets():
    dest = group("ns/api")
    same = http("routes", "read", "/r", ("GET",))
    policy = OsmPolicy(SMI, grants("ns/t1", "ns/api", ["ns/a"], [same]) + grants("ns/t2", "ns/api", ["ns/b"], [same]))
    for source in ("ns/a", "ns/b"):
        verdict = policy.evaluate(request(source, dest, "/r"))
        assert verdict.allowed and not verdict.order_dependent


def test_it_ignores_traffic_targets_osm_ignores():
    dest = group("ns/api")
    policy = OsmPolicy(SMI, grants("ns/t", "ns/api", ["ns/a"], [http("r", "all")], ignored="namespace mismatch"))
    assert not policy.evaluate(request("ns/a", dest)).allowed


def test_it_never_matches_a_route_whose_regex_re2_refuses():
    dest = group("ns/api")
    policy = OsmPolicy(SMI, grants("ns/t", "ns/api", ["ns/a"], [http("r", "m", "(?=/a)/a")]))
    assert not policy.evaluate(request("ns/a", dest, "/a")).allowed


def test_it_refuses_a_meshed_caller_at_a_pod_without_a_sidecar():
    legacy = group("ns/legacy", meshed=False)
    assert not OsmPolicy(PERMISSIVE, []).evaluate(request("ns/a", legacy)).allowed


def test_it_lets_a_caller_without_a_sidecar_reach_a_pod_without_one():
    """No proxy sees a request between two pods without sidecars: nothing refuses it, whatever the mode."""
    legacy = group("ns/legacy", meshed=False)
    for policy in (OsmPolicy(PERMISSIVE, []), OsmPolicy(SMI, []), OsmPolicy(SMI, [], egress=True)):
        verdict = policy.evaluate(request(None, legacy))
        assert verdict.allowed and "no proxy sees" in verdict.reason
    assert not OsmPolicy(SMI, []).evaluate(request(None, BOOKSTORE)).allowed  # a sidecar there refuses plaintext


def test_a_meshed_callers_sidecar_decides_alone_at_a_pod_without_a_sidecar():
    """pkg/catalog/outbound_traffic_policies.go: a sidecar routes (with mTLS) to the services of the identities whose
    TrafficTargets list it; for anything else, enableEgress passes plaintext through to the original destination."""
    legacy = group("ns/legacy", meshed=False)
    named = grants("ns/t", "ns/legacy", ["ns/a"], [http("r", "all")])
    smi_egress = OsmPolicy(SMI, named, egress=True)
    assert not smi_egress.evaluate(request("ns/a", legacy)).allowed  # routed as a mesh service: mTLS, unanswered
    verdict = smi_egress.evaluate(request("ns/b", legacy))
    assert verdict.allowed and "passes the request through" in verdict.reason
    assert not OsmPolicy(SMI, named).evaluate(request("ns/b", legacy)).allowed  # no passthrough without enableEgress
    assert not OsmPolicy(PERMISSIVE, [], egress=True).evaluate(request("ns/b", legacy)).allowed  # every route is mTLS
