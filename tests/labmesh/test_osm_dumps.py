"""The lab's sidecar config against config dumps of real OSM v1.2.4 sidecars: the same listener, filter chain,
filter, connection manager, route configuration, virtual host, cluster and stat-prefix names, and the same shape.

The dumps are OSM's own (`osm@v1.2.4:pkg/cli/verifier/testdata/`), in ../shared/osm-data/envoy-config-dumps-v1.2.4/:
`curl_permissive.json` (a client), `httpbin1_permissive.json` (a server), `curl_egress.json` (a client with an Egress
policy: httpbin.org on port 80 over HTTP) and `sample-envoy-config-dump-bookstore.json` (an older OSM in SMI mode, for
what only SMI mode has: the network RBAC filter and the per-route principals). Names are
compared after replacing each service's namespace, name, port and FQDN by placeholders, so `outbound_httpbin/httpbin_
14001_http` and `outbound_bookstore/bookstore-v1_14001_http` both read `outbound_{ns}/{svc}_{port}_http`.

Left out on purpose, each because the lab does not do what it belongs to: OSM's WASM stats (`enableWASMStats`: the Lua
and WASM filters, their local-reply headers and the `osm-stats-*` response headers), access logs, ADS/SDS/EDS (the lab
reads files: certificates, routes and endpoints are inline), and the values that stand for the pod's network (listener
addresses and filter-chain ports, see lab/mesh/envoy.py).

One filter is in the lab's connection managers and not in the dumps: `envoy.filters.http.local_ratelimit`. The dumps
were recorded by an older OSM than v1.2.4 that shipped them (their bootstraps say Envoy 1.19.3, OSM 1.1's sidecar);
v1.2.0 added local rate limiting (UpstreamTrafficSetting `rateLimit`), and v1.2.4's `httpConnManagerOptions.build()`
puts that filter, without a token bucket, after RBAC in every mesh connection manager, for virtual hosts and routes to
configure (tests/labmesh/test_config.py checks those). The comparisons leave it out.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from lab.mesh.envoy import render
from lab.mesh.topology import MeshService

from .test_config import bookstore, by_name

DUMPS = Path(__file__).resolve().parents[2].parent / "shared" / "osm-data" / "envoy-config-dumps-v1.2.4"
WASM_STATS = {"envoy.filters.http.lua", "envoy.filters.http.wasm"}
SINCE_THE_DUMPS = {"envoy.filters.http.local_ratelimit"}
CHAIN = re.compile(r"(?P<direction>outbound|inbound)_(?P<ns>[^/]+)/(?P<svc>.+)_(?P<port>[0-9]+)_(?P<proto>http|tcp)")


def dump(name: str) -> dict[str, list[dict]]:
    """A config dump as {"listeners", "routes", "clusters"}: the resources, as the lab writes them."""
    path = DUMPS / name
    if not path.exists():
        pytest.skip(f"OSM's config dumps are not here ({DUMPS})")
    out: dict[str, list[dict]] = {"listeners": [], "routes": [], "clusters": []}
    for config in json.loads(path.read_text())["configs"]:
        kind = config["@type"].rsplit(".", 1)[-1]
        if kind == "ListenersConfigDump":
            out["listeners"] += [li["active_state"]["listener"] for li in config.get("dynamic_listeners", [])]
        elif kind == "RoutesConfigDump":
            out["routes"] += [r["route_config"] for r in config.get("dynamic_route_configs", [])]
        elif kind == "ClustersConfigDump":
            out["clusters"] += [c["cluster"] for c in config.get("dynamic_active_clusters", [])]
    return out


def lab(workload: str, *, permissive: bool, prometheus: bool = False) -> dict[str, list[dict]]:
    workloads, policy, ports, certs = bookstore()
    policy = copy.deepcopy(policy)
    for mc in policy.mesh_configs.values():
        mc["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] = permissive
    if prometheus:
        for i, p in enumerate(ports.values()):
            p.prometheus = 30000 + i
    files = render(by_name(workloads, workload), workloads, policy, ports, certs, Path("ca.crt")).files
    return {
        "listeners": files["lds.yaml"]["resources"],
        "routes": [d["resources"][0] for n, d in files.items() if n.startswith("rds-")],
        "clusters": files["cds.yaml"]["resources"],
    }


def templated(value, ns: str, svc: str, port: str):
    """`value` with the service's FQDN, `<ns>/<svc>`, `<svc>.<ns>`, name and port replaced by placeholders."""
    if isinstance(value, dict):
        return {k: templated(v, ns, svc, port) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [templated(v, ns, svc, port) for v in value]
    if not isinstance(value, str):
        return value
    for concrete, placeholder in (
        (f"{svc}.{ns}.svc.cluster.local", "{fqdn}"),
        (f"{ns}/{svc}", "{ns}/{svc}"),
        (f"{svc}.{ns}", "{svc}.{ns}"),
    ):
        value = value.replace(concrete, placeholder)
    value = re.sub(rf"(?<![\w.-]){re.escape(svc)}(?![\w-])", "{svc}", value)
    return re.sub(rf"(?<![0-9]){port}(?![0-9])", "{port}", value)


def listener(config: dict, name: str) -> dict:
    return next(li for li in config["listeners"] if li["name"] == name)


def chain(config: dict, listener_name: str, pattern: str) -> tuple[dict, dict]:
    """The filter chain whose name matches `pattern`, and its service (ns, svc, port)."""
    for fc in listener(config, listener_name)["filter_chains"]:
        if re.fullmatch(pattern, fc.get("name", "")):
            m = CHAIN.fullmatch(fc["name"])
            assert m, f"{fc['name']} is not named as OSM names filter chains"
            return fc, m.groupdict()
    raise AssertionError(f"no chain {pattern} on {listener_name}")


def filter_names(fc: dict) -> list[str]:
    return [f["name"] for f in fc["filters"]]


def hcm(fc: dict) -> dict:
    return next(f["typed_config"] for f in fc["filters"] if f["name"] == "http_connection_manager")


def chain_shape(fc: dict, svc: dict) -> dict:
    """Names and keys of a filter chain, its match and its connection manager, templated."""
    manager = hcm(fc)
    shape = {
        "name": fc["name"],
        "match": sorted(fc["filter_chain_match"]),
        "filters": filter_names(fc),
        "stat_prefix": manager["stat_prefix"],
        "route_config_name": manager["rds"]["route_config_name"],
        "http_filters": [f["name"] for f in manager["http_filters"] if f["name"] not in WASM_STATS | SINCE_THE_DUMPS],
    }
    match = fc["filter_chain_match"]
    for key in ("transport_protocol", "application_protocols", "server_names"):
        if key in match:
            shape[key] = match[key]
    if "transport_socket" in fc:
        socket = fc["transport_socket"]
        shape["transport_socket"] = (socket["name"], socket["typed_config"]["@type"])
        shape["require_client_certificate"] = socket["typed_config"].get("require_client_certificate")
    return templated(shape, svc["ns"], svc["svc"], svc["port"])


def route_shape(config: dict, name: str, svc: dict) -> dict:
    """A route configuration's name, virtual hosts (name, domains) and routes (match and action keys, clusters,
    per-route RBAC policy names), templated for the service of its virtual host."""
    rc = next(r for r in config["routes"] if r["name"] == name)
    fqdn = f"{svc['svc']}.{svc['ns']}.svc.cluster.local"
    vh = next(v for v in rc["virtual_hosts"] if v["name"].endswith(f"|{fqdn}"))
    routes = []
    for route in vh["routes"]:
        action = route["route"]
        rbac = route.get("typed_per_filter_config", {}).get("envoy.filters.http.rbac", {})
        routes.append(
            {
                "match": sorted(route["match"]),
                "match_headers": [h["name"] for h in route["match"].get("headers", [])],
                "action": sorted(action),
                "weighted_clusters": sorted(action["weighted_clusters"]),
                "clusters": [c["name"] for c in action["weighted_clusters"]["clusters"]],
                "timeout": action.get("timeout"),
                "per_route_rbac": (
                    rbac.get("@type"),
                    sorted(rbac.get("rbac", {}).get("rules", {}).get("policies", {})),
                ),
            }
        )
    shape = {
        "name": rc["name"],
        "virtual_host": vh["name"],
        "domains": vh["domains"],
        "routes": routes,
        "validate_clusters": rc.get("validate_clusters"),
    }
    return templated(shape, svc["ns"], svc["svc"], svc["port"])


def cluster_shape(config: dict, name: str, svc: dict) -> dict:
    c = next(c for c in config["clusters"] if c["name"] == name)
    shape = {"name": c["name"], "alt_stat_name": c.get("alt_stat_name")}
    if "transport_socket" in c:
        tls = c["transport_socket"]["typed_config"]
        shape["tls"] = (c["transport_socket"]["name"], tls["@type"], tls.get("sni"))
        shape["alpn"] = tls["common_tls_context"].get("alpn_protocols")
    return templated(shape, svc["ns"], svc["svc"], svc["port"])


def test_it_names_listeners_and_their_filters_as_osm() -> None:
    real_client, real_server = dump("curl_permissive.json"), dump("httpbin1_permissive.json")
    ours_client = lab("bookbuyer", permissive=True)
    ours_server = lab("bookstore", permissive=True, prometheus=True)
    assert {li["name"] for li in real_server["listeners"]} == {"outbound-listener", "inbound-listener"}
    assert {li["name"] for li in ours_server["listeners"]} == {
        "outbound-listener",
        "inbound-listener",
        "inbound-prometheus-listener",  # OSM adds it when the namespace has metrics enabled (osm.md §4.1)
    }
    for real, ours in ((real_client, ours_client), (real_server, ours_server)):
        for name in {li["name"] for li in real["listeners"]}:
            a, b = listener(real, name), listener(ours, name)
            assert b["traffic_direction"] == a["traffic_direction"], name
            assert [f["name"] for f in b["listener_filters"]] == [f["name"] for f in a["listener_filters"]], name
            assert b.get("continue_on_listener_filters_timeout") == a.get("continue_on_listener_filters_timeout")


def test_it_builds_outbound_chains_connection_managers_and_routes_as_osm() -> None:
    real = dump("curl_permissive.json")
    ours = lab("bookbuyer", permissive=True)
    real_chain, real_svc = chain(real, "outbound-listener", r"outbound_httpbin/httpbin_14001_http")
    our_chain, our_svc = chain(ours, "outbound-listener", r"outbound_bookstore/bookstore-v1_14001_http")
    assert chain_shape(our_chain, our_svc) == chain_shape(real_chain, real_svc)
    assert chain_shape(our_chain, our_svc)["stat_prefix"] == "mesh-http-conn-manager.rds-outbound.{port}"
    # One connection manager per port, shared by every destination on it (bookstore, -v1 and -v2 are all on 14001).
    chains = listener(ours, "outbound-listener")["filter_chains"]
    managers = {hcm(fc)["stat_prefix"] for fc in chains if fc["name"].endswith("_http")}
    assert managers == {"mesh-http-conn-manager.rds-outbound.14001"}
    # Permissive mode: every mesh service, TCP too, through tcp_proxy `outbound-mesh-tcp-proxy_<chain>`.
    mysql = next(fc for fc in chains if fc["name"] == "outbound_bookwarehouse/mysql-0.mysql_3306_tcp")
    assert mysql["filters"][0]["name"] == "tcp_proxy"
    assert mysql["filters"][0]["typed_config"]["stat_prefix"] == f"outbound-mesh-tcp-proxy_{mysql['name']}"
    assert route_shape(ours, "rds-outbound.14001", our_svc) == route_shape(real, "rds-outbound.14001", real_svc)
    rc = next(r for r in ours["routes"] if r["name"] == "rds-outbound.14001")
    hosts = ["bookstore.bookstore", "bookstore-v1.bookstore", "bookstore-v2.bookstore", "bookwarehouse.bookwarehouse"]
    assert [vh["name"] for vh in rc["virtual_hosts"]] == [f"outbound_virtual-host|{h}.svc.cluster.local" for h in hosts]
    cluster = "bookstore/bookstore-v1|14001"
    assert cluster_shape(ours, cluster, our_svc) == cluster_shape(real, "httpbin/httpbin|14001", real_svc)


def test_it_builds_inbound_chains_connection_managers_routes_and_local_clusters_as_osm() -> None:
    real = dump("httpbin1_permissive.json")
    ours = lab("bookstore", permissive=True)
    real_chain, real_svc = chain(real, "inbound-listener", r"inbound_httpbin/httpbin_14001_http")
    our_chain, our_svc = chain(ours, "inbound-listener", r"inbound_bookstore/bookstore-v1_14001_http")
    assert chain_shape(our_chain, our_svc) == chain_shape(real_chain, real_svc)
    assert route_shape(ours, "rds-inbound.14001", our_svc) == route_shape(real, "rds-inbound.14001", real_svc)
    local = cluster_shape(ours, "bookstore/bookstore-v1|14001|local", our_svc)
    assert local == cluster_shape(real, "httpbin/httpbin|14001|local", real_svc)
    assert local["alt_stat_name"] == "{ns}/{svc}|{port}|local"


def test_it_gives_the_domains_osm_gives() -> None:
    for config, vhost, local in (
        (dump("httpbin1_permissive.json"), "inbound_virtual-host|httpbin.httpbin.svc.cluster.local", True),
        (dump("curl_permissive.json"), "outbound_virtual-host|httpbin.httpbin.svc.cluster.local", False),
    ):
        domains = next(vh["domains"] for r in config["routes"] for vh in r["virtual_hosts"] if vh["name"] == vhost)
        assert MeshService("httpbin", "httpbin", 14001, 14001, "http", "httpbin").hostnames(local) == domains


def test_it_adds_what_smi_mode_adds_as_osm() -> None:
    """SMI mode, against an older OSM's dump (its names lack the port suffix; the filters and RBAC are the same)."""
    real = dump("sample-envoy-config-dump-bookstore.json")
    ours = lab("bookstore", permissive=False)
    real_chain = next(fc for fc in listener(real, "inbound-listener")["filter_chains"])
    our_chain, _svc = chain(ours, "inbound-listener", r"inbound_bookstore/bookstore-v1_14001_http")
    assert (
        filter_names(our_chain) == filter_names(real_chain) == ["envoy.filters.network.rbac", "http_connection_manager"]
    )
    real_rbac, our_rbac = real_chain["filters"][0]["typed_config"], our_chain["filters"][0]["typed_config"]
    assert our_rbac["stat_prefix"] == real_rbac["stat_prefix"] == "network-"
    assert our_rbac["@type"] == real_rbac["@type"]
    policy = next(iter(our_rbac["rules"]["policies"].values()))
    real_policy = next(iter(real_rbac["rules"]["policies"].values()))
    assert policy == real_policy  # bookbuyer's identity, any permission, as `or_ids`
    assert list(our_rbac["rules"]["policies"]) == ["bookstore/bookstore"]  # `<ns>/<TrafficTarget>`
    real_route = next(r for r in real["routes"] if r["name"] == "rds-inbound")["virtual_hosts"][0]["routes"][0]
    rc = next(r for r in ours["routes"] if r["name"] == "rds-inbound.14001")
    our_route = next(
        ro for ro in rc["virtual_hosts"][0]["routes"] if ro["match"]["safe_regex"]["regex"] != "/books-bought"
    )
    rbac = "envoy.filters.http.rbac"
    assert our_route["typed_per_filter_config"][rbac]["rbac"] == real_route["typed_per_filter_config"][rbac]["rbac"]
    assert our_route["match"]["safe_regex"]["regex"] == real_route["match"]["safe_regex"]["regex"] == ".*a-book.*new"


def _host(value, host: str):
    """`value` with an external host's name (dotted, or with `_` as in an alt stat name) as `{host}`."""
    if isinstance(value, dict):
        return {k: _host(v, host) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_host(v, host) for v in value]
    if not isinstance(value, str):
        return value
    return value.replace(host, "{host}").replace(host.replace(".", "_"), "{host}")


def egress_shape(config: dict, host: str) -> dict:
    """The egress chain for HTTP port 80, its connection manager, route configuration and cluster, `host` templated."""
    outbound = listener(config, "outbound-listener")
    fc = next(c for c in outbound["filter_chains"] if c.get("name") == "egress-http.80")
    manager = hcm(fc)
    rc = next(r for r in config["routes"] if r["name"] == "rds-egress.80")
    [vh] = rc["virtual_hosts"]
    cluster = next(c for c in config["clusters"] if c["name"] == f"{host}:80")
    [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    shape = {
        "chains": [c.get("name", "") for c in outbound["filter_chains"]],
        "match": sorted(fc["filter_chain_match"]),
        "application_protocols": fc["filter_chain_match"]["application_protocols"],
        "filters": filter_names(fc),
        "stat_prefix": manager["stat_prefix"],
        "route_config_name": manager["rds"]["route_config_name"],
        "http_filters": [f["name"] for f in manager["http_filters"] if f["name"] not in WASM_STATS | SINCE_THE_DUMPS],
        "route_config": (rc["name"], rc.get("validate_clusters")),
        "virtual_host": (vh["name"], vh["domains"]),
        "routes": [
            (
                sorted(r["match"]),
                [h["name"] for h in r["match"]["headers"]],
                r["match"]["safe_regex"]["regex"],
                r["route"]["weighted_clusters"],
                r["route"]["timeout"],
                sorted(r.get("typed_per_filter_config", {})),
            )
            for r in vh["routes"]
        ],
        "cluster": (cluster["name"], cluster["type"], cluster.get("alt_stat_name")),
        "circuit_breakers": cluster.get("circuit_breakers"),
        "endpoint": (endpoint["endpoint"]["address"]["socket_address"]["address"], endpoint["load_balancing_weight"]),
    }
    return _host(shape, host)


def test_it_builds_egress_as_osm() -> None:
    """bookbuyer's Egress `bookbuyer-external` (books.example.com, port 80, HTTP) against curl's httpbin.org in
    `curl_egress.json`: the chain after the mesh chains, its connection manager and `rds-egress.80`, the virtual host
    and wildcard route, the STRICT_DNS cluster `<host>:80` with `.`/`:` as `_` in its stat name, OSM's unlimited
    circuit breakers. (The dump's `egress-https.443` chain is HTTPS egress, which the lab leaves out.)"""
    real = egress_shape(dump("curl_egress.json"), "httpbin.org")
    ours = egress_shape(lab("bookbuyer", permissive=True), "books.example.com")
    assert real["chains"] == ["outbound_httpbin/httpbin_14001_http", "egress-http.80", "egress-https.443"]
    assert [c for c in ours["chains"] if c.startswith("egress")] == ["egress-http.80"]
    assert ours["chains"][-1] == "egress-http.80" and all(c.startswith("outbound_") for c in ours["chains"][:-1])
    del real["chains"], ours["chains"]
    assert ours == real
    assert ours["cluster"] == ["{host}:80", "STRICT_DNS", "{host}_80"]
