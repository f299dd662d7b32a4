"""A small mesh with known traffic, backfilled into real Prometheus servers once per test session.

Namespace `shop-1` (a dash, so OSM's WASM mangling shows) and `data`:
- frontend → cart: 10 rps 2xx, 1 rps 4xx, 0.5 rps 5xx; latency buckets with known quantiles; 4000/12000 B/s; 3
  connections; TLS handshakes 0.2/s and failures 0.07/s (two kinds); certificates expiring at 2.0e9 (caller's
  cluster side) and 1.9e9 (cart's listener).
- frontend → catalog: 5 rps, class 2 only (a 5xx class never seen).
- frontend → idle: counters that do not move (zero traffic).
- frontend → reset: 4 rps with a counter reset inside the KPI window.
- frontend → checkout (a TrafficSplit root): 9 rps to checkout-v1, 1 rps to checkout-v2.
- frontend → secret: denied by SMI policy, so frontend's sidecar has no cluster for it.
- frontend → data/mysql (headless StatefulSet): the truncated names `data/mysql-0`, `data/mysql-1` with metric names
  `envoy_cluster_mysql_3306_*`: 100 + 50 B/s sent.
- noise that must be ignored: cart's own inbound `...|local` cluster, the `osm-controller`, `envoy-metrics-cluster`
  and `passthrough-outbound` clusters; the connection managers, as OSM v1.2 names them (one per port, shared by every
  destination: `envoy_http_rds_outbound_8080_*{envoy_http_conn_manager_prefix="mesh-http-conn-manager"}`, inbound
  likewise), and the prometheus listener's `prometheus-http-conn-manager`.
- refusals, each counted by one side only, as OSM v1.2 sidecars count them (REFUSALS): frontend's outbound listener
  refused 2 connections/s it had no route for; secret's inbound listener refused 1.5/s that came in without mTLS;
  cart's network RBAC refused 0.2/s and its per-route RBAC 0.3/s on port 8080 plus 0.1/s on port 9090; catalog's
  network RBAC 0.4/s under an older Envoy's name. Every other listener counts 0.
- resilience (RESILIENCE), in every Prometheus: frontend's sidecar retried 0.3/s to cart, 0.2/s to checkout-v1 and
  0.1/s to checkout-v2, 0.05/s to data/mysql-0 (truncated name), none to catalog; it overflowed cart's pending queue
  0.05/s. Noise: cart's `|local` cluster's retries, `upstream_rq_retry_success`/`_overflow`. Only the user's own
  Prometheus (`byo`) keeps the local rate limit (OSM's keep-list drops it): cart's pod rate-limited 0.4/s and
  checkout-v1's pod 0.25/s under OSM's stat prefix `http_local_rate_limiter`; another prefix and the `_ok` count are
  noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from lab.metrics_data import (
    INBOUND_LISTENER,
    OUTBOUND_LISTENER,
    OpenMetrics,
    connection_manager,
    envoy_edge,
    network_rbac,
    no_filter_chain_match,
    piecewise_cdf,
    route_rbac,
    sample_times,
    synthetic_openmetrics,
)

NS = "shop-1"
STEP = 15.0
# Far enough in the past that nothing is in Prometheus's head block; inside its retention.
T0 = (int(time.time()) // 3600 - 3) * 3600
AT = T0 + 1800.0  # evaluation time of every KPI test: the last sample
TIMES = sample_times(T0, AT, STEP)
SOURCE = {
    "source_namespace": NS,
    "source_service": "frontend",
    "source_pod_name": "frontend-7d9c-abcde",
    "source_workload_kind": "Deployment",
    "source_workload_name": "frontend",
}
CART_CDF = piecewise_cdf([(5, 0.2), (10, 0.5), (25, 0.9), (50, 1.0)])  # p50 = 10, p95 = 37.5, p99 = 47.5 ms
CLUSTER_CERT_EXPIRY = 2_000_000_000.0
LISTENER_CERT_EXPIRY = 1_900_000_000.0
# Refusals/s by the side that counted them and its (namespace, app), as the collector should report them.
REFUSALS = {
    "caller": {(NS, "frontend"): 2.0},
    "destination": {(NS, "secret"): 1.5, (NS, "cart"): 0.6, (NS, "catalog"): 0.4},
}
# Requests/s per service: (rate-limited by its pods' sidecars, retried by callers, pending overflow at callers).
# checkout is the split root: its pods include checkout-v1's, and its callers' retries go to its backends' clusters.
RESILIENCE = {
    (NS, "cart"): (0.4, 0.3, 0.05),
    (NS, "catalog"): (0.0, 0.0, 0.0),
    (NS, "checkout"): (0.25, 0.3, 0.0),
    (NS, "checkout-v1"): (0.25, 0.2, 0.0),
    (NS, "checkout-v2"): (0.0, 0.1, 0.0),
    (NS, "quiet"): (0.0, 0.0, 0.0),  # meshed, no caller: a measured zero
    ("data", "mysql"): (0.0, 0.05, 0.0),
    (NS, "legacy"): (None, None, None),  # no sidecar
}


def pod_labels(app: str, pod_name: str, workload: str | None = None) -> dict[str, str]:
    """The labels OSM's relabeling gives a sidecar's series in namespace NS."""
    return {
        "source_namespace": NS,
        "source_service": app,
        "source_pod_name": pod_name,
        "source_workload_kind": "Deployment",
        "source_workload_name": workload or app,
    }


def _cluster(name: str) -> str:
    return f"{NS}/{name}|8080"


def _reset_counter(om: OpenMetrics, labels: dict[str, str], rate: float) -> None:
    """A counter at `rate` that restarts from 0 two samples before the end (a sidecar restart)."""
    reset_at = len(TIMES) - 2

    def value(i: int, _t: float) -> float:
        return 5000 + rate * STEP * i if i < reset_at else rate * STEP * (i - reset_at + 1)

    om.series("envoy_cluster_upstream_rq_xx", {**labels, "envoy_response_code_class": "2"}, value)


def resilience_series(om: OpenMetrics, *, rate_limits: bool) -> None:
    """Retries and pending overflow on frontend's clusters; with `rate_limits`, the destinations' local rate limits."""
    for dest, retry, overflow in (("cart", 0.3, 0.05), ("catalog", 0.0, 0.0), ("checkout-v1", 0.2, 0.0),
                                  ("checkout-v2", 0.1, 0.0)):  # fmt: skip
        labels = {**SOURCE, "envoy_cluster_name": _cluster(dest)}
        om.counter("envoy_cluster_upstream_rq_retry", labels, retry)
        om.counter("envoy_cluster_upstream_rq_pending_overflow", labels, overflow)
    om.counter("envoy_cluster_mysql_3306_upstream_rq_retry", {**SOURCE, "envoy_cluster_name": "data/mysql-0"}, 0.05)
    cart = pod_labels("cart", "cart-v1-5f-xyz", "cart-v1")
    om.counter("envoy_cluster_upstream_rq_retry", {**cart, "envoy_cluster_name": f"{_cluster('cart')}|local"}, 5.0)
    om.counter("envoy_cluster_upstream_rq_retry_success", {**SOURCE, "envoy_cluster_name": _cluster("cart")}, 0.3)
    om.counter("envoy_cluster_upstream_rq_retry_overflow", {**SOURCE, "envoy_cluster_name": _cluster("cart")}, 1.0)
    if not rate_limits:
        return
    checkout = pod_labels("checkout", "checkout-v1-1", "checkout-v1")
    for pod, rate in ((cart, 0.4), (checkout, 0.25), (pod_labels("quiet", "quiet-1"), 0.0)):
        prefix = {"envoy_local_http_ratelimit_prefix": "http_local_rate_limiter"}
        om.counter("envoy_http_local_rate_limit_rate_limited", {**pod, **prefix}, rate)
        om.counter("envoy_http_local_rate_limit_ok", {**pod, **prefix}, 7.0)
    om.counter("envoy_http_local_rate_limit_rate_limited", {**cart, "envoy_local_http_ratelimit_prefix": "other"}, 9.0)


def envoy_series(om: OpenMetrics, *, latency: bool, tls: bool, denials: bool) -> None:
    extra = {"tls_handshakes": 0.2, "cert_expiry": CLUSTER_CERT_EXPIRY} if tls else {}
    envoy_edge(
        om,
        SOURCE,
        _cluster("cart"),
        rps_by_class={"2": 10.0, "4": 1.0, "5": 0.5},
        cdf=CART_CDF if latency else None,
        bytes_sent=4000.0,
        bytes_received=12000.0,
        connections=3.0,
        **extra,
    )
    envoy_edge(om, SOURCE, _cluster("catalog"), rps_by_class={"2": 5.0}, cdf=CART_CDF if latency else None)
    envoy_edge(om, SOURCE, _cluster("idle"), rps_by_class={"2": 0.0, "5": 0.0}, connections=0.0)
    envoy_edge(om, SOURCE, _cluster("reset"), rps_by_class={}, connections=1.0)
    _reset_counter(om, {**SOURCE, "envoy_cluster_name": _cluster("reset")}, 4.0)
    envoy_edge(om, SOURCE, _cluster("checkout-v1"), rps_by_class={"2": 9.0})
    envoy_edge(om, SOURCE, _cluster("checkout-v2"), rps_by_class={"2": 1.0})
    for pod, rate in (("mysql-0", 100.0), ("mysql-1", 50.0)):
        envoy_edge(om, SOURCE, f"data/{pod}", rps_by_class={}, bytes_sent=rate, stat_prefix="mysql_3306_")
    # Noise: the destination's own inbound cluster, the control plane, the metrics path, egress; connection managers.
    cart = pod_labels("cart", "cart-v1-5f-xyz", "cart-v1")
    envoy_edge(om, cart, f"{_cluster('cart')}|local", rps_by_class={"2": 11.5}, bytes_sent=1e6)
    envoy_edge(om, SOURCE, "osm-controller", rps_by_class={"2": 0.1}, bytes_sent=1e6)
    envoy_edge(om, SOURCE, "envoy-metrics-cluster", rps_by_class={"2": 0.1}, bytes_sent=1e6)
    envoy_edge(om, SOURCE, "passthrough-outbound", rps_by_class={}, bytes_sent=700.0)
    connection_manager(om, SOURCE, "outbound", 8080, {"2": 34.0, "4": 1.0, "5": 0.5})
    connection_manager(om, cart, "inbound", 8080, {"2": 10.0, "4": 1.3, "5": 0.5})
    om.counter(
        "envoy_http_downstream_rq_xx",
        {**SOURCE, "envoy_http_conn_manager_prefix": "prometheus-http-conn-manager", "envoy_response_code_class": "2"},
        0.1,
    )
    if tls:
        # Two kinds of TLS failure on the same edge: they must add up, not collide once rate() drops their names.
        for stat, rate in (("ssl_connection_error", 0.05), ("ssl_fail_verify_san", 0.02)):
            om.counter(f"envoy_cluster_{stat}", {**SOURCE, "envoy_cluster_name": _cluster("cart")}, rate)
        om.gauge(
            "envoy_listener_ssl_certificate_expiration_unix_time_seconds",
            {**cart, "envoy_listener_address": "0.0.0.0_15003", "envoy_tls_certificate": "unnamed_cert"},
            LISTENER_CERT_EXPIRY,
        )
    if denials:
        no_filter_chain_match(om, SOURCE, OUTBOUND_LISTENER, 2.0)
        no_filter_chain_match(om, SOURCE, INBOUND_LISTENER, 0.0)
        secret = pod_labels("secret", "secret-1")
        no_filter_chain_match(om, secret, INBOUND_LISTENER, 1.5)
        no_filter_chain_match(om, secret, OUTBOUND_LISTENER, 0.0)
        network_rbac(om, secret, denied=0.0, allowed=0.0)
        no_filter_chain_match(om, cart, INBOUND_LISTENER, 0.0)
        network_rbac(om, cart, denied=0.2, allowed=3.0)
        route_rbac(om, cart, 8080, denied=0.3, allowed=11.5)
        route_rbac(om, cart, 9090, denied=0.1)  # a second HTTP port on the same pod: same labels but for the name
        network_rbac(om, pod_labels("catalog", "catalog-1"), denied=0.4, old=True)


def wasm_series(om: OpenMetrics) -> None:
    """OSM's WASM latency for frontend → cart: labels are workloads, `-` and `.` turned into `_`."""
    labels = {
        "source_namespace": "shop_1",
        "source_kind": "Deployment",
        "source_name": "frontend",
        "source_pod": "frontend_7d9c_abcde",
        "destination_namespace": "shop_1",
        "destination_kind": "Deployment",
        "destination_name": "cart_v1",
        "destination_pod": "cart_v1_5f_xyz",
    }
    om.histogram("osm_request_duration_ms", labels, 11.5, CART_CDF)


