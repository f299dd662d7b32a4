"""The PromQL of one metrics cycle on an Istio mesh, and how its answers map onto the same KPIs as OSM's.

Istio's standard metrics come from istio-proxy's stats plugin (a stock Envoy cannot emit them):
`istio_requests_total`, `istio_request_duration_milliseconds_bucket`, `istio_tcp_sent_bytes_total`,
`istio_tcp_received_bytes_total`, `istio_tcp_connections_opened_total`/`_closed_total`, labelled by both workloads
(`source_workload`, `source_workload_namespace`, `source_app`, `destination_service_name`,
`destination_service_namespace`, ...), `response_code`, `connection_security_policy` and `reporter`.

Every request is counted twice, once by each sidecar (`reporter="source"` and `reporter="destination"`): summing both
doubles every rate. Every query here reads ONE reporter, the destination's, because:
- it is the inbound side's truth: it counts every request that reached the service, including those of callers
  without a sidecar (which report nothing) and those its AuthorizationPolicies refused (403, counted where refused);
- only the destination knows whether the connection was mutual TLS (`connection_security_policy="mutual_tls"`; the
  source reports "unknown"), which is the mTLS evidence per edge;
- `destination_service_*` is what the destination's sidecar served, after any VirtualService routing, so a split's
  backends are told apart exactly as OSM's per-backend clusters do.
Its latency is the destination sidecar's (without the network from the caller): OSM's Envoy histogram is the
caller's, so the same edge reads a little faster on Istio.

Bytes: Istio's TCP metrics are named from the server's side: `istio_tcp_received_bytes_total` is what the caller sent
(the request direction), `istio_tcp_sent_bytes_total` what it got back; they count TCP services only (HTTP bytes are
`istio_request_bytes`/`istio_response_bytes`, not read), so HTTP edges have no byte rates on Istio.

The number of queries is fixed (seven per cycle, the latency buckets asked in two parts, whatever the mesh size),
like OSM's catalog; `normalize` turns each answer's labels into the vocabulary `apps.metrics.services.map_cycle` reads
(OSM's), so the same mapping fills ServiceKPI, EdgeKPI and SplitShare and every page works unchanged.
"""

from __future__ import annotations

from .catalog import QUANTILES, Available, Windows, in_parts, promql_string, regex_literal
from .prometheus import Sample

REPORTER = 'reporter="destination"'
SOURCE = "source_workload_namespace, source_app, source_workload"
DEST = "destination_service_namespace, destination_service_name"
EDGE = f"{SOURCE}, {DEST}"
REQUESTS = "istio_requests_total"
LATENCY = "istio_request_duration_milliseconds_bucket"
MUTUAL_TLS = "mutual_tls"
# The destination Istio names when it cannot tell (a passthrough, a request to an unknown host).
UNKNOWN = "unknown"


def _with_class(expr: str) -> str:
    """`expr` with the response code's first digit as `envoy_response_code_class` (OSM's label for the class)."""
    return f'label_replace({expr}, "envoy_response_code_class", "$1", "response_code", "([0-9]).*")'


def requests_by_class(window: str) -> str:
    """Requests/s per edge, response class and connection security (mTLS or not), as the destination saw them."""
    inner = _with_class(f"rate({REQUESTS}{{{REPORTER}}}[{window}])")
    return f"sum by ({EDGE}, envoy_response_code_class, connection_security_policy) ({inner})"


def requests_long(window: str) -> str:
    """Requests/s per destination service over the long window (the 5 m split share)."""
    return f"sum by ({DEST}) (rate({REQUESTS}{{{REPORTER}}}[{window}]))"


def tcp_bytes(metric: str, window: str) -> str:
    return f"sum by ({EDGE}) (rate({metric}{{{REPORTER}}}[{window}]))"


def active_connections() -> str:
    """Open TCP connections per edge: opened minus closed (both counters restart together with the sidecar)."""
    return (
        f"sum by ({EDGE}) (istio_tcp_connections_opened_total{{{REPORTER}}}) - "
        f"sum by ({EDGE}) (istio_tcp_connections_closed_total{{{REPORTER}}})"
    )


def latency_buckets(window: str, part: str = "") -> str:
    matchers = f"{REPORTER},{part}" if part else REPORTER
    return f"sum by ({EDGE}, le) (rate({LATENCY}{{{matchers}}}[{window}]))"


