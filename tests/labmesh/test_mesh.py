"""The lab mesh end to end: real Envoys with mTLS, a real Prometheus, TrafficSplit weights moving real traffic.

One lab for the whole module (Prometheus "byo" mode, 1 s scrapes); each test puts back what it changes.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
import urllib.request

import pytest

from lab.mesh.pytest_plugin import LabStack
from lab.waiting import wait_for

pytestmark = pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s")

SPLIT = ("split.smi-spec.io", "v1alpha2", "bookstore", "trafficsplits", "bookstore-split")
BUYER_TO_BACKENDS = 'source_workload_name="bookbuyer",envoy_cluster_name=~"bookstore/bookstore-v[12]\\\\|14001"'
V1, V2 = "bookstore/bookstore-v1|14001", "bookstore/bookstore-v2|14001"


def set_split(stack: LabStack, v1: int, v2: int) -> None:
    backends = [{"service": "bookstore-v1", "weight": v1}, {"service": "bookstore-v2", "weight": v2}]
    stack.custom_api().patch_namespaced_custom_object(*SPLIT, {"spec": {"backends": backends}})


def observed_split(stack: LabStack, window: str) -> dict[str, float]:
    rows = stack.query(
        f"sum by (envoy_cluster_name) (increase(envoy_cluster_upstream_rq_total{{{BUYER_TO_BACKENDS}}}[{window}]))"
    )
    counts = {r["metric"]["envoy_cluster_name"]: float(r["value"][1]) for r in rows}
    total = sum(counts.values())
    return {name: 100 * n / total for name, n in counts.items()} if total else {}


def config_dump(stack: LabStack, workload: str, resource: str) -> str:
    url = f"{stack.lab.sidecar(workload).admin_url}/config_dump?resource={resource}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def virtual_hosts(stack: LabStack, workload: str, route_name: str) -> dict[str, dict]:
    """The virtual hosts of a sidecar's route configuration, by name ({} when it has no such configuration)."""
    dump = json.loads(config_dump(stack, workload, "dynamic_route_configs"))
    for item in dump.get("configs", []):  # none at all: `{}`
        config = item["route_config"]
        if config["name"] == route_name:
            return {vh["name"]: vh for vh in config.get("virtual_hosts", [])}
    return {}


def outbound_chains(stack: LabStack, workload: str) -> set[str]:
    """The filter chains of a sidecar's active outbound listener (removed ones drain, but are no longer active)."""
    dump = json.loads(config_dump(stack, workload, "dynamic_listeners"))
    for item in dump.get("configs", []):
        active = (item.get("active_state") or {}).get("listener") or {}
        if active.get("name") == "outbound-listener":
            return {fc["name"] for fc in active.get("filter_chains", [])}
    return set()


def wait_for_route(stack: LabStack, workload: str, service: str, present: bool, timeout: float) -> float:
    """Seconds until the sidecar has (or no longer has) a route to `service` (`<ns>/<svc>`, port 14001): its
    outbound filter chain and, when present, its virtual host in `rds-outbound.14001`."""
    start = time.monotonic()
    ns, name = service.split("/")
    chain, host = f"outbound_{service}_14001_http", f"outbound_virtual-host|{name}.{ns}.svc.cluster.local"

    def done() -> bool:
        if not present:
            return chain not in outbound_chains(stack, workload)
        return chain in outbound_chains(stack, workload) and host in virtual_hosts(
            stack, workload, "rds-outbound.14001"
        )

    wait_for(done, timeout=timeout, interval=0.02)
    return time.monotonic() - start


def stat(stack: LabStack, workload: str, name: str) -> float:
    """One stat of a sidecar, from its admin port."""
    with urllib.request.urlopen(f"{stack.lab.sidecar(workload).admin_url}/stats?format=json", timeout=5) as r:
        stats = {s["name"]: s.get("value") for s in json.loads(r.read())["stats"] if "name" in s}
    return stats.get(name, 0)


def test_it_moves_real_traffic_when_the_split_is_patched(lab_stack: LabStack) -> None:
    try:
        set_split(lab_stack, 50, 50)
        share = wait_for(
            lambda: (s := observed_split(lab_stack, "10s")) and all(40 <= s.get(c, 0) <= 60 for c in (V1, V2)) and s,
            timeout=30,
        )
        assert share[V1] + share[V2] == pytest.approx(100)

        set_split(lab_stack, 0, 100)
        share = wait_for(lambda: (s := observed_split(lab_stack, "5s")) and s.get(V1, 0) < 2 and s, timeout=30)
        assert share[V2] > 98
        # the generator agrees: v2 (the canary, 5 % errors by default) answered, the sidecar did not refuse
        assert "bookstore-v2" in lab_stack.lab.traffic()["bookbuyer -> bookstore/bookstore"]["by_backend"]
    finally:
        set_split(lab_stack, 100, 0)


