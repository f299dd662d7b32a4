"""A small mesh with known traffic, backfilled into real Prometheus servers once per test session.

Namespace `shop-1` (a dash, so OSM's WASM mangling shows) and `data`:
- frontend → cart: 10 rps 2xx, 1 rps 4xx, 0.5 rps 5xx; latency buckets with known quantiles; 4000/12000 B/s; 3
  connections; TLS handshakes 0.2/s and failures 0.07/s (two kinds); certificates expiring at 2.0e9 (caller's
  cluster side) and 1.9e9 (cart's listener).
  0.3 rps of its outbound 5xx were answered by the caller's own sidecar (denied).
- frontend → catalog: 5 rps, class 2 only (a 5xx class never seen).
- frontend → idle: counters that do not move (zero traffic).
- frontend → reset: 4 rps with a counter reset inside the KPI window.
- frontend → checkout (a TrafficSplit root): 9 rps to checkout-v1, 1 rps to checkout-v2.
- frontend → secret: every request denied by the caller's sidecar (2 rps of local 5xx, no upstream cluster).
- frontend → data/mysql (headless StatefulSet): the truncated names `data/mysql-0`, `data/mysql-1` with metric names
  `envoy_cluster_mysql_3306_*`: 100 + 50 B/s sent.
- noise that must be ignored: cart's own inbound `...|local` cluster, the `osm-controller` cluster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from lab.metrics_data import OpenMetrics, envoy_edge, piecewise_cdf, sample_times, synthetic_openmetrics

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


def _cluster(name: str) -> str:
    return f"{NS}/{name}|8080"


def _reset_counter(om: OpenMetrics, labels: dict[str, str], rate: float) -> None:
    """A counter at `rate` that restarts from 0 two samples before the end (a sidecar restart)."""
    reset_at = len(TIMES) - 2

    def value(i: int, _t: float) -> float:
        return 5000 + rate * STEP * i if i < reset_at else rate * STEP * (i - reset_at + 1)

    om.series("envoy_cluster_upstream_rq_xx", {**labels, "envoy_response_code_class": "2"}, value)


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
    # Noise: the destination's own inbound cluster and the control plane.
    cart = {**SOURCE, "source_service": "cart", "source_pod_name": "cart-v1-5f-xyz", "source_workload_name": "cart-v1"}
    envoy_edge(om, cart, f"{_cluster('cart')}|local", rps_by_class={"2": 11.5}, bytes_sent=1e6)
    envoy_edge(om, SOURCE, "osm-controller", rps_by_class={"2": 0.1}, bytes_sent=1e6)
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
        prefix = {**SOURCE, "envoy_response_code_class": "5"}
        om.counter("envoy_http_downstream_rq_xx", {**prefix, "envoy_http_conn_manager_prefix": "outbound_cart"}, 0.8)
        om.counter(
            "envoy_http_downstream_rq_xx",
            {**prefix, "envoy_http_conn_manager_prefix": f"outbound_{NS}_secret_8080"},
            2.0,
        )


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
    bare: object  # OSM's keep-list, no WASM


@pytest.fixture(scope="session")
def proms(prometheus_factory) -> Proms:
    byo = OpenMetrics(TIMES)
    envoy_series(byo, latency=True, tls=True, denials=True)
    osm = OpenMetrics(TIMES)
    envoy_series(osm, latency=False, tls=False, denials=False)
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
        TrafficSplit.objects.create(
            cluster=cluster,
            namespace=NS,
            name="checkout-split",
            root_service="checkout",
            backends=[{"service": "checkout-v1", "weight": 90}, {"service": "checkout-v2", "weight": 10}],
        )
        return cluster

    return make