def cycle(w: Windows, available: Available) -> dict[str, str]:
    """The queries of one Istio cycle, by the keys of OSM's catalog that `map_cycle` reads."""
    short, long = w.short_promql, w.long_promql
    queries = {
        "requests": requests_by_class(short),
        "requests_long": requests_long(long),
        # The caller's sent bytes are what the destination received (see the module's docstring).
        "bytes_sent": tcp_bytes("istio_tcp_received_bytes_total", short),
        "bytes_received": tcp_bytes("istio_tcp_sent_bytes_total", short),
        "connections": active_connections(),
    }
    if available.latency_source == "istio":
        queries.update(in_parts("latency_buckets", "source_workload", lambda part: latency_buckets(short, part)))
    return queries


def available(names: set[str]) -> Available:
    """What an Istio cycle can read: the latency histogram when kept; none of OSM's Envoy-stat evidence."""
    return Available(
        latency_source="istio" if LATENCY in names else "none",
        tls=False,
        denials=False,
        passthrough=False,
        resilience=frozenset(),
        ingress=False,
    )


LATENCY_UNAVAILABLE = (
    f"latency not available on this Prometheus: it keeps no {LATENCY} series (istio-proxy's stats plugin emits "
    "it; is the sidecars' scrape job missing, or its keep-list dropping it?)"
)
TLS_UNAVAILABLE = (
    "TLS handshakes and certificate expiry are Envoy cluster stats that Istio's standard metrics do not carry; mTLS "
    "per edge is read from connection_security_policy instead"
)
DENIALS_STATEMENT = (
    "denied requests on Istio are the 403s the destination's sidecar answered (its AuthorizationPolicies), counted "
    "in each edge's 4xx rate"
)
RESILIENCE_UNAVAILABLE = "not read on Istio: its standard metrics have no retry, overflow or local rate-limit counter"
INGRESS_UNAVAILABLE = "ingress requests are not read on Istio yet"


class Normalizer:
    """Istio's labels → the labels `map_cycle` reads: `source_namespace`, `source_service` (the caller pod's app
    label, as OSM's relabeling names it), `source_workload_kind`/`_name` and `envoy_cluster_name` as OSM 1.x names
    a destination cluster, `<ns>/<svc>|<port>`: Istio's series carry no port, and nothing reads it, so it is 0. A
    destination Istio could not name ("unknown") keeps its name without a `/`, which resolves to no service and is
    reported as unresolved."""

    def __init__(self, workload_kinds: dict[tuple[str, str], str]):
        self.workload_kinds = workload_kinds  # (namespace, workload name) -> kind, from the snapshot

    def labels(self, labels: dict[str, str]) -> dict[str, str]:
        out = dict(labels)
        ns, workload = labels.get("source_workload_namespace", ""), labels.get("source_workload", "")
        if ns == UNKNOWN:
            ns, workload = "", ""
        out["source_namespace"] = ns
        out["source_service"] = labels.get("source_app", "") if labels.get("source_app") != UNKNOWN else ""
        out["source_workload_name"] = workload
        out["source_workload_kind"] = self.workload_kinds.get((ns, workload), "")
        dns, dsvc = labels.get("destination_service_namespace", ""), labels.get("destination_service_name", "")
        if dns and dsvc and UNKNOWN not in (dns, dsvc):
            out["envoy_cluster_name"] = f"{dns}/{dsvc}|0"
        else:
            out["envoy_cluster_name"] = labels.get("destination_service", "") or UNKNOWN
        return out

    def samples(self, samples: list[Sample]) -> list[Sample]:
        return [Sample(self.labels(s.labels), s.value) for s in samples]


# -- one service's charts (range queries): the same series as OSM's, from the destination reporter ------------------


def service_selector(namespace: str, services: list[str]) -> str:
    """The destination reporter's series of `services` (a split root's backends too) in `namespace`."""
    names = "|".join(regex_literal(s) for s in services) or "$^"
    return (
        f'{REPORTER},destination_service_namespace="{promql_string(namespace)}",'
        f'destination_service_name=~"{promql_string(names)}"'
    )


def series_queries(selector: str, window: str, latency: bool) -> dict[str, str]:
    """The chart queries by series, as `apps.metrics.ranges` asks them ("requests": the per-class request series)."""
    queries = {
        "requests": f"sum by (envoy_response_code_class) ({_with_class(f'rate({REQUESTS}{{{selector}}}[{window}])')})",
        "tcp_bytes_sent_rate": f"sum(rate(istio_tcp_received_bytes_total{{{selector}}}[{window}]))",
        "tcp_bytes_received_rate": f"sum(rate(istio_tcp_sent_bytes_total{{{selector}}}[{window}]))",
    }
    if latency:
        for name, q in QUANTILES.items():
            queries[name] = f"histogram_quantile({q}, sum by (le) (rate({LATENCY}{{{selector}}}[{window}])))"
    return queries
