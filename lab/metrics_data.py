"""OpenMetrics text with known Envoy/OSM series, for backfilling a real Prometheus (`lab.prometheus`).

Counters are exact lines (value = start + rate x elapsed), so `rate()` over any window returns the rate given here;
histograms are cumulative bucket counters whose rates are `rps x CDF(le)`. `synthetic_openmetrics` turns the
deterministic synthetic mesh (`lab.synthetic.generate`, the same model as the stand-in's `synthetic` seed) into the
series a Prometheus scraping its sidecars would hold, so names line up with the stand-in's objects.

Names are what OSM v1.2 sidecars emit (checked against the lab's real Envoys, tests/labmesh): cluster stats by
`envoy_cluster_name` `<ns>/<svc>|<port>`; one HTTP connection manager per port, `mesh-http-conn-manager.rds-outbound.
<port>` (`rds-inbound.<port>` on the destination), which Envoy's tag extraction turns into
`envoy_http_rds_outbound_<port>_*{envoy_http_conn_manager_prefix="mesh-http-conn-manager"}`; listeners by address,
`0.0.0.0_15001` (outbound) and `0.0.0.0_15003` (inbound); the network RBAC filter's prefix `network-`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

# Envoy's default histogram buckets (ms), lab-mesh.md §5.
ENVOY_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
                 1800000, 3600000)  # fmt: skip


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels.items()
    )
    return "{" + inner + "}"


def _num(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass
class OpenMetrics:
    """Collects series; `text()` gives the OpenMetrics document (families grouped, `# EOF` at the end)."""

    times: list[float]
    families: dict[str, list[str]] = field(default_factory=dict)

    def series(self, name: str, labels: dict[str, str], value_at: Callable[[int, float], float]) -> None:
        """One series; `value_at(i, t)` gives the value of the i-th sample at unix time t."""
        lab = _labels(labels)
        lines = self.families.setdefault(name, [])
        lines.extend(f"{name}{lab} {_num(value_at(i, t))} {_num(t)}" for i, t in enumerate(self.times))

    def counter(self, name: str, labels: dict[str, str], rate: float, *, start: float = 1000.0) -> None:
        """A counter growing at `rate`/s from `start`."""
        t0 = self.times[0]
        self.series(name, labels, lambda _i, t: start + rate * (t - t0))

    def gauge(self, name: str, labels: dict[str, str], value: float) -> None:
        self.series(name, labels, lambda _i, _t: value)

    def histogram(
        self, name: str, labels: dict[str, str], rps: float, cdf: Callable[[float], float], buckets=ENVOY_BUCKETS
    ) -> None:
        """`<name>_bucket` counters for `rps` observations/s distributed by `cdf(le)`, plus `_count`."""
        for le in buckets:
            self.counter(f"{name}_bucket", {**labels, "le": _num(le)}, rps * cdf(le), start=0.0)
        self.counter(f"{name}_bucket", {**labels, "le": "+Inf"}, rps, start=0.0)
        self.counter(f"{name}_count", labels, rps, start=0.0)

    def text(self) -> str:
        return "".join("\n".join(lines) + "\n" for lines in self.families.values()) + "# EOF\n"

    @property
    def series_count(self) -> int:
        return sum(len(lines) for lines in self.families.values()) // max(1, len(self.times))

    def clear(self) -> None:
        self.families.clear()


def sample_times(start: float, end: float, step: float) -> list[float]:
    n = int((end - start) // step)
    return [start + i * step for i in range(n + 1)]


def piecewise_cdf(points: Iterable[tuple[float, float]]) -> Callable[[float], float]:
    """CDF through (latency_ms, fraction) points, linear between them, 0 at 0 and 1 after the last."""
    pts = [(0.0, 0.0), *sorted(points)]

    def cdf(x: float) -> float:
        if x >= pts[-1][0]:
            return pts[-1][1]
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            if x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
        return 1.0

    return cdf


def latency_cdf(p50: float, p95: float, p99: float) -> Callable[[float], float]:
    return piecewise_cdf([(p50, 0.5), (p95, 0.95), (p99, 0.99), (p99 * 2, 1.0)])


def envoy_edge(
    om: OpenMetrics,
    source: dict[str, str],
    cluster_name: str,
    *,
    rps_by_class: dict[str, float],
    cdf: Callable[[float], float] | None = None,
    bytes_sent: float = 0.0,
    bytes_received: float = 0.0,
    connections: float = 1.0,
    stat_prefix: str = "",
    tls_handshakes: float | None = None,
    cert_expiry: float | None = None,
    total: bool = True,
) -> None:
    """The caller sidecar's cluster stats for one destination cluster. `stat_prefix` (e.g. `mysql_3306_`) imitates a
    dotted cluster name cut by Envoy's tag extraction: the metric names gain it and `cluster_name` is the cut label."""
    labels = {**source, "envoy_cluster_name": cluster_name}
    m = f"envoy_cluster_{stat_prefix}"
    for cls, rate in rps_by_class.items():
        om.counter(f"{m}upstream_rq_xx", {**labels, "envoy_response_code_class": cls}, rate)
    if total and rps_by_class:
        om.counter(f"{m}upstream_rq_total", labels, sum(rps_by_class.values()))
    om.counter(f"{m}upstream_cx_tx_bytes_total", labels, bytes_sent)
    om.counter(f"{m}upstream_cx_rx_bytes_total", labels, bytes_received)
    om.gauge(f"{m}upstream_cx_active", labels, connections)
    if cdf is not None:
        om.histogram(f"{m}upstream_rq_time", labels, sum(rps_by_class.values()), cdf)
    if tls_handshakes is not None:
        om.counter(f"{m}ssl_handshake", labels, tls_handshakes)
    if cert_expiry is not None:
        om.gauge(f"{m}ssl_certificate_expiration_unix_time_seconds", labels, cert_expiry)


