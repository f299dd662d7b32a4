"""Every PromQL expression Meshboard sends, each with a line on what it means.

Conventions (reference/osm.md §4, reference/lab-mesh.md §5-6):
- Envoy's `envoy_cluster_*` stats come from the *calling* sidecar; the destination is the `envoy_cluster_name` label,
  `<ns>/<svc>|<port>` in OSM 1.x. The source is what OSM's relabeling adds: `source_namespace`, `source_service`
  (the calling pod's `app` label), `source_pod_name`, `source_workload_*`.
- A headless StatefulSet's cluster `<ns>/<pod>.<svc>|<port>` has a dot, which Envoy's tag extraction cuts: the label
  becomes `<ns>/<pod>` and the metric name gains the rest, `envoy_cluster_<svc>_<port>_upstream_rq_xx`. Selectors
  therefore match the metric name by regex, `envoy_cluster_(<svc>_<port>_)?<stat>`; the digits before the stat keep
  Envoy's `internal_`/`external_`/`canary_` variants (which would double count) out.
- Destination clusters are the ones with a `/` in their name and not ending in `|local` (the inbound side);
  OSM's internal clusters (osm-controller, envoy-metrics-cluster, envoy-tracing-cluster, passthrough-outbound) and
  egress clusters have no `/`.
- OSM v1.2 sidecars have one HTTP connection manager per port, shared by every destination on it:
  `mesh-http-conn-manager.rds-outbound.<port>` (`rds-inbound.<port>` on the destination). Envoy's tag extraction
  keeps the prefix up to its first dot, so the series are `envoy_http_rds_outbound_<port>_*{envoy_http_conn_manager_
  prefix="mesh-http-conn-manager"}`: nothing in them names a destination, and no query here reads them per edge.
- Policy refusals are counted by one side only (`refusals`): a caller's sidecar has no route to a destination SMI
  policy does not allow (no stat names that destination), a destination's sidecar counts what it refuses without the
  caller. So denials are known per caller and per destination, never per edge.
- Listener stats carry the pod's listener address: outbound `0.0.0.0_15001`, inbound `0.0.0.0_15003`.
- Every query of a cycle is one `sum by (...)` over the whole mesh: the number of queries does not depend on the
  number of services. `window` is a PromQL duration, at least 4 x the scrape interval (see `windows`).
- In a PromQL string `\\\\|` is the regex `\\|` (a literal `|`); Python raw strings keep it readable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from .osm_scrape import osm_keep_regex

INTERNAL_CLUSTERS = ("osm-controller", "envoy-metrics-cluster", "envoy-tracing-cluster", "passthrough-outbound")

# Destination-service clusters: `<ns>/...`, not the inbound `...|local` ones.
DESTINATION = r'envoy_cluster_name=~"[^/]+/.+",envoy_cluster_name!~".*\\|local"'
SOURCE = "source_namespace, source_service, source_workload_kind, source_workload_name"
EDGE = f"{SOURCE}, envoy_cluster_name"
DEST = "envoy_cluster_name"
WASM_EDGE = "source_namespace, source_name, destination_namespace, destination_name"
QUANTILES = {"p50_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}

# Metric names probed (by name, from the index) to choose the latency source and say what is available.
ENVOY_LATENCY = "envoy_cluster_upstream_rq_time_bucket"
WASM_LATENCY = "osm_request_duration_ms_bucket"
TLS_HANDSHAKE = "envoy_cluster_ssl_handshake"

TLS_ERROR_STATS = (
    "ssl_connection_error",
    "ssl_fail_verify_san",
    "ssl_fail_verify_no_cert",
    "ssl_fail_verify_error",
    "ssl_fail_verify_cert_hash",
)


def stat_metric(stat: str, matchers: str) -> str:
    """Selector for Envoy cluster stat `stat` (`upstream_rq_xx`...) under full or truncated cluster names (the
    `<svc>_<port>_` a dotted name moves into the metric name), with label `matchers`."""
    more = f",{matchers}" if matchers else ""
    return f'{{__name__=~"envoy_cluster_(?:[a-zA-Z0-9_]+_[0-9]+_)?{stat}"{more}}}'


def cluster_metric(stat: str, extra: str = "") -> str:
    """Selector for Envoy cluster stat `stat` (`upstream_rq_xx`...), full or truncated cluster names, destinations."""
    return stat_metric(stat, f"{DESTINATION},{extra}" if extra else DESTINATION)


def duration(seconds: float) -> str:
    """Seconds as a PromQL duration in whole seconds, rounded up (`75s`)."""
    return f"{max(1, math.ceil(seconds - 1e-9))}s"


@dataclass(frozen=True)
class Windows:
    scrape_interval: float
    short: float  # KPI and short split window, seconds
    long: float  # the 5 m split window, seconds

    @property
    def short_promql(self) -> str:
        return duration(self.short)

    @property
    def long_promql(self) -> str:
        return duration(self.long)


def windows(scrape_interval: float) -> Windows:
    """KPI windows for a scrape interval: never fewer than 4 scrapes.

    The short window is the larger of 1 m and 4 x the scrape interval for the usual 10-30 s scrapes; where scrapes are
    faster (the lab scrapes every 1-2 s) it shrinks to 10 scrapes, so a change shows within seconds:
    max(4 x s, min(60 s, 10 x s)). The long window is max(5 m, 4 x s).
    """
    s = max(0.1, float(scrape_interval))
    return Windows(scrape_interval=s, short=max(4 * s, min(60.0, 10 * s)), long=max(300.0, 4 * s))


def range_step(range_seconds: float, scrape_interval: float) -> float:
    """A chart's step: max(range / 300, scrape interval), so at most ~300 points and never below one scrape."""
    return max(range_seconds / 300.0, scrape_interval)


