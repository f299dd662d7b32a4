"""The OSM evaluator pinned by vectors from OSM's documentation and the bookstore demo (osm-docs release-v1.2:
`manifests/access/traffic-access-v1.yaml`, `...-allow-bookthief.yaml`, the install_apps.md matrix, permissive_mode.md),
and by the route semantics of OSM 1.2's code (full RE2 matches; an empty pathRegex is `.*`, no methods is `*`; the
first matching route decides)."""

from __future__ import annotations

import pytest

from apps.migration.osm_eval import OsmPolicy
from apps.policies.model import (
    HTTP,
    PERMISSIVE,
    SMI,
    TCP,
    TLS,
    EgressInfo,
    ExternalRequest,
    IngressBackendInfo,
    Origin,
    Request,
)

from .builders import grants, group, http, mesh, meshconfig, request, sa, service, tcp, tcp_request

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


# -- OSM's policy API ---------------------------------------------------------------------------------------------
# IngressBackend and Egress as osm v1.2.4 programs them (pkg/catalog/ingress.go, pkg/envoy/lds/ingress.go and
# egress.go; the lab mesh renders the same chains, lab/mesh/envoy.py).

WEB = group("shop/web", labels={"app": "web"})
CONTROLLER = group("ingress/ctl", labels={"app": "ctl"}, ports=((80, "http"),), meshed=False)
SERVICES = [service("shop/web"), service("ingress/ctl", ports=((80, 80, "http"),))]
CERT = "ctl.ingress.cluster.local"


def ingress_backend(name: str, protocol: str = "http", service_name: str = "web", *sources: dict, skip: bool = False):
    tls = {"skipClientCertValidation": skip, "sniHosts": []} if protocol == "https" else None
    return IngressBackendInfo(
        "shop",
        name,
        ({"name": service_name, "port": 8080, "protocol": protocol, "tls": tls},),
        sources or ({"kind": "Service", "name": "ctl", "namespace": "ingress"},),
    )


def ingress_policy(*backends, services=SERVICES, groups=(WEB, CONTROLLER)) -> OsmPolicy:
    return OsmPolicy.for_mesh(mesh(list(groups), services=services, ingress_backends=backends))


def controller(tls: bool = False, certificate: str = "", services=("ingress/ctl",)) -> Origin:
    return Origin("ingress/ctl", CONTROLLER.key, tuple(services), tls=tls, certificate=certificate)


def from_origin(origin: Origin, dest=WEB, port: int = 8080) -> Request:
    return Request(None, dest, port, origin=origin)


def test_an_http_ingress_backend_admits_its_source_services_pods_in_plaintext_only():
    policy = ingress_policy(ingress_backend("web"))
    verdict = policy.evaluate(from_origin(controller()))
    assert verdict.allowed and verdict.keys == ("ib:shop/web",)
    assert not policy.evaluate(from_origin(controller(tls=True, certificate=CERT))).allowed  # no HTTPS chain
    assert not policy.evaluate(from_origin(controller(services=("ingress/other",)))).allowed  # another address
    assert not policy.evaluate(request(None, WEB)).allowed  # a pod without a sidecar that no IngressBackend names
    assert not policy.evaluate(from_origin(controller(), port=9090)).allowed  # not the admitted port


def test_an_https_ingress_backend_wants_the_client_certificate_of_an_authenticated_principal():
    principal_source = {"kind": "AuthenticatedPrincipal", "name": CERT}
    service_source = {"kind": "Service", "name": "ctl", "namespace": "ingress"}
    policy = ingress_policy(ingress_backend("web", "https", "web", service_source, principal_source))
    assert policy.evaluate(from_origin(controller(tls=True, certificate=CERT))).allowed
    assert not policy.evaluate(from_origin(controller(tls=True))).allowed  # no client certificate
    assert not policy.evaluate(from_origin(controller(tls=True, certificate="other.ns.cluster.local"))).allowed
    assert not policy.evaluate(from_origin(controller())).allowed  # plaintext: no chain
    skipping = ingress_policy(ingress_backend("web", "https", "web", service_source, skip=True))
    assert skipping.evaluate(from_origin(controller(tls=True))).allowed