MESH_HCM = "mesh-http-conn-manager"
OUTBOUND_LISTENER = "0.0.0.0_15001"
INBOUND_LISTENER = "0.0.0.0_15003"
PASSTHROUGH_CLUSTER = "passthrough-outbound"


def connection_manager(
    om: OpenMetrics, pod: dict[str, str], direction: str, port: int, rps_by_class: dict[str, float]
) -> None:
    """A sidecar's shared HTTP connection manager for one port (`direction` "outbound" or "inbound"): every
    destination (or, inbound, every caller) on that port adds up here; Envoy's tag extraction cuts the stat prefix
    `mesh-http-conn-manager.rds-<direction>.<port>` at its first dot."""
    labels = {**pod, "envoy_http_conn_manager_prefix": MESH_HCM}
    name = f"envoy_http_rds_{direction}_{port}_downstream_rq"
    for cls in "12345":  # zero-filled classes, as Envoy's downstream_rq_xx are
        om.counter(f"{name}_xx", {**labels, "envoy_response_code_class": cls}, rps_by_class.get(cls, 0.0))
    om.counter(f"{name}_total", labels, sum(rps_by_class.values()))


def route_rbac(om: OpenMetrics, pod: dict[str, str], port: int, *, denied: float, allowed: float = 0.0) -> None:
    """Requests/s the destination's per-route RBAC refused and admitted on its inbound connection manager of `port`."""
    labels = {**pod, "envoy_http_conn_manager_prefix": MESH_HCM}
    om.counter(f"envoy_http_rds_inbound_{port}_rbac_denied", labels, denied)
    om.counter(f"envoy_http_rds_inbound_{port}_rbac_allowed", labels, allowed)


def network_rbac(
    om: OpenMetrics, pod: dict[str, str], *, denied: float, allowed: float = 0.0, old: bool = False
) -> None:
    """Connections/s the destination's network RBAC filter (`network-`) refused and admitted; `old`: as an Envoy
    without the RBAC tag extractors (OSM 1.2's own 1.19) names them, `envoy_network_rbac_*`."""
    for stat, rate in (("denied", denied), ("allowed", allowed)):
        if old:
            om.counter(f"envoy_network_rbac_{stat}", pod, rate)
        else:
            om.counter(f"envoy_rbac_{stat}", {**pod, "envoy_rbac_prefix": "network-"}, rate)