def range_window(step: float, scrape_interval: float) -> float:
    """A chart's rate() window: at least 4 scrapes, and at least one step so no sample falls between two points."""
    return max(4 * scrape_interval, step)


# -- the per-cycle queries (instant, all at one evaluation time) --------------------------------------------------


def requests_by_class(window: str, by: str = EDGE, fn: str = "rate") -> str:
    """Requests/s per edge (or `by`) and response class "1".."5", as the caller's sidecar saw the answers."""
    return f"sum by ({by}, envoy_response_code_class) ({fn}({cluster_metric('upstream_rq_xx')}[{window}]))"


def bytes_sent(window: str, by: str = EDGE) -> str:
    """Bytes/s the caller sent upstream on its connections to the destination (cx_tx_bytes)."""
    return f"sum by ({by}) (rate({cluster_metric('upstream_cx_tx_bytes_total')}[{window}]))"


def bytes_received(window: str, by: str = EDGE) -> str:
    """Bytes/s the caller received from the destination (cx_rx_bytes)."""
    return f"sum by ({by}) (rate({cluster_metric('upstream_cx_rx_bytes_total')}[{window}]))"


def active_connections(by: str = EDGE) -> str:
    """Open upstream connections from callers to the destination, right now (a gauge)."""
    return f"sum by ({by}) ({cluster_metric('upstream_cx_active')})"


def envoy_latency_buckets(window: str, part: str = "") -> str:
    """Envoy's upstream request-time histogram (caller side, ms, includes the network) as bucket rates per edge and
    `le`; services, split roots and the three quantiles are derived from it (apps.metrics.histogram). `part`: one
    more matcher (PARTS)."""
    return f"sum by ({EDGE}, le) (rate({cluster_metric('upstream_rq_time_bucket', part)}[{window}]))"


def wasm_latency_buckets(window: str, part: str = "") -> str:
    """OSM's WASM request-duration histogram (ms, workload to workload) as bucket rates per edge and `le`."""
    return f"sum by ({WASM_EDGE}, le) (rate(osm_request_duration_ms_bucket{{{part}}}[{window}]))"


def envoy_quantile(q: float, window: str, by: str = EDGE) -> str:
    """Latency quantile q in ms from Envoy's upstream request-time histogram, as Prometheus computes it (the cycle
    computes the same from envoy_latency_buckets; tests compare the two)."""
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({cluster_metric('upstream_rq_time_bucket')}[{window}])))"


def tls_handshakes(window: str) -> str:
    """TLS handshakes/s the caller's sidecar completed towards the destination (mTLS evidence)."""
    return f"sum by ({EDGE}) (rate({cluster_metric('ssl_handshake')}[{window}]))"


