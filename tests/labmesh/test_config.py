"""The sidecar config rendered from the bookstore seed, without starting anything."""

from __future__ import annotations

import re
from pathlib import Path

from lab.mesh.certs import CertFiles
from lab.mesh.envoy import SidecarPorts, render
from lab.mesh.prom import prometheus_config
from lab.mesh.topology import Policy, build_workloads
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
        }.get(o["kind"])
        if attr:
            getattr(policy, attr)[key] = o
    keys = sorted({ms.key for w in workloads for ms in w.services})
    ports, n = {}, 20000
    for w in workloads:
        ports[w.pod] = SidecarPorts(n, n + 1, n + 2, {k: n + 3 + i for i, k in enumerate(keys)})
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