def no_filter_chain_match(om: OpenMetrics, pod: dict[str, str], listener: str, rate: float) -> None:
    """Connections/s a listener (`OUTBOUND_LISTENER` or `INBOUND_LISTENER`) had no filter chain for: refused."""
    om.counter("envoy_listener_no_filter_chain_match", {**pod, "envoy_listener_address": listener}, rate)


def synthetic_openmetrics(
    services: int, random_seed: int, times: list[float], *, chunk_series: int = 0
) -> Iterator[tuple[str, int]]:
    """The synthetic mesh's Envoy series (classes 2 and 5, Envoy's default latency buckets, one source pod per
    workload), as OpenMetrics documents of about `chunk_series` series each (0: one document). Yields (text, series).

    As on OSM v1.2 (egress enabled, SMI mode): an allowed edge gives the caller's cluster stats for each backend; a
    denied one gives none (the caller has no cluster for it) but its connections go through the caller's
    `passthrough-outbound` cluster and are refused by the destination's inbound listener. Each caller's HTTP requests
    also add up in its outbound connection manager of the port, and every sidecar's listeners count refusals (0 where
    none happen)."""
    from lab.synthetic import generate

    mesh = generate(services, random_seed)
    first_pod: dict[tuple[str, str], str] = {}
    for pod in mesh.pods:
        first_pod.setdefault((pod.namespace, pod.workload), pod.name)
    kinds = {(w.namespace, w.name): w.kind for w in mesh.workloads}
    workload_of_app = {}
    for w in mesh.workloads:
        workload_of_app.setdefault((w.namespace, w.app), w)

    def pod_labels(namespace: str, workload: str, app: str) -> dict[str, str]:
        return {
            "source_namespace": namespace,
            "source_service": app,
            "source_pod_name": first_pod.get((namespace, workload), workload),
            "source_workload_kind": kinds.get((namespace, workload), "Deployment"),
            "source_workload_name": workload,
        }

    om = OpenMetrics(times)
    outbound_hcm: dict[tuple[tuple, int], dict[str, float]] = {}
    passthrough: dict[tuple, float] = {}
    refused_inbound: dict[tuple, float] = {}
    for edge in mesh.edges:
        source = pod_labels(edge.source_namespace, edge.source_workload, edge.source_app)
        key = tuple(source.items())
        passthrough.setdefault(key, 0.0)
        refused_inbound.setdefault(key, 0.0)
        if not edge.allowed:
            passthrough[key] += edge.rps
            dest = mesh.service(edge.destination_namespace, edge.destination_service)
            target = workload_of_app.get((dest.namespace, dest.app))
            if target is not None:
                dkey = tuple(pod_labels(target.namespace, target.name, target.app).items())
                refused_inbound[dkey] = refused_inbound.get(dkey, 0.0) + edge.rps
            continue
        for service, share in mesh.backend_shares(edge):
            port = service.ports[0]
            rps = edge.rps * share
            http = port.protocol == "http"
            envoy_edge(
                om,
                source,
                mesh.envoy_cluster_name(service, port),
                rps_by_class={"2": rps * (1 - edge.error_ratio), "5": rps * edge.error_ratio} if http else {},
                cdf=latency_cdf(edge.latency.p50_ms, edge.latency.p95_ms, edge.latency.p99_ms) if http else None,
                bytes_sent=rps * 400 if http else rps * 2000,
                bytes_received=rps * 1200 if http else rps * 8000,
                connections=max(1.0, round(rps / 20)),
                total=False,
            )
            if http:
                classes = outbound_hcm.setdefault((key, edge.port), {})
                classes["2"] = classes.get("2", 0.0) + rps * (1 - edge.error_ratio)
                classes["5"] = classes.get("5", 0.0) + rps * edge.error_ratio
            if chunk_series and om.series_count >= chunk_series:
                yield om.text(), om.series_count
                om.clear()
    for (key, port), classes in sorted(outbound_hcm.items()):
        connection_manager(om, dict(key), "outbound", port, classes)
    for key, rate in sorted(passthrough.items()):
        if rate:
            envoy_edge(om, dict(key), PASSTHROUGH_CLUSTER, rps_by_class={}, bytes_sent=rate * 300, connections=1.0)
        no_filter_chain_match(om, dict(key), OUTBOUND_LISTENER, 0.0)
    for key, rate in sorted(refused_inbound.items()):
        no_filter_chain_match(om, dict(key), INBOUND_LISTENER, rate)
    if om.series_count or not chunk_series:
        yield om.text(), om.series_count