def tls_errors(window: str) -> str:
    """TLS failures/s towards the destination: connection errors and failed certificate checks.

    One rate() per stat, each tagged with its name: rate() drops `__name__`, so a single rate() over all five stats
    would give series with the same labels, which Prometheus refuses ("vector cannot contain metrics with the same
    labelset"); the tag keeps them apart until the sum.
    """
    terms = " or ".join(
        f'label_replace(rate({cluster_metric(stat)}[{window}]), "tls_stat", "{stat}", "", "")'
        for stat in TLS_ERROR_STATS
    )
    return f"sum by ({EDGE}) ({terms})"


def cluster_certificate_expiry() -> str:
    """Earliest expiry (unix s) of the certificates the caller's sidecar presents/trusts for the destination cluster."""
    return f"min by ({EDGE}) ({cluster_metric('ssl_certificate_expiration_unix_time_seconds')})"


def listener_certificate_expiry() -> str:
    """Earliest expiry (unix s) of the certificates each sidecar's inbound listener serves, by the sidecar's app."""
    return f"min by ({SOURCE}) (envoy_listener_ssl_certificate_expiration_unix_time_seconds)"


# What OSM v1.2 sidecars count when they refuse traffic, by who counts it (the scraped pod: `source_*` labels).
# - "no-route", the caller: a connection its outbound listener has no filter chain for (a destination SMI policy does
#   not allow, or one outside the mesh) and no egress passthrough to send it to.
# - "no-mtls", the destination: a connection its inbound listener has no filter chain for; with egress enabled (OSM
#   1.2's default) that is where a caller without a route ends, passed through in plaintext.
# - "identity", the destination: a connection its network RBAC filter (stat prefix `network-`) refused: an identity
#   no TrafficTarget names. Envoy 1.2x+ extracts the prefix as a tag; older Envoys keep it in the name.
# - "route", the destination: a request its per-route HTTP RBAC refused (an identity a TrafficTarget admits, on a route
#   it does not), counted by the inbound connection manager of that port.
REFUSAL_SIDES = {"no-route": "caller", "no-mtls": "destination", "identity": "destination", "route": "destination"}
REFUSAL_METRICS = (
    "envoy_listener_no_filter_chain_match",
    "envoy_rbac_denied",
    "envoy_network_rbac_denied",
)
_ROUTE_RBAC = re.compile(r"envoy_http_rds_inbound_[0-9]+_rbac_denied$")
ROUTE_RBAC_SELECTOR = (
    '{__name__=~"envoy_http_rds_inbound_[0-9]+_rbac_denied",envoy_http_conn_manager_prefix="mesh-http-conn-manager"}'
)


def refusals(window: str, resolution: str) -> str:
    """Connections (requests, for "route") per second each sidecar refused, by its pod's namespace, app and workload
    and the kind of refusal (`refusal`, see REFUSAL_SIDES). The route RBAC counters have the port in their names: each
    gets its name as a label before a subquery's rate(), so two ports of one pod do not collide once rate() drops
    names."""
    terms = (
        ("no-route", f'rate(envoy_listener_no_filter_chain_match{{envoy_listener_address=~".+_15001"}}[{window}])'),
        ("no-mtls", f'rate(envoy_listener_no_filter_chain_match{{envoy_listener_address=~".+_15003"}}[{window}])'),
        ("identity", f'rate(envoy_rbac_denied{{envoy_rbac_prefix="network-"}}[{window}])'),
        ("identity", f"rate(envoy_network_rbac_denied[{window}])"),
        (
            "route",
            f'rate(label_replace({ROUTE_RBAC_SELECTOR}, "stat", "$1", "__name__", "(.+)")[{window}:{resolution}])',
        ),
    )
    inner = " or ".join(f'label_replace({expr}, "refusal", "{kind}", "", "")' for kind, expr in terms)
    return f"sum by ({SOURCE}, refusal) ({inner})"


PASSTHROUGH_CLUSTER = "passthrough-outbound"


