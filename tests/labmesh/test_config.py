"""The sidecar config rendered from the bookstore seed, without starting anything."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from lab.mesh.certs import CertFiles
from lab.mesh.envoy import LabNetwork, SidecarPorts, render
from lab.mesh.prom import prometheus_config
from lab.mesh.topology import Policy, build_endpoints, build_ingress_controllers, build_workloads
from lab.seeds.loader import load_seed


def bookstore():
    objects = load_seed("bookstore").objects
    pods = [o for o in objects if o["kind"] == "Pod"]
    services = [o for o in objects if o["kind"] == "Service"]
    workloads = build_workloads(pods, services)
    policy = Policy()
    for o in objects:
        key = f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
        attr = {
            "TrafficSplit": "splits",
            "TrafficTarget": "targets",
            "HTTPRouteGroup": "http_route_groups",
            "TCPRoute": "tcp_routes",
            "MeshConfig": "mesh_configs",
            "IngressBackend": "ingress_backends",
            "Egress": "egresses",
            "UpstreamTrafficSetting": "upstream_traffic_settings",
            "Retry": "retries",
            "Ingress": "ingresses",
        }.get(o["kind"])
        if attr:
            getattr(policy, attr)[key] = o
    keys = sorted({ms.key for w in workloads for ms in w.services})
    ports, n = {}, 20000
    for w in workloads:
        ports[w.pod] = SidecarPorts(n, n + 1, n + 2, {k: n + 3 + i for i, k in enumerate(keys)}, egress={80: n + 50})
        n += 100
    certs = {w.pod: CertFiles(Path(f"{w.pod}.crt"), Path(f"{w.pod}.key")) for w in workloads}
    return workloads, policy, ports, certs


def by_name(workloads, name):
    return next(w for w in workloads if w.name == name)


def test_it_takes_names_identities_and_osm_cluster_names_from_the_seed() -> None:
    workloads, policy, ports, certs = bookstore()
    assert {w.name for w in workloads} == {
        "bookbuyer",
        "bookthief",
        "bookstore",
        "bookstore-v2",
        "bookwarehouse",
        "mysql",
    }
    assert by_name(workloads, "bookstore-v2").identity == "bookstore-v2.bookstore.cluster.local"
    mysql = by_name(workloads, "mysql")
    assert [ms.cluster for ms in mysql.services] == ["bookwarehouse/mysql-0.mysql|3306"]
    files = render(by_name(workloads, "bookwarehouse"), workloads, policy, ports, certs, Path("ca.crt")).files
    clusters = {c["name"]: c for c in files["cds.yaml"]["resources"]}
    assert "bookwarehouse/mysql-0.mysql|3306" in clusters
    assert "alt_stat_name" not in clusters["bookwarehouse/mysql-0.mysql|3306"]
    assert "bookwarehouse/bookwarehouse|14001|local" in clusters


def test_it_routes_by_split_weights_and_gives_bookthief_no_route() -> None:
    workloads, policy, ports, certs = bookstore()
    buyer = render(by_name(workloads, "bookbuyer"), workloads, policy, ports, certs, Path("ca.crt")).files
    hosts = buyer["rds-outbound.14001.yaml"]["resources"][0]["virtual_hosts"]
    root = next(vh for vh in hosts if vh["name"] == "outbound_virtual-host|bookstore.bookstore.svc.cluster.local")
    weighted = root["routes"][0]["route"]["weighted_clusters"]
    assert weighted == {"clusters": [{"name": "bookstore/bookstore-v1|14001", "weight": 100}], "total_weight": 100}
    thief = render(by_name(workloads, "bookthief"), workloads, policy, ports, certs, Path("ca.crt")).files
    # SMI mode, no TrafficTarget: no chain, no route, no cluster for bookstore; only egress passthrough is left,
    # which ends at bookstore's inbound listener (no mTLS there, so it refuses the connection).
    [outbound] = thief["lds.yaml"]["resources"]
    assert (
        outbound["filter_chains"] == [] and outbound["default_filter_chain"]["name"] == "outbound-egress-filter-chain"
    )
    assert [c["name"] for c in thief["cds.yaml"]["resources"]] == ["passthrough-outbound"]
    assert not [name for name in thief if name.startswith("rds-")]
    store = render(by_name(workloads, "bookstore"), workloads, policy, ports, certs, Path("ca.crt")).files
    inbound = next(li for li in store["lds.yaml"]["resources"] if li["name"] == "inbound-listener")
    landing = {(a["address"]["socket_address"]["address"], a["address"]["socket_address"]["port_value"])
               for a in inbound["additional_addresses"]}  # fmt: skip
    assert ("127.0.0.2", ports[by_name(workloads, "bookthief").pod].outbound["bookstore/bookstore"]) in landing


def test_it_admits_traffic_target_sources_by_san_on_the_inbound_listener() -> None:
    workloads, policy, ports, certs = bookstore()
    files = render(by_name(workloads, "bookstore"), workloads, policy, ports, certs, Path("ca.crt")).files
    inbound = next(li for li in files["lds.yaml"]["resources"] if li["name"] == "inbound-listener")
    chain = next(c for c in inbound["filter_chains"] if c["name"] == "inbound_bookstore/bookstore-v1_14001_http")
    assert chain["filter_chain_match"]["server_names"] == ["bookstore-v1.bookstore.svc.cluster.local"]
    assert chain["transport_socket"]["typed_config"]["require_client_certificate"] is True
    rbac = chain["filters"][0]["typed_config"]["rules"]["policies"]
    ids = [i["authenticated"]["principal_name"]["exact"] for pol in rbac.values() for p in pol["principals"]
           for i in p["or_ids"]["ids"]]  # fmt: skip
    assert ids == ["bookbuyer.bookbuyer.cluster.local"]
    hosts = files["rds-inbound.14001.yaml"]["resources"][0]["virtual_hosts"]
    v1 = next(vh for vh in hosts if vh["name"] == "inbound_virtual-host|bookstore-v1.bookstore.svc.cluster.local")
    routes = {
        (r["match"]["safe_regex"]["regex"], r["match"]["headers"][0]["safe_regex_match"]["regex"]) for r in v1["routes"]
    }
    assert routes == {("/books-bought", "GET"), (".*a-book.*new", "GET")}  # the HTTPRouteGroup's matches, no others
    clusters = {c["route"]["weighted_clusters"]["clusters"][0]["name"] for c in v1["routes"]}
    assert clusters == {"bookstore/bookstore-v1|14001|local"}


def test_it_keeps_only_osms_metric_names_in_osm_mode() -> None:
    workloads, *_ = bookstore()
    targets = [(w, 1000 + i) for i, w in enumerate(workloads)]
    assert "metric_relabel_configs" not in prometheus_config(targets, mode="byo")["scrape_configs"][0]
    osm = prometheus_config(targets, mode="osm", scrape_interval="2s")["scrape_configs"][0]
    assert osm["metric_relabel_configs"][0]["action"] == "keep"
    keep = re.compile(osm["metric_relabel_configs"][0]["regex"])
    assert keep.fullmatch("envoy_cluster_upstream_rq_total") and keep.fullmatch("envoy_cluster_upstream_rq_xx")
    assert not keep.fullmatch("envoy_cluster_upstream_rq_time_bucket")
    assert not keep.fullmatch("envoy_http_downstream_rq_xx")
    # and every refusal counter: with OSM's own Prometheus, denials are not observable at all
    for name in (
        "envoy_listener_no_filter_chain_match",
        "envoy_rbac_denied",
        "envoy_http_rds_inbound_14001_rbac_denied",
    ):
        assert not keep.fullmatch(name), name
    assert osm["scrape_interval"] == "2s" and len(osm["static_configs"]) == 6


# ---- OSM's policy API -------------------------------------------------------------------------------------------
def network() -> LabNetwork:
    """The seed's endpoints, and the ingress controller's pod IP standing as 127.0.0.3 (as the lab runs it)."""
    objects = load_seed("bookstore").objects
    controllers = build_ingress_controllers(
        [o for o in objects if o["kind"] == "Pod"], [o for o in objects if o["kind"] == "Service"]
    )
    assert [(c.name, c.services, c.address) for c in controllers] == [
        ("ingress-nginx-controller", ["ingress-nginx-controller"], "127.0.0.3")
    ]
    endpoints = build_endpoints([o for o in objects if o["kind"] == "Endpoints"])
    return LabNetwork(endpoints, {controllers[0].workload.pod_ip: "127.0.0.3"}, {"books.example.com": 18080})


def files_of(name: str, policy=None, net: LabNetwork | None = None) -> dict:
    workloads, seed_policy, ports, certs = bookstore()
    wl = by_name(workloads, name)
    return render(wl, workloads, policy or seed_policy, ports, certs, Path("ca.crt"), net or network()).files


def chains_of(files: dict, listener: str) -> dict[str, dict]:
    li = next(li for li in files["lds.yaml"]["resources"] if li["name"] == listener)
    return {fc.get("name"): fc for fc in li["filter_chains"]}


def seed_policy():
    return copy.deepcopy(bookstore()[1])


NGINX = "ingress-nginx.ingress-nginx.cluster.local"  # the AuthenticatedPrincipal of bookstore-mtls


def test_it_builds_osms_ingress_chains_and_routes_for_ingress_backends() -> None:
    """IngressBackend bookstore-http (Service source, HTTP) and bookstore-mtls (HTTPS, AuthenticatedPrincipal): on the
    v1 pod (backing bookstore and bookstore-v1) a chain each after the service's mesh chain, admitting the ingress
    controller's address; on the v2 pod (backing bookstore only) the HTTP one. Their routes are merged into one
    virtual host, as OSM merges ingress policies with equal hostnames."""
    files = files_of("bookstore")
    chains = chains_of(files, "inbound-listener")
    assert list(chains) == [
        "inbound_bookstore/bookstore_14001_http",
        "ingress_bookstore/bookstore_14001_http",
        "inbound_bookstore/bookstore-v1_14001_http",
        "ingress_bookstore/bookstore-v1_14001_https",
    ]
    inbound_port = chains["inbound_bookstore/bookstore_14001_http"]["filter_chain_match"]["destination_port"]
    source = [{"address_prefix": "127.0.0.3", "prefix_len": 32}]  # the controller pod's 10.244.1.8/32 in OSM
    http, https = chains["ingress_bookstore/bookstore_14001_http"], chains["ingress_bookstore/bookstore-v1_14001_https"]
    assert http["filter_chain_match"] == {"destination_port": inbound_port, "source_prefix_ranges": source}
    assert "transport_socket" not in http
    assert https["filter_chain_match"] == {
        "destination_port": inbound_port,
        "source_prefix_ranges": source,
        "transport_protocol": "tls",
    }
    assert https["transport_socket"]["typed_config"]["require_client_certificate"] is True
    for fc in (http, https):
        [manager] = [f["typed_config"] for f in fc["filters"]]
        assert manager["stat_prefix"] == "mesh-http-conn-manager.rds-ingress"
        assert manager["rds"]["route_config_name"] == "rds-ingress"
        assert [f["name"] for f in manager["http_filters"]] == [
            "envoy.filters.http.rbac",
            "envoy.filters.http.local_ratelimit",
            "http_router",
        ]
    [rc] = files["rds-ingress.yaml"]["resources"]
    [vh] = rc["virtual_hosts"]
    assert (vh["name"], vh["domains"]) == ("ingress_virtual-host|bookstore/bookstore_from_bookstore-http", ["*"])
    routes = [
        (
            r["match"]["safe_regex"]["regex"],
            r["route"]["weighted_clusters"]["clusters"],
            r["typed_per_filter_config"]["envoy.filters.http.rbac"]["rbac"]["rules"]["policies"]["rbac-for-route"][
                "principals"
            ],
        )
        for r in vh["routes"]
    ]
    assert routes == [
        (".*", [{"name": "bookstore/bookstore|14001|local", "weight": 100}], [{"any": True}]),
        (
            ".*",
            [{"name": "bookstore/bookstore-v1|14001|local", "weight": 100}],
            [{"or_ids": {"ids": [{"authenticated": {"principal_name": {"exact": NGINX}}}]}}],
        ),
    ]
    v2 = chains_of(files_of("bookstore-v2"), "inbound-listener")
    assert [n for n in v2 if n.startswith("ingress_")] == ["ingress_bookstore/bookstore_14001_http"]
    # A Service source without endpoints: OSM builds no ingress policy for the backend at all.
    policy = seed_policy()
    policy.ingress_backends["bookstore/bookstore-http"]["spec"]["sources"][0]["name"] = "no-such-controller"
    assert "ingress_bookstore/bookstore_14001_http" not in chains_of(files_of("bookstore", policy), "inbound-listener")


def test_it_rate_limits_the_route_an_upstream_traffic_setting_names() -> None:
    """UpstreamTrafficSetting bookstore-rate-limit (host bookstore.bookstore.svc.cluster.local): its httpRoutes'
    local rate limit on the inbound route of that path in bookstore's virtual host, nowhere else; its connection
    settings as the circuit breakers of callers' `bookstore/bookstore|14001` cluster."""
    files = files_of("bookstore")
    [rc] = files["rds-inbound.14001.yaml"]["resources"]
    hosts = {vh["name"]: vh for vh in rc["virtual_hosts"]}
    limited = {
        (name, r["match"]["safe_regex"]["regex"]): r["typed_per_filter_config"].get(
            "envoy.filters.http.local_ratelimit"
        )
        for name, vh in hosts.items()
        for r in vh["routes"]
    }
    root = "inbound_virtual-host|bookstore.bookstore.svc.cluster.local"
    assert {k for k, v in limited.items() if v} == {(root, ".*a-book.*new")}
    assert limited[(root, ".*a-book.*new")] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "http_local_rate_limiter",
        "token_bucket": {"max_tokens": 488, "tokens_per_fill": 480, "fill_interval": "60s"},
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "status": {"code": 429},
    }
    assert "typed_per_filter_config" not in hosts[root]  # no rateLimit.local.http for the whole host
    clusters = {c["name"]: c for c in files_of("bookbuyer")["cds.yaml"]["resources"]}
    limits = {"max_connections": 100, "max_pending_requests": 100, "max_requests": 200, "max_retries": 3}
    assert clusters["bookstore/bookstore|14001"]["circuit_breakers"]["thresholds"] == [
        limits | {"track_remaining": True}
    ]
    assert clusters["bookstore/bookstore|14001"]["connect_timeout"] == "5s"
    assert clusters["bookstore/bookstore-v1|14001"]["circuit_breakers"]["thresholds"][0]["max_retries"] == 4294967295