# -- Istio ----------------------------------------------------------------------------------------------------------
# istio-proxy's standard metrics (its stats plugin; a stock Envoy cannot emit them), counted by both sidecars of a
# request: `reporter="source"` (the caller's) and `reporter="destination"`. Istio's default duration buckets are
# Envoy's. Only the destination knows the connection's mTLS (`connection_security_policy`); the source says "unknown".
ISTIO_REPORTERS = ("source", "destination")


def istio_edge(
    om: OpenMetrics,
    source: dict[str, str],
    destination: dict[str, str],
    *,
    rps_by_code: dict[str, float],
    cdf: Callable[[float], float] | None = None,
    tcp_sent: float = 0.0,
    tcp_received: float = 0.0,
    connections: float = 0.0,
    mtls: bool = True,
) -> None:
    """One edge's Istio series from both reporters. HTTP: `rps_by_code` (response code -> requests/s) and the
    duration histogram; TCP (empty `rps_by_code`): bytes the destination sent back (`tcp_sent`) and received from the
    caller (`tcp_received`), and connections opened and closed so that `connections` stay open."""
    for reporter in ISTIO_REPORTERS:
        security = ("mutual_tls" if mtls else "none") if reporter == "destination" else "unknown"
        labels = {"reporter": reporter, **source, **destination, "connection_security_policy": security}
        if rps_by_code:
            http = {**labels, "request_protocol": "http"}
            for code, rate in rps_by_code.items():
                om.counter("istio_requests_total", {**http, "response_code": code, "response_flags": "-"}, rate)
            if cdf is not None:
                om.histogram("istio_request_duration_milliseconds", http, sum(rps_by_code.values()), cdf)
        else:
            tcp = {**labels, "request_protocol": "tcp"}
            om.counter("istio_tcp_sent_bytes_total", tcp, tcp_sent)
            om.counter("istio_tcp_received_bytes_total", tcp, tcp_received)
            opened = max(1.0, connections)
            om.counter("istio_tcp_connections_opened_total", tcp, 0.5, start=opened + 10)
            om.counter("istio_tcp_connections_closed_total", tcp, 0.5, start=opened + 10 - connections)


def istio_synthetic_openmetrics(services: int, random_seed: int, times: list[float]) -> str:
    """The synthetic mesh's traffic as istio-proxy sidecars report it (`lab.seeds.istio.istio_synthetic_seed` holds the
    same mesh's objects on Istio): both reporters of every request; a split root's traffic lands on its backends by
    weight (its VirtualService); an edge SMI policy denies is answered 403 by the destination's sidecar (the
    AuthorizationPolicy the migration assistant writes for it), not passed through as on OSM."""
    from lab.synthetic import generate

    mesh = generate(services, random_seed)
    workload_of_app = {}
    for w in mesh.workloads:
        workload_of_app.setdefault((w.namespace, w.app), w)
    accounts = {(w.namespace, w.name): w.service_account for w in mesh.workloads}
    om = OpenMetrics(times)
    for edge in mesh.edges:
        sa = accounts.get((edge.source_namespace, edge.source_workload), "default")
        source = {
            "source_workload": edge.source_workload,
            "source_workload_namespace": edge.source_namespace,
            "source_app": edge.source_app,
            "source_principal": f"spiffe://cluster.local/ns/{edge.source_namespace}/sa/{sa}",
        }
        for service, share in mesh.backend_shares(edge):
            target = workload_of_app.get((service.namespace, service.app))
            destination = {
                "destination_service": f"{service.name}.{service.namespace}.svc.cluster.local",
                "destination_service_name": service.name,
                "destination_service_namespace": service.namespace,
                "destination_workload": target.name if target else "unknown",
                "destination_workload_namespace": service.namespace,
                "destination_app": service.app,
            }
            rps = edge.rps * share
            if service.ports[0].protocol == "http":
                codes = {"200": rps * (1 - edge.error_ratio), "503": rps * edge.error_ratio}
                if not edge.allowed:
                    codes = {"403": rps}
                latency = latency_cdf(edge.latency.p50_ms, edge.latency.p95_ms, edge.latency.p99_ms)
                istio_edge(om, source, destination, rps_by_code=codes, cdf=latency)
            elif edge.allowed:
                istio_edge(
                    om,
                    source,
                    destination,
                    rps_by_code={},
                    tcp_sent=rps * 8000,
                    tcp_received=rps * 2000,
                    connections=max(1.0, round(rps / 20)),
                )
    return om.text()