def passthrough(window: str) -> str:
    """Connections/s each caller's sidecar sent to OSM's egress passthrough: a destination it has no route to. With
    egress on (OSM 1.2's default) that is both a call to outside the mesh and a call SMI policy does not allow (the
    destination's sidecar then refuses it for want of mTLS); nothing in the stat says which."""
    return (
        f"sum by ({SOURCE}) "
        f'(rate(envoy_cluster_upstream_cx_total{{envoy_cluster_name="{PASSTHROUGH_CLUSTER}"}}[{window}]))'
    )


# Resilience counters per destination service (issue 21 item 4), by ServiceKPI field stem:
# - "rate_limited": requests the destination's own sidecars refused with a local rate limit (OSM programs
#   UpstreamTrafficSetting `rateLimit.local.http` as Envoy's HTTP local_ratelimit filter, stat prefix
#   `http_local_rate_limiter`; Envoy's tag extraction makes it `envoy_http_local_rate_limit_rate_limited{
#   envoy_local_http_ratelimit_prefix="http_local_rate_limiter"}`, scraped from the destination's pod);
# - "retried": retries the callers' sidecars made to it (`upstream_rq_retry` on their clusters to it);
# - "overflow": requests the callers' sidecars refused because the cluster's pending queue was full
#   (`upstream_rq_pending_overflow`: an UpstreamTrafficSetting's connection limits, or Envoy's defaults).
RATE_LIMIT_PREFIX = "http_local_rate_limiter"
RATE_LIMITED_METRIC = "envoy_http_local_rate_limit_rate_limited"
RESILIENCE_METRICS = {
    "rate_limited": RATE_LIMITED_METRIC,
    "retried": "envoy_cluster_upstream_rq_retry",
    "overflow": "envoy_cluster_upstream_rq_pending_overflow",
}
_RESILIENCE_NAMES = {
    # an Envoy without the prefix tag keeps it in the name
    "rate_limited": re.compile(rf"envoy_(?:{RATE_LIMIT_PREFIX}_)?http_local_rate_limit_rate_limited"),
    "retried": re.compile(r"envoy_cluster_(?:[a-zA-Z0-9_]+_[0-9]+_)?upstream_rq_retry"),
    "overflow": re.compile(r"envoy_cluster_(?:[a-zA-Z0-9_]+_[0-9]+_)?upstream_rq_pending_overflow"),
}
RESILIENCE = tuple(RESILIENCE_METRICS)


def resilience_kept(names: set[str]) -> frozenset[str]:
    """The resilience counters (RESILIENCE keys) this Prometheus has, from its metric names."""
    return frozenset(k for k, pattern in _RESILIENCE_NAMES.items() if any(pattern.fullmatch(n) for n in names))


def resilience(window: str, kept: frozenset[str] | set[str]) -> str:
    """Per-second rates of the kept resilience counters, tagged `resilience` (a RESILIENCE key), by the scraped pod
    (`source_*`) and Envoy cluster: the rate-limited count is the destination's own pod's, the others the callers'
    clusters to the destination. One query for all three, whatever the mesh size."""
    terms = {
        "rate_limited": (
            f'{{__name__=~"{_RESILIENCE_NAMES["rate_limited"].pattern}",'
            f'envoy_local_http_ratelimit_prefix=~"{RATE_LIMIT_PREFIX}|"}}'
        ),
        "retried": cluster_metric("upstream_rq_retry"),
        "overflow": cluster_metric("upstream_rq_pending_overflow"),
    }
    inner = " or ".join(
        f'label_replace(rate({terms[k]}[{window}]), "resilience", "{k}", "", "")' for k in RESILIENCE if k in kept
    )
    return f"sum by ({EDGE}, resilience) ({inner})"


def resilience_unavailable(key: str) -> str:
    """Why a resilience KPI is not available when Prometheus has none of its series."""
    name = RESILIENCE_METRICS[key]
    text = f"not available: this Prometheus keeps no {name} series"
    if not re.fullmatch(osm_keep_regex(), name):
        return f"{text} (OSM's shipped keep-list drops it; keep it in your own Prometheus to see it)"
    return f"{text} (OSM's shipped keep-list keeps it: is the sidecars' scrape job missing, or its keep-list changed?)"