def test_it_gives_bookthief_no_route_and_bookstore_refuses_what_is_passed_through(lab_stack: LabStack) -> None:
    """SMI mode, no TrafficTarget for bookthief: as OSM 1.2 with egress enabled, bookthief's sidecar has no route to
    bookstore and passes the connection through; bookstore's sidecar refuses it (no mTLS), and counts it there."""
    refused = (
        'sum(increase(envoy_listener_no_filter_chain_match{source_workload_name="bookstore",'
        'envoy_listener_address="0.0.0.0_15003"}[10s]))'
    )
    found = wait_for(lambda: (r := lab_stack.query(refused)) and float(r[0]["value"][1]) > 0 and r, 20)
    assert float(found[0]["value"][1]) > 0
    thief = lab_stack.lab.traffic()["bookthief -> bookstore/bookstore"]
    assert thief["by_backend"] == {} and thief["errors"] == thief["requests"] > 0, "no HTTP answer at all"
    clusters = config_dump(lab_stack, "bookthief", "dynamic_active_clusters")
    assert "bookstore/bookstore" not in clusters and "passthrough-outbound" in clusters
    assert "outbound_bookstore/bookstore_14001_http" not in config_dump(lab_stack, "bookthief", "dynamic_listeners")
    assert stat(lab_stack, "bookthief", "cluster.passthrough-outbound.upstream_cx_total") > 0