@dataclass
class Proms:
    byo: object  # Envoy latency, TLS and denials kept (a user's own Prometheus)
    osm: object  # OSM's keep-list + WASM latency
    bare: object  # OSM's keep-list, no WASM, and no resilience series at all (the absent-series case)


@pytest.fixture(scope="session")
def proms(prometheus_factory) -> Proms:
    byo = OpenMetrics(TIMES)
    envoy_series(byo, latency=True, tls=True, denials=True)
    resilience_series(byo, rate_limits=True)
    osm = OpenMetrics(TIMES)
    envoy_series(osm, latency=False, tls=False, denials=False)
    resilience_series(osm, rate_limits=False)
    wasm_series(osm)
    bare = OpenMetrics(TIMES)
    envoy_series(bare, latency=False, tls=False, denials=False)
    return Proms(
        byo=prometheus_factory(byo.text(), name="byo"),
        osm=prometheus_factory(osm.text(), name="osm"),
        bare=prometheus_factory(bare.text(), name="bare"),
    )


# Sizes of the synthetic mesh (`lab.synthetic.generate`, seed 7) held by `synthetic_proms`.
SYNTHETIC_SIZES = (5, 50)


@pytest.fixture(scope="session")
def synthetic_proms(prometheus_factory) -> dict[int, object]:
    """Per size in SYNTHETIC_SIZES, a real Prometheus holding the synthetic mesh's Envoy series over TIMES (the
    stand-in's `synthetic` seed of the same size has the matching objects)."""
    servers = {}
    for services in SYNTHETIC_SIZES:
        [(text, _series)] = synthetic_openmetrics(services, 7, TIMES)
        servers[services] = prometheus_factory(text, name=f"synthetic-{services}")
    return servers