# Traffic crossing the mesh's edge (issue 21), by BoundaryTraffic direction:
# - "ingress": requests a backend's sidecar admitted through OSM's ingress connection manager
#   (`mesh-http-conn-manager.rds-ingress`; Envoy's tag for a manager's prefix ends at its first dot, so the series is
#   `envoy_http_rds_ingress_downstream_rq_xx{envoy_http_conn_manager_prefix="mesh-http-conn-manager"}`), scraped from
#   the backend's pod. OSM's shipped keep-list drops every `envoy_http_*` series.
# - "egress": requests a caller's sidecar sent on an Egress policy's cluster: the clusters with no `/` in their name
#   that are not OSM's own (their stat name is `<host>:<port>` with `.` and `:` made `_`).
INGRESS_METRIC = "envoy_http_rds_ingress_downstream_rq_xx"
INGRESS_SELECTOR = f'{INGRESS_METRIC}{{envoy_http_conn_manager_prefix="mesh-http-conn-manager"}}'
EGRESS_SELECTOR = (
    'envoy_cluster_upstream_rq_xx{envoy_cluster_name!~".*/.*",envoy_cluster_name!="",'
    f'envoy_cluster_name!~"{"|".join(INTERNAL_CLUSTERS)}"}}'
)


def egress_stat_name(host: str, port: object) -> str:
    """The stat name of OSM's egress cluster for `host` and `port` (lab/mesh/envoy.py programs it the same way)."""
    return f"{host}:{port}".replace(".", "_").replace(":", "_")


def boundary(window: str, ingress: bool) -> str:
    """Requests/s by response class crossing the mesh's edge, tagged `boundary` ("ingress" or "egress"), by the
    scraped pod and (egress) the cluster. One query for both, whatever the mesh size."""
    terms = [f'label_replace(rate({EGRESS_SELECTOR}[{window}]), "boundary", "egress", "", "")']
    if ingress:
        terms.insert(0, f'label_replace(rate({INGRESS_SELECTOR}[{window}]), "boundary", "ingress", "", "")')
    return f"sum by ({EDGE}, envoy_response_code_class, boundary) ({' or '.join(terms)})"


INGRESS_UNAVAILABLE = (
    f"ingress requests not available: this Prometheus keeps no {INGRESS_METRIC} series (OSM's shipped keep-list drops "
    "every envoy_http_* series; keep this one in your own Prometheus to see what ingress controllers send)"
)


@dataclass(frozen=True)
class Available:
    """What this Prometheus keeps, from the metric names it has (one cheap index lookup per cycle)."""

    latency_source: str  # "envoy", "osm-wasm" or "none"
    tls: bool
    denials: bool
    passthrough: bool = True
    resilience: frozenset[str] = frozenset(RESILIENCE)  # the RESILIENCE keys kept
    ingress: bool = True  # the backends' ingress request counter is kept

    @classmethod
    def from_names(cls, names: set[str]) -> Available:
        latency = "envoy" if ENVOY_LATENCY in names else "osm-wasm" if WASM_LATENCY in names else "none"
        return cls(
            latency_source=latency,
            tls=TLS_HANDSHAKE in names or any(_TRUNCATED_SSL.match(n) for n in names),
            denials=any(n in names for n in REFUSAL_METRICS) or any(_ROUTE_RBAC.match(n) for n in names),
            passthrough="envoy_cluster_upstream_cx_total" in names,
            resilience=resilience_kept(names),
            ingress=INGRESS_METRIC in names,
        )

    @classmethod
    def from_state(cls, state) -> Available:
        """What the last run found (a MetricsState), when this run cannot ask."""
        return cls(
            state.latency_source,
            not state.tls_unavailable_reason,
            DENIALS_NOT_KEPT not in state.denials_unavailable_reason,
            resilience=frozenset(k for k in RESILIENCE if not getattr(state, f"{k}_unavailable_reason")),
            ingress=not state.ingress_unavailable_reason,
        )


_TRUNCATED_SSL = re.compile(r"envoy_cluster_[a-zA-Z0-9_]+_[0-9]+_ssl_handshake$")