def test_the_first_ingress_route_of_a_pod_decides_in_an_order_osm_does_not_fix():
    """Two Services on one pod, one admitted over HTTP, one over HTTPS: OSM merges both routes (each matching every
    request) into one virtual host, so plaintext is admitted or not depending on which comes first."""
    services = [*SERVICES, service("shop/web-v1", {"app": "web"})]
    principal_source = {"kind": "AuthenticatedPrincipal", "name": CERT}
    service_source = {"kind": "Service", "name": "ctl", "namespace": "ingress"}
    policy = ingress_policy(
        ingress_backend("web-http"),
        ingress_backend("web-mtls", "https", "web-v1", service_source, principal_source),
        services=services,
    )
    plaintext = policy.evaluate(from_origin(controller()))
    assert plaintext.order_dependent and "order OSM does not fix" in plaintext.reason
    with_cert = policy.evaluate(from_origin(controller(tls=True, certificate=CERT)))
    assert with_cert.allowed and not with_cert.order_dependent


def test_an_ip_range_source_admits_addresses_inside_it():
    policy = ingress_policy(ingress_backend("web", "http", "web", {"kind": "IPRange", "name": "10.1.0.0/16"}))
    assert policy.evaluate(from_origin(Origin("lb", address="10.1.2.3"))).allowed
    assert not policy.evaluate(from_origin(Origin("lb", address="10.2.0.1"))).allowed


def test_a_service_source_without_endpoints_makes_osm_build_no_ingress():
    policy = ingress_policy(ingress_backend("web"), groups=(WEB,))
    assert not policy.evaluate(from_origin(controller())).allowed


BUYER = sa("shop/web")
BOOKS = EgressInfo("shop", "books", (BUYER,), ("books.example.com",), (), ((80, "http"), (443, "https")))
DB = EgressInfo("shop", "db", (BUYER,), (), ("192.0.2.0/24",), ((5432, "tcp"),))


def egress_policy(*egresses, egress: bool = False, flag: bool = True) -> OsmPolicy:
    config = meshconfig(egress=egress, enableEgressPolicy=flag)
    return OsmPolicy.for_mesh(mesh([WEB], meshconfig=config, egresses=egresses))


def test_an_egress_lets_its_sources_reach_its_hosts_by_host_sni_and_ip_range():
    policy = egress_policy(BOOKS, DB)
    assert policy.evaluate_external(ExternalRequest(BUYER, "books.example.com", 80, HTTP, "GET", "/")).allowed
    assert policy.evaluate_external(ExternalRequest(BUYER, "books.example.com", 443, TLS)).allowed
    assert policy.evaluate_external(ExternalRequest(BUYER, "", 5432, TCP, address="192.0.2.7")).allowed
    assert not policy.evaluate_external(ExternalRequest(BUYER, "", 5432, TCP, address="198.51.100.1")).allowed
    other = sa("shop/other")
    assert not policy.evaluate_external(ExternalRequest(other, "books.example.com", 80, HTTP, "GET", "/")).allowed
    assert (
        not egress_policy(BOOKS, flag=False)
        .evaluate_external(ExternalRequest(BUYER, "books.example.com", 80, HTTP, "GET", "/"))
        .allowed
    )  # enableEgressPolicy off: OSM ignores every Egress


def test_with_enable_egress_everything_else_passes_through_but_the_egress_http_port_routes_only_its_hosts():
    policy = egress_policy(BOOKS, egress=True)
    other = sa("shop/other")
    assert policy.evaluate_external(ExternalRequest(other, "elsewhere.example", 80, HTTP, "GET", "/")).allowed
    assert policy.evaluate_external(ExternalRequest(BUYER, "elsewhere.example", 443, TLS)).allowed
    captured = policy.evaluate_external(ExternalRequest(BUYER, "elsewhere.example", 80, HTTP, "GET", "/"))
    assert not captured.allowed and "404" in captured.reason
    assert "egress-capture:shop/web:80" in captured.keys
    # The same chain takes plain HTTP on port 80 to a Service whose pods have no sidecar.
    legacy = group("shop/legacy", ports=((80, "http"),), meshed=False)
    assert not policy.evaluate(request("shop/web", legacy, port=80)).allowed
    assert policy.evaluate(request("shop/other", legacy, port=80)).allowed