@pytest.fixture
def snapshot_cluster(db):
    """A cluster whose snapshot tables hold the services, pods, workloads and split of the data above."""
    from apps.clusters.models import Cluster
    from apps.mesh.models import Pod, Service, TrafficSplit, Workload

    def make(prometheus_url: str = "", name: str = "lab", **fields):
        cluster = Cluster.objects.create(name=name, kubeconfig_path="unused", prometheus_url=prometheus_url, **fields)
        services = {
            (NS, "frontend"): {"app": "frontend"},
            (NS, "cart"): {"app": "cart"},
            (NS, "catalog"): {"app": "catalog"},
            (NS, "idle"): {"app": "idle"},
            (NS, "reset"): {"app": "reset"},
            (NS, "checkout"): {"app": "checkout"},
            (NS, "checkout-v1"): {"app": "checkout", "version": "v1"},
            (NS, "checkout-v2"): {"app": "checkout", "version": "v2"},
            (NS, "secret"): {"app": "secret"},
            (NS, "quiet"): {"app": "quiet"},
            (NS, "legacy"): {"app": "legacy"},
            ("data", "mysql"): {"app": "mysql"},
        }
        for (ns, name_), selector in services.items():
            Service.objects.create(
                cluster=cluster, namespace=ns, name=name_, selector=selector, headless=name_ == "mysql"
            )
        pods = [
            (NS, "frontend-7d9c-abcde", {"app": "frontend"}, True),
            (NS, "cart-v1-5f-xyz", {"app": "cart"}, True),
            (NS, "catalog-1", {"app": "catalog"}, True),
            (NS, "idle-1", {"app": "idle"}, True),
            (NS, "reset-1", {"app": "reset"}, True),
            (NS, "checkout-v1-1", {"app": "checkout", "version": "v1"}, True),
            (NS, "checkout-v2-1", {"app": "checkout", "version": "v2"}, True),
            (NS, "secret-1", {"app": "secret"}, True),
            (NS, "quiet-1", {"app": "quiet"}, True),
            (NS, "legacy-1", {"app": "legacy"}, False),
            ("data", "mysql-0", {"app": "mysql"}, True),
            ("data", "mysql-1", {"app": "mysql"}, True),
        ]
        for ns, pod, labels, sidecar in pods:
            Pod.objects.create(cluster=cluster, namespace=ns, name=pod, labels=labels, has_sidecar=sidecar)
        Workload.objects.create(
            cluster=cluster, namespace=NS, kind="Deployment", name="cart-v1", template_labels={"app": "cart"}
        )
        Workload.objects.create(
            cluster=cluster, namespace=NS, kind="Deployment", name="frontend", template_labels={"app": "frontend"}
        )
        Workload.objects.create(
            cluster=cluster,
            namespace=NS,
            kind="Deployment",
            name="checkout-v1",
            template_labels={"app": "checkout", "version": "v1"},
        )
        TrafficSplit.objects.create(
            cluster=cluster,
            namespace=NS,
            name="checkout-split",
            root_service="checkout",
            backends=[{"service": "checkout-v1", "weight": 90}, {"service": "checkout-v2", "weight": 10}],
        )
        return cluster

    return make