LATENCY_UNAVAILABLE = (
    "latency not available on this Prometheus: it keeps neither Envoy's envoy_cluster_upstream_rq_time histogram "
    "(OSM's shipped keep-list drops it) nor OSM's osm_request_duration_ms (needs OSM's WASM stats feature flag)"
)
TLS_UNAVAILABLE = (
    "TLS evidence not available on this Prometheus: it does not keep Envoy's envoy_cluster_ssl_* series "
    "(OSM's shipped keep-list drops them; keep them in your own Prometheus to see handshakes and certificate expiry)"
)
DENIALS_PER_EDGE_UNAVAILABLE = (
    "denied traffic per edge (who was refused what) is not available from OSM v1.2 sidecars: a caller's sidecar has "
    "no route to a destination SMI policy does not allow, so no stat names that destination (with egress enabled the "
    "connection is passed through and the destination's sidecar refuses it for want of mTLS; without, the caller's "
    "own sidecar refuses it), and a destination's sidecar counts what its RBAC refuses without the caller's identity"
)
DENIALS_NOT_KEPT = (
    "this Prometheus keeps none of the refusal counters (envoy_listener_no_filter_chain_match, envoy_rbac_denied or "
    "envoy_network_rbac_denied, envoy_http_rds_inbound_<port>_rbac_denied): OSM's shipped keep-list drops them"
)


# The cycle's queries that cost Prometheus the most (every bucket of every edge): asked first.
SLOW_QUERIES = ("latency_buckets",)

# The latency bucket answer holds every bucket of every edge (~35,000 series, 8.5 MB at 1,000 services). Prometheus
# evaluates and encodes a query on one core, and this one's time grows faster than its size, so it is asked in two
# parts, side by side (the bench's numbers in BENCHMARKS.md). The parts split the callers, not the buckets: each edge's
# histogram comes whole from one query, as the three quantiles need (two queries run a few ms apart, and a scrape
# landing between them would give one edge buckets from two moments: a p99 several times too high). A caller's
# workload name has an even or an odd length ("(..)*": RE2 matches whole values; a series without the label has the
# empty one, even), so the parts neither overlap nor miss a series; the length splits real names about evenly (the
# synthetic mesh's 1,752 edges: 53 % and 47 %; first letters or last characters split them 23/77 and worse).
# `join_parts` puts the answers back together under the query's key.
PARTS = ('{label}=~"(..)*"', '{label}!~"(..)*"')
_PART = "#"


def in_parts(key: str, label: str, query: Callable[[str], str]) -> dict[str, str]:
    """The queries `query(matcher)` for each of PARTS on the caller's workload label `label`, keyed `key#i`."""
    return {f"{key}{_PART}{i}": query(part.format(label=label)) for i, part in enumerate(PARTS)}


def whole_key(key: str) -> str:
    """The key of the query a part belongs to (itself for a query asked whole)."""
    return key.split(_PART, 1)[0]


def join_parts(results: dict[str, list], failures: dict[str, str]) -> None:
    """Puts the answers of queries asked in parts back under their keys, in place. A query has an answer only when
    every part answered (a mesh missing some of its callers gives wrong service quantiles); a failed part fails it
    with that part's reason; a part not asked (the cycle gave up first) leaves it unanswered, as the others."""
    wholes = {whole_key(k) for k in (*results, *failures) if _PART in k}
    for whole in wholes:
        keys = [f"{whole}{_PART}{i}" for i in range(len(PARTS))]
        answers = [results.pop(k, None) for k in keys]
        reasons = [failures.pop(k) for k in keys if k in failures]
        if reasons:
            failures[whole] = reasons[0]
        elif all(a is not None for a in answers):
            results[whole] = [sample for answer in answers for sample in answer]


def cycle(w: Windows, available: Available) -> dict[str, str]:
    """The queries of one metrics cycle, by key. Their number depends on what Prometheus keeps, never on mesh size."""
    short, long = w.short_promql, w.long_promql
    queries = {
        "requests": requests_by_class(short),
        "requests_long": requests_by_class(long, by=DEST),
        "bytes_sent": bytes_sent(short),
        "bytes_received": bytes_received(short),
        "connections": active_connections(),
    }
    if available.latency_source == "envoy":
        parts = in_parts("latency_buckets", "source_workload_name", lambda part: envoy_latency_buckets(short, part))
        queries.update(parts)
    elif available.latency_source == "osm-wasm":
        queries.update(in_parts("latency_buckets", "source_name", lambda part: wasm_latency_buckets(short, part)))
    if available.tls:
        queries["tls_handshakes"] = tls_handshakes(short)
        queries["tls_errors"] = tls_errors(short)
        queries["cert_expiry_cluster"] = cluster_certificate_expiry()
        queries["cert_expiry_listener"] = listener_certificate_expiry()
    if available.denials:
        queries["refusals"] = refusals(short, duration(w.scrape_interval))
    if available.passthrough:
        queries["passthrough"] = passthrough(short)
    if available.resilience:
        queries["resilience"] = resilience(short, available.resilience)
    queries["boundary"] = boundary(short, available.ingress)
    return queries