# -- the bookstore in both vocabularies -------------------------------------------------------------------------------
# One traffic model read by OSM's sidecars (Envoy cluster stats) and by istio-proxy's (standard metrics): bookbuyer
# calls the bookstore root (its split sends all to bookstore-v1), bookstore calls bookwarehouse, bookwarehouse opens
# TCP to mysql, and bookthief, which SMI policy denies, calls bookstore: OSM's sidecar has no route for it (no
# series), Istio's destination sidecar answers 403 (counted).
# (source namespace, workload = app), (destination namespace, service, port), rps or B/s, protocol, allowed
BOOKSTORE_TRAFFIC = (
    (("bookbuyer", "bookbuyer"), ("bookstore", "bookstore-v1", 14001), 8.0, "http", True),
    (("bookstore", "bookstore"), ("bookwarehouse", "bookwarehouse", 14001), 6.0, "http", True),
    (("bookwarehouse", "bookwarehouse"), ("bookwarehouse", "mysql", 3306), 2000.0, "tcp", True),
    (("bookthief", "bookthief"), ("bookstore", "bookstore-v1", 14001), 2.0, "http", False),
)


def bookstore_openmetrics(
    osm_times: list[float], istio_times: list[float], *, cdf: Callable[[float], float] | None = None
) -> str:
    """`BOOKSTORE_TRAFFIC` as OSM's sidecars count it at `osm_times` and as istio-proxy's count it (both reporters) at
    `istio_times`: the same times for two clusters of a blue/green move, or the week before a cut-over in one cluster
    and the days after it. `cdf`: the HTTP edges' latency (a histogram on both sides), none when not given."""
    osm, istio = OpenMetrics(osm_times), OpenMetrics(istio_times)
    for (sns, app), (dns, svc, port), rate, protocol, allowed in BOOKSTORE_TRAFFIC:
        osm_source = {
            "source_namespace": sns,
            "source_service": app,
            "source_pod_name": f"{app}-1",
            "source_workload_kind": "Deployment",
            "source_workload_name": app,
        }
        if allowed and protocol == "http":
            envoy_edge(osm, osm_source, f"{dns}/{svc}|{port}", rps_by_class={"2": rate}, cdf=cdf)
        elif allowed:  # mysql's headless StatefulSet: the truncated cluster name `<ns>/<pod>`, the rest in the name
            prefix = f"{svc}_{port}_"
            envoy_edge(osm, osm_source, f"{dns}/{svc}-0", rps_by_class={}, bytes_sent=rate, stat_prefix=prefix)
        istio_source = {"source_workload": app, "source_workload_namespace": sns, "source_app": app}
        destination = {
            "destination_service": f"{svc}.{dns}.svc.cluster.local",
            "destination_service_name": svc,
            "destination_service_namespace": dns,
        }
        if protocol == "http":
            istio_edge(istio, istio_source, destination, rps_by_code={"200" if allowed else "403": rate}, cdf=cdf)
        else:
            istio_edge(istio, istio_source, destination, rps_by_code={}, tcp_received=rate, connections=1.0)
    both = OpenMetrics([])
    both.families = {**osm.families, **istio.families}  # no family is in both vocabularies
    return both.text()