def test_it_retries_as_the_retry_policy_says_only_while_the_flag_is_on() -> None:
    def retry_policies(policy=None) -> dict[str, dict | None]:
        [rc] = files_of("bookbuyer", policy)["rds-outbound.14001.yaml"]["resources"]
        return {vh["name"].split("|")[1]: vh["routes"][0]["route"].get("retry_policy") for vh in rc["virtual_hosts"]}

    policies = retry_policies()
    assert policies.pop("bookstore.bookstore.svc.cluster.local") == {
        "retry_on": "5xx",
        "num_retries": 3,
        "per_try_timeout": "1s",
        "retry_back_off": {"base_interval": "0.1s"},
    }
    assert set(policies.values()) == {None}  # not to bookstore-v1 or -v2: the Retry names bookstore only
    policy = seed_policy()
    for mc in policy.mesh_configs.values():
        mc["spec"]["featureFlags"]["enableRetryPolicy"] = False
    assert set(retry_policies(policy).values()) == {None}


def test_it_builds_egress_for_the_egress_sources_only_while_the_flag_is_on() -> None:
    buyer = files_of("bookbuyer")
    egress = chains_of(buyer, "outbound-listener")["egress-http.80"]
    assert egress["filter_chain_match"]["destination_port"] == 20050  # bookbuyer's port standing for port 80
    cluster = next(c for c in buyer["cds.yaml"]["resources"] if c["name"] == "books.example.com:80")
    [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    # resolved by DNS, to the port the lab's server for the host listens on
    assert endpoint["endpoint"]["address"] == {"socket_address": {"address": "books.example.com", "port_value": 18080}}
    assert not [n for n in chains_of(files_of("bookthief"), "outbound-listener") if n.startswith("egress")]
    policy = seed_policy()
    for mc in policy.mesh_configs.values():
        mc["spec"]["featureFlags"]["enableEgressPolicy"] = False
    off = files_of("bookbuyer", policy)
    assert not [n for n in chains_of(off, "outbound-listener") if n.startswith("egress")]
    assert "rds-egress.80.yaml" not in off
    assert "books.example.com:80" not in {c["name"] for c in off["cds.yaml"]["resources"]}