# -- one service's charts (range queries) ---------------------------------------------------------------------------


def promql_string(text: str) -> str:
    """`text` as the inside of a double-quoted PromQL string."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def regex_literal(text: str) -> str:
    """`text` as an RE2 regex matching it literally."""
    return re.sub(r"([^A-Za-z0-9_])", r"\\\1", text)


def service_cluster_regex(namespace: str, service: str, pods: list[str]) -> str:
    """RE2 regex for every `envoy_cluster_name` of one service: `<ns>/<svc>|<port>`, the alt-stat form
    `<ns>/<pod>_<svc>|<port>`, the dotted form, and the truncated `<ns>/<pod>` of each of its pods."""
    ns, svc = regex_literal(namespace), regex_literal(service)
    forms = [f"{ns}/{svc}\\|[0-9]+", f"{ns}/[^/|]+[._]{svc}\\|[0-9]+"]
    if pods:
        forms.append(f"{ns}/(?:{'|'.join(regex_literal(p) for p in sorted(pods))})")
    return "|".join(forms)


def service_selector(namespace: str, service: str, pods: list[str]) -> str:
    return f'envoy_cluster_name=~"{promql_string(service_cluster_regex(namespace, service, pods))}"'


def series_requests(selector: str, window: str) -> str:
    """Requests/s to one service by response class, over time."""
    return f"sum by (envoy_response_code_class) (rate({stat_metric('upstream_rq_xx', selector)}[{window}]))"


def series_bytes(stat: str, selector: str, window: str) -> str:
    """Bytes/s on the callers' connections to one service (stat: upstream_cx_tx_bytes_total or ..._rx_...)."""
    return f"sum(rate({stat_metric(stat, selector)}[{window}]))"


def series_envoy_quantile(q: float, selector: str, window: str) -> str:
    """Latency quantile q (ms) of one service from Envoy's histogram, over time."""
    return f"histogram_quantile({q}, sum by (le) (rate({stat_metric('upstream_rq_time_bucket', selector)}[{window}])))"


def series_wasm_quantile(q: float, namespace: str, workloads: list[str], window: str) -> str:
    """Latency quantile q (ms) of one service's workloads from OSM's WASM histogram (names mangled: `-`,`.` → `_`)."""
    names = "|".join(regex_literal(mangle(w)) for w in sorted(workloads)) or "$^"
    sel = f'destination_namespace="{promql_string(mangle(namespace))}",destination_name=~"{promql_string(names)}"'
    return f"histogram_quantile({q}, sum by (le) (rate(osm_request_duration_ms_bucket{{{sel}}}[{window}])))"


def mangle(value: str) -> str:
    """What OSM's WASM stats do to label values: every `-` and `.` becomes `_`."""
    return value.replace("-", "_").replace(".", "_")


# -- a canary comparison: what each backend served over one window (instant queries, increase()) -------------------


def window_totals(selector: str, window: str) -> dict[str, str]:
    """Per Envoy cluster name over `window`: requests by class, latency buckets, and TCP bytes sent and received
    (apps.metrics.compare maps the cluster names to backends)."""
    by = "envoy_cluster_name"
    return {
        "requests": f"sum by ({by}, envoy_response_code_class) "
        f"(increase({stat_metric('upstream_rq_xx', selector)}[{window}]))",
        "latency": f"sum by ({by}, le) (increase({stat_metric('upstream_rq_time_bucket', selector)}[{window}]))",
        "sent": f"sum by ({by}) (increase({stat_metric('upstream_cx_tx_bytes_total', selector)}[{window}]))",
        "received": f"sum by ({by}) (increase({stat_metric('upstream_cx_rx_bytes_total', selector)}[{window}]))",
    }