def _tls_get(stack: LabStack, server: str, sni: str, client: str | None, path: str, headers: dict) -> int | None:
    ctx = ssl.create_default_context(cafile=str(stack.lab.ca_path))
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["osm"])  # as a mesh sidecar does; the inbound chains match on it
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the server's refusal then surfaces in the handshake itself
    if client is not None:
        files = stack.lab.cert_files(client)
        ctx.load_cert_chain(str(files.cert), str(files.key))
    port = stack.lab.sidecar(server).ports.inbound
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as s,
    ):
        lines = [
            f"GET {path} HTTP/1.1",
            "host: bookstore",
            "connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := s.recv(4096):
                data += chunk
    return int(data.split(b" ", 2)[1]) if data else None  # None: closed without an HTTP answer


def test_it_fails_the_handshake_without_a_client_certificate(lab_stack: LabStack) -> None:
    sni = "bookstore-v1.bookstore.svc.cluster.local"
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _tls_get(lab_stack, "bookstore", sni, None, "/buy-a-book/new", {})
    assert stat(lab_stack, "bookstore", "listener.0.0.0.0_15003.ssl.fail_verify_no_cert") >= 1  # as on a pod


def test_it_admits_only_the_identities_and_routes_traffic_targets_allow(lab_stack: LabStack) -> None:
    sni = "bookstore-v1.bookstore.svc.cluster.local"
    ua = {"user-agent": "bookbuyer-http-client/1.0"}
    denied_before = stat(lab_stack, "bookstore", "network-.rbac.denied")
    assert _tls_get(lab_stack, "bookstore", sni, "bookbuyer", "/buy-a-book/new", ua) == 200
    assert _tls_get(lab_stack, "bookstore", sni, "bookbuyer", "/books-bought", {**ua, "client-app": "bookbuyer"}) == 200
    # a route the HTTPRouteGroup does not list has no route at all (OSM builds inbound routes from the matches)
    assert _tls_get(lab_stack, "bookstore", sni, "bookbuyer", "/admin", ua) == 404
    # an identity no TrafficTarget names: the network RBAC filter closes the connection
    assert _tls_get(lab_stack, "bookstore", sni, "bookthief", "/buy-a-book/new", ua) is None
    assert stat(lab_stack, "bookstore", "network-.rbac.denied") > denied_before


def test_it_refuses_a_route_a_traffic_target_does_not_give_the_caller(lab_stack: LabStack) -> None:
    """A TrafficTarget lets bookthief reach bookstore on /books-bought only: bookthief's sidecar now routes to
    bookstore, and bookstore's per-route RBAC refuses its /buy-a-book/new (403), counted on its inbound connection
    manager."""
    api = lab_stack.custom_api()
    tt = ("access.smi-spec.io", "v1alpha3", "bookstore", "traffictargets")
    body = {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": "bookthief-books-bought", "namespace": "bookstore"},
        "spec": {
            "destination": {"kind": "ServiceAccount", "name": "bookstore", "namespace": "bookstore"},
            "rules": [{"kind": "HTTPRouteGroup", "name": "bookstore-service-routes", "matches": ["books-bought"]}],
            "sources": [{"kind": "ServiceAccount", "name": "bookthief", "namespace": "bookthief"}],
        },
    }
    denied = 'sum(envoy_http_rds_inbound_14001_rbac_denied{source_workload_name="bookstore"})'
    before = sum(float(r["value"][1]) for r in lab_stack.query(denied))
    api.create_namespaced_custom_object(*tt, body)
    try:
        assert wait_for_route(lab_stack, "bookthief", "bookstore/bookstore", True, 5) < 1
        client = "bookthief -> bookstore/bookstore"
        wait_for(lambda: lab_stack.lab.traffic()[client]["by_backend"].get("-", {}).get("403", 0) > 0, timeout=10)
        assert "200" not in lab_stack.lab.traffic()[client]["by_backend"].get("bookstore", {})
        wait_for(lambda: sum(float(r["value"][1]) for r in lab_stack.query(denied)) > before, timeout=10)
    finally:
        api.delete_namespaced_custom_object(*tt, "bookthief-books-bought")
    assert wait_for_route(lab_stack, "bookthief", "bookstore/bookstore", False, 5) < 1


def test_it_applies_a_traffic_target_change_within_a_second(lab_stack: LabStack) -> None:
    api = lab_stack.custom_api()
    tt = ("access.smi-spec.io", "v1alpha3", "bookstore", "traffictargets", "bookstore")
    sources = api.get_namespaced_custom_object(*tt)["spec"]["sources"]
    before = lab_stack.lab.traffic()["bookthief -> bookstore/bookstore"]["by_backend"].get("bookstore", {})
    try:
        api.patch_namespaced_custom_object(
            *tt,
            {
                "spec": {
                    "sources": [*sources, {"kind": "ServiceAccount", "name": "bookthief", "namespace": "bookthief"}]
                }
            },
        )
        assert wait_for_route(lab_stack, "bookthief", "bookstore/bookstore", True, 5) < 1
        wait_for(
            lambda: (
                lab_stack.lab.traffic()["bookthief -> bookstore/bookstore"]["by_backend"]
                .get("bookstore", {})
                .get("200", 0)
                > before.get("200", 0)
            ),
            timeout=10,
        )
    finally:
        api.patch_namespaced_custom_object(*tt, {"spec": {"sources": sources}})
    assert wait_for_route(lab_stack, "bookthief", "bookstore/bookstore", False, 5) < 1


def test_it_admits_every_meshed_identity_in_permissive_mode(lab_stack: LabStack) -> None:
    api = lab_stack.custom_api()
    mc = ("config.openservicemesh.io", "v1alpha2", "osm-system", "meshconfigs", "osm-mesh-config")
    client = "bookstore-v2 -> bookwarehouse/bookwarehouse"
    assert not outbound_chains(lab_stack, "bookstore-v2"), "SMI mode: no TrafficTarget for v2"
    try:
        api.patch_namespaced_custom_object(*mc, {"spec": {"traffic": {"enablePermissiveTrafficPolicyMode": True}}})
        assert wait_for_route(lab_stack, "bookstore-v2", "bookwarehouse/bookwarehouse", True, 5) < 1.0
        wait_for(lambda: lab_stack.lab.traffic()[client]["by_backend"].get("bookwarehouse", {}).get("200", 0) > 0, 10)
        assert lab_stack.lab.policy.permissive
    finally:
        api.patch_namespaced_custom_object(*mc, {"spec": {"traffic": {"enablePermissiveTrafficPolicyMode": False}}})
    assert wait_for_route(lab_stack, "bookstore-v2", "bookwarehouse/bookwarehouse", False, 5) < 1.0


def test_it_keeps_latency_histograms_in_byo_mode_and_drops_them_in_osm_mode(lab_stack: LabStack) -> None:
    histogram = 'count(envoy_cluster_upstream_rq_time_bucket{source_workload_name="bookbuyer"})'
    assert wait_for(lambda: lab_stack.query(histogram), timeout=10)
    try:
        lab_stack.lab.set_prometheus_mode("osm")
        dropped = (
            "count(envoy_cluster_upstream_rq_time_bucket) or count(envoy_http_downstream_rq_xx)"
            " or count(envoy_listener_no_filter_chain_match) or count(envoy_rbac_denied)"
        )
        wait_for(lambda: not lab_stack.query(dropped), timeout=15)
        assert lab_stack.query('count(envoy_cluster_upstream_rq_total{source_workload_name="bookbuyer"})')
    finally:
        lab_stack.lab.set_prometheus_mode("byo")
    assert wait_for(lambda: lab_stack.query(histogram), timeout=15)


def test_it_labels_targets_as_osm_relabeling_does(lab_stack: LabStack) -> None:
    rows = lab_stack.query("envoy_server_live")
    labels = {r["metric"]["source_pod_name"]: r["metric"] for r in rows}
    assert len(labels) == 6
    mysql = labels["mysql-0"]
    assert (mysql["source_namespace"], mysql["source_service"]) == ("bookwarehouse", "mysql")
    assert (mysql["source_workload_kind"], mysql["source_workload_name"]) == ("StatefulSet", "mysql")
    v2 = next(m for pod, m in labels.items() if pod.startswith("bookstore-v2-"))
    assert (v2["source_service"], v2["source_workload_kind"], v2["source_workload_name"]) == (
        "bookstore",
        "Deployment",
        "bookstore-v2",
    )
    assert not any((k.startswith("__") and k != "__name__") or k == "version" for m in labels.values() for k in m)
    # the headless StatefulSet's dotted cluster name comes out truncated, as on a real OSM sidecar
    tcp = wait_for(
        lambda: lab_stack.query('envoy_cluster_mysql_3306_upstream_cx_total{source_workload_name="bookwarehouse"}'), 10
    )
    assert tcp[0]["metric"]["envoy_cluster_name"] == "bookwarehouse/mysql-0"
