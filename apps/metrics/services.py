"""One metrics cycle: a constant set of PromQL queries, mapped onto the snapshot's services, edges and splits.

`collect_and_record(cluster)` is what the task calls. A Prometheus that cannot be reached fails the run (recorded with
the reason) and leaves every KPI row as it was, so pages show the last good values marked stale from the run records.
A query that fails alone makes the run PARTIAL: the fields it feeds keep their previous values, the others update.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter

from django.db import transaction
from django.utils import timezone

from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.runs import recorded_run
from apps.core.gc import gc_paused
from apps.core.upsert import upsert
from apps.mesh.istio_splits import virtual_service_splits
from apps.mesh.models import MeshState, TrafficSplit, root_service_name

from . import catalog, histogram, istio_catalog, preflight
from .catalog import QUANTILES, Available, Windows
from .models import EDGE_KEY, BoundaryTraffic, EdgeKPI, MetricsState, Refusal, ServiceKPI, SplitShare, success_ratio
from .prometheus import PrometheusError, PrometheusGateway, Sample, gateway_for
from .resolve import Resolver

HISTORY_POINTS = 60  # sparkline points kept per service (one per cycle)
# Queries of one cycle in flight at once: enough to keep a Prometheus's cores busy, few enough not to crowd it.
QUERY_PARALLELISM = 4
REQUEST_FIELDS = ("request_rate", "rate_2xx", "rate_4xx", "rate_5xx", "success_rate")
TCP_FIELDS = {"bytes_sent": "tcp_bytes_sent_rate", "bytes_received": "tcp_bytes_received_rate"}
# Resilience KPIs per destination service (catalog.RESILIENCE key -> ServiceKPI field).
RESILIENCE_FIELDS = {key: f"{key}_rate" for key in catalog.RESILIENCE}
SUMMED = ("request_rate", "rate_2xx", "rate_4xx", "rate_5xx", *TCP_FIELDS.values(), "tcp_active_connections")

# source ns, source app (OSM's source_service), source workload kind and name, destination ns, destination service
EdgeKey = tuple[str, str, str, str, str, str]
ServiceKey = tuple[str, str]


@dataclass
class Cycle:
    """What one cycle asked and got: results by query key, failures by query key (reasons)."""

    at: float
    windows: Windows
    available: Available
    version: str = ""
    results: dict[str, list[Sample]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    queries: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    preflight: dict | None = None  # None: not checked this cycle (the stored one stays)
    mesh: str = "osm"  # which catalog the cycle asks: "osm" (catalog) or "istio" (istio_catalog)

    def ok(self, *keys: str) -> bool:
        return all(k in self.results for k in keys)


def mesh_kind(cluster: Cluster) -> str:
    """Which catalog applies to the cluster, from what its last collection detected (`MeshState.mesh_kind`)."""
    state = MeshState.objects.filter(cluster=cluster).only("istio_revisions", "osm_version", "mesh_name").first()
    return state.mesh_kind if state else "osm"


def query_cycle(
    gateway: PrometheusGateway,
    cluster: Cluster,
    *,
    at: float | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> Cycle:
    """Ask Prometheus the cycle's questions. Raises PrometheusError when Prometheus cannot answer at all.
    `meanwhile()` runs while the queries are in flight (`ask_cycle`)."""
    started = time.perf_counter()
    at = float(at if at is not None else time.time())
    warnings = []
    mesh = mesh_kind(cluster)
    version = gateway.build_version()  # the first call: when Prometheus is down, the run fails here
    previous = MetricsState.objects.filter(cluster=cluster).first()
    if cluster.scrape_interval_seconds:
        scrape = float(cluster.scrape_interval_seconds)
    else:
        try:
            scrape = gateway.scrape_interval()
        except PrometheusError as exc:
            scrape = previous.scrape_interval_seconds if previous else 15.0
            warnings.append(f"{exc.reason}; assuming a scrape interval of {scrape:g} s")
    w = catalog.windows(scrape)
    names: set[str] | None = None
    try:
        names = gateway.metric_names(at - w.long, at)
        available = istio_catalog.available(names) if mesh == "istio" else Available.from_names(names)
    except PrometheusError as exc:
        available = last_available(previous, mesh)
        warnings.append(f"{exc.reason}; assuming the same metrics as last time")
    cycle = Cycle(at=at, windows=w, available=available, version=version, warnings=warnings, mesh=mesh)
    # The pre-flight checks OSM's scrape configuration and keep-lists: nothing it says applies to Istio's sidecars.
    if names is not None and mesh == "osm":
        cycle.preflight = preflight.run(gateway, names, at - w.long, at)
    cycle.timings["probes"] = time.perf_counter() - started
    first_error = ask_cycle(
        cycle,
        lambda key, expr: gateway.instant(expr, at, what=catalog.whole_key(key)),
        parallel=QUERY_PARALLELISM,
        meanwhile=meanwhile,
    )
    cycle.queries = gateway.requests
    cycle.timings["query"] = time.perf_counter() - started
    if first_error is not None and not cycle.results:
        raise first_error
    return cycle


def last_available(state: MetricsState | None, mesh: str) -> Available:
    """What the last run found this Prometheus keeps, when this run cannot ask (OSM: everything, before any run)."""
    if mesh == "istio":
        kept = {istio_catalog.LATENCY} if state is None or state.latency_source != "none" else set()
        return istio_catalog.available(kept)
    return Available.from_state(state) if state else Available("envoy", True, True)


def ask_cycle(
    cycle: Cycle,
    instant: Callable[[str, str], list[Sample]],
    *,
    give_up: Callable[[PrometheusError], bool] = lambda _exc: False,
    parallel: int = 1,
    meanwhile: Callable[[], None] | None = None,
) -> PrometheusError | None:
    """Ask the cycle's queries (catalog.cycle: one set, whatever the time `cycle.at` they are evaluated at, now for
    the collector, a past time for the pages' "as of") through `instant(key, expr)`, into `cycle.results`; a query
    that fails goes to `cycle.failures`, and the rest are not asked once `give_up(error)` says so. Returns the first
    error, or None.

    `parallel` > 1 keeps that many queries in flight: Prometheus evaluates each query on one core, so the latency
    bucket query (the cycle's slowest by far) runs beside the others, and our JSON decoding of one answer overlaps
    Prometheus's work on the next. The slowest queries are sent first. `meanwhile()` is called in the calling thread
    while the queries are in flight (after them when they are asked one at a time), for work that needs no answer:
    it may use this thread's database connection, which the asking threads never touch."""
    ask = istio_catalog.cycle if cycle.mesh == "istio" else catalog.cycle
    queries = ask(cycle.windows, cycle.available)
    order = sorted(queries, key=lambda key: catalog.whole_key(key) not in catalog.SLOW_QUERIES)
    first_error: PrometheusError | None = None

    def record(key: str, answer: Callable[[], list[Sample]]) -> bool:
        """Keep the answer or the failure; True when the rest are not to be asked."""
        nonlocal first_error
        try:
            cycle.results[key] = answer()
        except PrometheusError as exc:
            cycle.failures[key] = exc.reason
            first_error = first_error or exc
            return give_up(exc)
        return False

    if parallel <= 1:  # one at a time: once give_up says so, nothing more is asked
        for key in order:
            if record(key, lambda key=key: instant(key, queries[key])):
                break
        if meanwhile is not None:
            meanwhile()
        catalog.join_parts(cycle.results, cycle.failures)
        return first_error
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="promql") as pool:
        futures = {pool.submit(instant, key, queries[key]): key for key in order}
        if meanwhile is not None:
            meanwhile()
        for future in as_completed(futures):
            if record(futures[future], future.result):
                for pending in futures:
                    pending.cancel()  # those not started yet are not asked
    catalog.join_parts(cycle.results, cycle.failures)
    return first_error


# -- mapping -----------------------------------------------------------------------------------------------------


def _add(row: dict, name: str, value: float | None) -> None:
    if value is not None:
        row[name] = (row.get(name) or 0.0) + value


def _min(row: dict, name: str, value: float | None) -> None:
    if value is not None:
        row[name] = value if row.get(name) is None else min(row[name], value)


def _timestamp(value: float | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(value, UTC) if value is not None else None
    except (OverflowError, OSError, ValueError):
        return None


@dataclass
class Mapped:
    services: dict[ServiceKey, dict] = field(default_factory=dict)
    edges: dict[EdgeKey, dict] = field(default_factory=dict)
    splits: list[dict] = field(default_factory=list)
    service_fields: set[str] = field(default_factory=set)  # fields whose queries answered (others keep old values)
    edge_fields: set[str] = field(default_factory=set)
    # Refused (and passed-through) traffic per second: (side, kind, namespace, app, workload kind, workload name) ->
    # rate; None when neither the refusal nor the passthrough query answered (the stored rows stay).
    refusal_rows: dict[tuple[str, str, str, str, str, str], float] | None = None
    refusals_known: bool = False  # the refusal counters were kept and their query answered
    # Requests/s crossing the mesh's edge: (direction, namespace, app, workload kind, workload name, peer) ->
    # [requests, 5xx]; None when the boundary query did not answer (the stored rows stay).
    boundary: dict[tuple[str, str, str, str, str, str], list[float]] | None = None

    @property
    def refusals(self) -> dict[str, dict[tuple[str, str], float]] | None:
        """Refusals/s by the side that counted them ("caller" or "destination") and that side's (namespace, app
        label); None when Prometheus keeps no refusal counter or the query failed."""
        if not self.refusals_known or self.refusal_rows is None:
            return None
        out: dict[str, dict[tuple[str, str], float]] = {"caller": {}, "destination": {}}
        for (side, kind, ns, app, _kind, _name), rate in self.refusal_rows.items():
            if kind in catalog.REFUSAL_SIDES:
                out[side][(ns, app)] = out[side].get((ns, app), 0.0) + rate
        return out


def _edge_row(out: Mapped, resolver: Resolver, labels: dict) -> dict | None:
    """The edge row a series with Envoy's cluster name belongs to (created on first sight); None when the cluster
    name resolves to no service of the snapshot."""
    dest = resolver.destination(labels.get("envoy_cluster_name", ""))
    if dest is None:
        return None
    return out.edges.setdefault((*_source(labels), *dest), {})


# The labels `_source` reads and the cluster name, in that order, when the series has them all.
_EDGE_LABELS = itemgetter(
    "source_namespace", "source_service", "source_workload_kind", "source_workload_name", "envoy_cluster_name"
)


def _source(labels: dict) -> tuple[str, str, str, str]:
    """(namespace, app, workload kind, workload name) of the pod a series was scraped from."""
    return (
        labels.get("source_namespace", ""),
        labels.get("source_service", ""),
        labels.get("source_workload_kind", ""),
        labels.get("source_workload_name", ""),
    )


def _map_requests(cycle: Cycle, resolver: Resolver, out: Mapped) -> None:
    """Requests by class; a class never seen is 0 once the edge has any request series."""
    if not cycle.ok("requests"):
        return
    out.edge_fields.update(REQUEST_FIELDS)
    for s in cycle.results["requests"]:
        row = _edge_row(out, resolver, s.labels)
        if row is None:
            continue
        cls = s.labels.get("envoy_response_code_class", "")
        for name in ("request_rate", "rate_2xx", "rate_4xx", "rate_5xx"):
            row.setdefault(name, 0.0)
        _add(row, "request_rate", s.value)
        if cls in ("2", "4", "5"):
            _add(row, f"rate_{cls}xx", s.value)


def _map_tcp(cycle: Cycle, resolver: Resolver, out: Mapped) -> None:
    for key, name in (*TCP_FIELDS.items(), ("connections", "tcp_active_connections")):
        if cycle.ok(key):
            out.edge_fields.add(name)
            for s in cycle.results[key]:
                if (row := _edge_row(out, resolver, s.labels)) is not None:
                    _add(row, name, s.value)


def _quantiles(buckets: histogram.Buckets) -> dict[str, float | None]:
    return dict(zip(QUANTILES, histogram.quantiles(QUANTILES.values(), buckets), strict=True))


def _map_latency(cycle: Cycle, resolver: Resolver, out: Mapped) -> dict[ServiceKey, histogram.Buckets]:
    """Per edge, the quantiles of its bucket rates (several cluster names of one edge, e.g. the truncated names of a
    StatefulSet's pods, are summed first). Returns each service's buckets, summed over its edges."""
    fields = tuple(QUANTILES)
    out.edge_fields.update(fields)
    out.service_fields.update(fields)
    service_buckets: dict[ServiceKey, histogram.Buckets] = {}
    source = cycle.available.latency_source
    if source == "none" or not cycle.ok("latency_buckets"):
        if source != "none":  # the query failed: keep the stored quantiles
            out.edge_fields.difference_update(fields)
            out.service_fields.difference_update(fields)
        return service_buckets
    edge_buckets: dict[EdgeKey, histogram.Buckets] = {}
    # ~35,000 series at 1,000 services, all on the cycle's critical path: each `le` parsed once, the buckets grouped
    # by the five labels that make an edge first, then each group resolved once to its edge.
    bounds: dict[str, float | None] = {}
    if source in ("envoy", "istio"):
        by_series: dict[tuple, histogram.Buckets] = {}
        for labels, value in cycle.results["latency_buckets"]:
            le = labels.get("le", "")
            bound = bounds[le] if le in bounds else bounds.setdefault(le, histogram.parse_le(le))
            if bound is None or value is None:
                continue
            try:
                seen = _EDGE_LABELS(labels)
            except KeyError:  # Prometheus leaves out a label whose value is empty
                seen = (*_source(labels), labels.get("envoy_cluster_name", ""))
            buckets = by_series.get(seen)
            if buckets is None:
                buckets = by_series[seen] = {}
            buckets[bound] = buckets.get(bound, 0.0) + value
        for seen, buckets in by_series.items():
            dest = resolver.destination(seen[-1])
            if dest is None:
                continue
            key = (*seen[:-1], *dest)
            if key in edge_buckets:
                histogram.add(edge_buckets[key], buckets)
            else:
                edge_buckets[key] = buckets
    else:
        for labels, value in cycle.results["latency_buckets"]:
            le = labels.get("le", "")
            bound = bounds[le] if le in bounds else bounds.setdefault(le, histogram.parse_le(le))
            if bound is None or value is None:
                continue
            for key in _wasm_edges(labels, resolver):
                buckets = edge_buckets.setdefault(key, {})
                buckets[bound] = buckets.get(bound, 0.0) + value
    for key, buckets in edge_buckets.items():
        out.edges.setdefault(key, {}).update(_quantiles(buckets))
        histogram.add(service_buckets.setdefault(key[-2:], {}), buckets)
    return service_buckets


def _sum_services(out: Mapped, resolver: Resolver, service_buckets: dict[ServiceKey, histogram.Buckets]) -> None:
    """Services: sums over their callers (rates and latency buckets); quiet meshed services read 0."""
    for row in out.edges.values():
        if "request_rate" in row:
            row["success_rate"] = success_ratio(row["request_rate"], row.get("rate_5xx"))
    services = out.services
    for (*_source_key, dns, dsvc), row in out.edges.items():
        srow = services.setdefault((dns, dsvc), {})
        for name in SUMMED:
            if name in row:
                _add(srow, name, row[name])
                srow.setdefault(name, 0.0)
    for key in resolver.services:
        if key not in services:
            services[key] = {name: 0.0 for name in SUMMED} if resolver.meshed.get(key) else {}
    for key, buckets in service_buckets.items():
        services.setdefault(key, {}).update(_quantiles(buckets))
    _route_roots(out, resolver, service_buckets)
    for row in services.values():
        row["success_rate"] = success_ratio(row.get("request_rate"), row.get("rate_5xx"))
        row.setdefault("routed_backends", [])
    out.service_fields.update(f for f in out.edge_fields if f in (*SUMMED, "success_rate"))
    out.service_fields.add("routed_backends")


def _route_roots(out: Mapped, resolver: Resolver, service_buckets: dict[ServiceKey, histogram.Buckets]) -> None:
    """A split root's KPIs are its backends': callers' sidecars route what they address to the root to the
    backends' clusters (reference osm.md §4.3), so no series names the root. Rates and latency buckets are summed
    (so its quantiles are those of the traffic addressed to it). A backend called directly is counted too: Envoy's
    stats cannot tell the two apart. Two splits on one root: the first by name."""
    for (ns, root), backends in resolver.splits.items():
        if (ns, root) not in resolver.services:
            continue
        row = out.services.setdefault((ns, root), {})
        # The root's own clusters count too (a sidecar that has not yet applied the split still uses them).
        parts = [dict(row)] + [out.services[(ns, b)] for b in backends if (ns, b) in out.services and b != root]
        row["routed_backends"] = [b for b in backends if b != root]
        for name in SUMMED:
            values = [p[name] for p in parts if p.get(name) is not None]
            row[name] = sum(values) if values else row.get(name)
        buckets: histogram.Buckets = {}
        for service in (root, *backends):
            histogram.add(buckets, service_buckets.get((ns, service), {}))
        row.update(_quantiles(buckets))


def map_cycle(cycle: Cycle, resolver: Resolver) -> Mapped:
    """Turn query results into rows (plain dicts of model fields). Pure: no database, no network."""
    out = Mapped()
    if cycle.mesh == "istio":
        cycle = _istio_normalized(cycle, resolver)
        _map_mtls(cycle, resolver, out)
    _map_requests(cycle, resolver, out)
    _map_tcp(cycle, resolver, out)
    service_buckets = _map_latency(cycle, resolver, out)
    _map_tls(cycle, resolver, out)
    _map_denials(cycle, resolver, out)
    _sum_services(out, resolver, service_buckets)
    _map_resilience(cycle, resolver, out)
    _map_boundary(cycle, out)
    out.splits = _map_splits(cycle, resolver, out.edges)
    return out


def _istio_normalized(cycle: Cycle, resolver: Resolver) -> Cycle:
    """The cycle with its answers in OSM's label vocabulary (`istio_catalog.Normalizer`)."""
    kinds = {(w["namespace"], w["name"]): w["kind"] for w in resolver.workloads.values()}
    normalizer = istio_catalog.Normalizer(kinds)
    results = {key: normalizer.samples(samples) for key, samples in cycle.results.items()}
    return dataclasses.replace(cycle, results=results)


def _map_mtls(cycle: Cycle, resolver: Resolver, out: Mapped) -> None:
    """Per edge, the share of its requests the destination's sidecar received over mutual TLS (Istio's
    `connection_security_policy`); None on an edge without requests."""
    if not cycle.ok("requests"):
        return
    out.edge_fields.add("mtls_request_share")
    totals: dict[EdgeKey, list[float]] = {}
    for s in cycle.results["requests"]:
        dest = resolver.destination(s.labels.get("envoy_cluster_name", ""))
        if dest is None or s.value is None:
            continue
        row = totals.setdefault((*_source(s.labels), *dest), [0.0, 0.0])
        row[0] += s.value
        if s.labels.get("connection_security_policy") == istio_catalog.MUTUAL_TLS:
            row[1] += s.value
    for key, (total, mutual) in totals.items():
        out.edges.setdefault(key, {})["mtls_request_share"] = mutual / total if total > 0 else None


def _pod_services(labels: dict, resolver: Resolver) -> list[ServiceKey]:
    """Every service whose selector picks the scraped pod (its workload's template labels; else its app label)."""
    ns = labels.get("source_namespace", "")
    workload = resolver.wasm_workload(catalog.mangle(ns), catalog.mangle(labels.get("source_workload_name", "")))
    if workload and workload["namespace"] == ns:
        names = workload["services"]
    else:
        names = resolver.services_of_labels(ns, {"app": labels.get("source_service", "")})
    return [(ns, name) for name in names]


def _map_resilience(cycle: Cycle, resolver: Resolver, out: Mapped) -> None:
    """Rate-limited, retried and overflowed requests/s per destination service. Rate-limited: what the service's
    pods' sidecars refused (a pod several services select counts for each); retried and overflow: the callers'
    clusters to it, and a split root's include its backends' (callers route to the backends' clusters). A counter
    this Prometheus does not keep is None for every service (MetricsState says why); a kept one reads 0 on a quiet
    meshed service. When the query fails the stored values stay."""
    kept = cycle.available.resilience
    if kept and not cycle.ok("resilience"):
        return
    out.service_fields.update(RESILIENCE_FIELDS.values())
    rates: dict[str, dict[ServiceKey, float]] = {key: {} for key in catalog.RESILIENCE}
    for s in cycle.results.get("resilience", []):
        key = s.labels.get("resilience", "")
        if key not in rates or s.value is None:
            continue
        if key == "rate_limited":
            destinations = _pod_services(s.labels, resolver)
        else:
            dest = resolver.destination(s.labels.get("envoy_cluster_name", ""))
            destinations = [dest] if dest else []
        for dest in destinations:
            rates[key][dest] = rates[key].get(dest, 0.0) + s.value
    for (ns, root), backends in resolver.splits.items():
        for key in ("retried", "overflow"):
            routed = [rates[key][(ns, b)] for b in backends if b != root and (ns, b) in rates[key]]
            if routed:
                rates[key][(ns, root)] = rates[key].get((ns, root), 0.0) + sum(routed)
    for service, row in out.services.items():
        quiet = 0.0 if resolver.meshed.get(service) else None
        for key, name in RESILIENCE_FIELDS.items():
            row[name] = rates[key].get(service, quiet) if key in kept else None


def _map_boundary(cycle: Cycle, out: Mapped) -> None:
    """Ingress and egress requests/s (and 5xx) per counting workload, and per egress cluster."""
    if not cycle.ok("boundary"):
        return
    out.boundary = {}
    for s in cycle.results["boundary"]:
        direction = s.labels.get("boundary", "")
        if direction not in ("ingress", "egress") or s.value is None:
            continue
        peer = s.labels.get("envoy_cluster_name", "") if direction == "egress" else ""
        row = out.boundary.setdefault((direction, *_source(s.labels), peer), [0.0, 0.0])
        row[0] += s.value
        if s.labels.get("envoy_response_code_class") == "5":
            row[1] += s.value


def _wasm_source(labels: dict, resolver: Resolver) -> tuple[str, str, str, str]:
    ns, name = labels.get("source_namespace", ""), labels.get("source_name", "")
    workload = resolver.wasm_workload(ns, name)
    if workload:
        return workload["namespace"], workload["app"], workload["kind"], workload["name"]
    return resolver.namespaces.get(ns, ns), name, "", ""


def _wasm_destinations(labels: dict, resolver: Resolver) -> list[ServiceKey]:
    workload = resolver.wasm_workload(labels.get("destination_namespace", ""), labels.get("destination_name", ""))
    if not workload:
        return []
    return [(workload["namespace"], svc) for svc in workload["services"][:1]]


def _wasm_edges(labels: dict, resolver: Resolver) -> list[EdgeKey]:
    source = _wasm_source(labels, resolver)
    return [(*source, *dest) for dest in _wasm_destinations(labels, resolver)]


def _map_tls(cycle: Cycle, resolver: Resolver, out: Mapped) -> None:
    fields = ("tls_handshake_rate", "tls_error_rate", "certificate_expires_at")
    if not cycle.available.tls:
        out.edge_fields.update(fields)  # known: not available (stored as None)
        return

    def rows(key: str):
        for s in cycle.results.get(key, []):
            if (row := _edge_row(out, resolver, s.labels)) is not None:
                yield row, s.value

    for key, name in (("tls_handshakes", "tls_handshake_rate"), ("tls_errors", "tls_error_rate")):
        if cycle.ok(key):
            out.edge_fields.add(name)
            for row, value in rows(key):
                _add(row, name, value)
    if cycle.ok("cert_expiry_cluster"):
        out.edge_fields.add("certificate_expires_at")
        for row, value in rows("cert_expiry_cluster"):
            _min(row, "_expiry", value)
        listener: dict[tuple[str, str], float] = {}
        for s in cycle.results.get("cert_expiry_listener", []):
            _min(listener, (s.labels.get("source_namespace", ""), s.labels.get("source_service", "")), s.value)
        for (*_source_key, dns, dsvc), row in out.edges.items():
            if "_expiry" in row or listener:
                _min(row, "_expiry", listener.get((dns, resolver.apps.get((dns, dsvc), dsvc))))
    for row in out.edges.values():
        if "_expiry" in row:
            row["certificate_expires_at"] = _timestamp(row.pop("_expiry"))


def _map_denials(cycle: Cycle, resolver: Resolver, out: Mapped) -> None:
    """Per edge, denials are unknown on OSM v1.2 (see catalog.DENIALS_PER_EDGE_UNAVAILABLE): `denied_rate` is stored
    as None. What the sidecars do count, per caller and per destination, goes to `out.refusals`."""
    out.edge_fields.add("denied_rate")
    rows: dict[tuple[str, str, str, str, str, str], float] = {}
    if cycle.ok("passthrough"):
        for s in cycle.results["passthrough"]:
            if s.value is not None:
                key = ("caller", "passthrough", *_source(s.labels))
                rows[key] = rows.get(key, 0.0) + s.value
    if cycle.available.denials and cycle.ok("refusals"):
        for s in cycle.results["refusals"]:
            kind = s.labels.get("refusal", "")
            side = catalog.REFUSAL_SIDES.get(kind)
            if side is None or s.value is None:
                continue
            row_key = (side, kind, *_source(s.labels))
            rows[row_key] = rows.get(row_key, 0.0) + s.value
        out.refusals_known = True
    if cycle.ok("passthrough") or (cycle.available.denials and cycle.ok("refusals")):
        out.refusal_rows = rows


def denials_statement(available: Available, refusals: dict[str, dict[tuple[str, str], float]] | None) -> str:
    """What the product says about denied traffic: why it is not known per edge, then what is known per side."""
    if not available.denials:
        return f"{catalog.DENIALS_PER_EDGE_UNAVAILABLE}; and {catalog.DENIALS_NOT_KEPT}"
    if refusals is None:
        return f"{catalog.DENIALS_PER_EDGE_UNAVAILABLE}. Refusals per side: unknown (the query failed)"

    def listed(side: str, unit: str) -> str:
        rows = sorted(((v, k) for k, v in refusals.get(side, {}).items() if v > 0), key=lambda r: (-r[0], r[1]))
        if not rows:
            return "none"
        text = ", ".join(f"{ns}/{app} {value:.3g}{unit}" for value, (ns, app) in rows[:10])
        return text + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")

    return (
        f"{catalog.DENIALS_PER_EDGE_UNAVAILABLE}. Refused by the caller's own sidecar (no route), by caller "
        f"(namespace/app): {listed('caller', ' conn/s')}. Refused at the destination (no mTLS, or RBAC), by "
        f"destination (namespace/app): {listed('destination', '/s')}"
    )


def _map_splits(cycle: Cycle, resolver: Resolver, edges: dict[EdgeKey, dict]) -> list[dict]:
    if not cycle.ok("requests"):
        return []
    short: dict[ServiceKey, float] = {}
    for (*_source_key, dns, dsvc), row in edges.items():
        if row.get("request_rate") is not None:
            short[(dns, dsvc)] = short.get((dns, dsvc), 0.0) + row["request_rate"]
    long: dict[ServiceKey, float] | None = None
    if cycle.ok("requests_long"):
        long = {}
        for s in cycle.results["requests_long"]:
            dest = resolver.destination(s.labels.get("envoy_cluster_name", ""))
            if dest is not None and s.value is not None:
                long[dest] = long.get(dest, 0.0) + s.value
    rows = []
    for (ns, root), backends in resolver.splits.items():
        total_short = sum(short.get((ns, b), 0.0) for b in backends)
        total_long = sum(long.get((ns, b), 0.0) for b in backends) if long is not None else 0.0
        for backend in backends:
            rate = short.get((ns, backend), 0.0)
            row = {
                "namespace": ns,
                "root": root,
                "backend": backend,
                "request_rate": rate,
                "share_short": rate / total_short if total_short > 0 else None,
                "short_window_seconds": round(cycle.windows.short),
            }
            if long is not None:
                row["share_5m"] = long.get((ns, backend), 0.0) / total_long if total_long > 0 else None
            rows.append(row)
    return rows


# -- writing -----------------------------------------------------------------------------------------------------


@dataclass
class Stored:
    """What the write needs of the stored KPI rows, read while Prometheus answers (only the cycle, under the cluster's
    lock, writes them): each service's history, and the keys of the rows a cycle may find gone."""

    history: dict[ServiceKey, list] = field(default_factory=dict)
    services: list[tuple] = field(default_factory=list)  # (pk, namespace, service)
    edges: list[tuple] = field(default_factory=list)  # (pk, *EDGE_KEY)

    @classmethod
    def read(cls, cluster: Cluster) -> Stored:
        out = cls()
        rows = ServiceKPI.objects.filter(cluster=cluster).values_list("pk", "namespace", "service", "history")
        for pk, ns, svc, history in rows:
            out.history[(ns, svc)] = history
            out.services.append((pk, ns, svc))
        out.edges = list(EdgeKPI.objects.filter(cluster=cluster).values_list("pk", *EDGE_KEY))
        return out


def _store_services(cluster: Cluster, cycle: Cycle, mapped: Mapped, now: datetime, history: dict) -> None:
    fields = sorted(mapped.service_fields)
    rows = []
    for (ns, svc), row in mapped.services.items():
        points = list(history.get((ns, svc)) or [])
        points.append([round(cycle.at, 3), row.get("request_rate"), row.get("success_rate"), row.get("p99_ms")])
        rows.append(
            {
                "cluster_id": cluster.pk,
                "namespace": ns,
                "service": svc,
                "collected_at": now,
                "history": points[-HISTORY_POINTS:],
                **{f: row.get(f) for f in fields},
            }
        )
    upsert(
        ServiceKPI,
        rows,
        unique_fields=["cluster", "namespace", "service"],
        update_fields=[*fields, "collected_at", "history"],
    )


REFUSAL_KEY = ("side", "kind", "namespace", "app", "workload_kind", "workload_name")


def _store_edges(cluster: Cluster, mapped: Mapped, now: datetime) -> None:
    fields = sorted(mapped.edge_fields)
    upsert(
        EdgeKPI,
        [
            {
                "cluster_id": cluster.pk,
                **dict(zip(EDGE_KEY, key, strict=True)),
                "collected_at": now,
                **{f: row.get(f) for f in fields},
            }
            for key, row in mapped.edges.items()
        ],
        unique_fields=["cluster", *EDGE_KEY],
        update_fields=[*fields, "collected_at"],
    )


def _store_splits(
    cluster: Cluster, cycle: Cycle, mapped: Mapped, split_names: dict[tuple[str, str], str], now: datetime
) -> None:
    rows = [
        SplitShare(
            cluster=cluster,
            namespace=r["namespace"],
            split=split_names[(r["namespace"], r["root"])],
            backend=r["backend"],
            collected_at=now,
            **{k: r[k] for k in ("share_short", "share_5m", "request_rate", "short_window_seconds") if k in r},
        )
        for r in mapped.splits
    ]
    fields = ["share_short", "request_rate", "short_window_seconds", "collected_at"]
    if cycle.ok("requests_long"):
        fields.append("share_5m")
    SplitShare.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["cluster", "namespace", "split", "backend"], update_fields=fields
    )
    _delete_missing(
        SplitShare.objects.filter(cluster=cluster),
        ("namespace", "split", "backend"),
        {(r.namespace, r.split, r.backend) for r in rows},
    )


def _istio_state(cycle: Cycle) -> dict:
    """What an Istio cycle reads and what it does not, in MetricsState's fields."""
    latency = cycle.available.latency_source
    return {
        "latency_source": latency,
        "latency_unavailable_reason": istio_catalog.LATENCY_UNAVAILABLE if latency == "none" else "",
        "tls_unavailable_reason": istio_catalog.TLS_UNAVAILABLE,
        "denials_unavailable_reason": istio_catalog.DENIALS_STATEMENT,
        **{f"{key}_unavailable_reason": istio_catalog.RESILIENCE_UNAVAILABLE for key in catalog.RESILIENCE},
        "ingress_unavailable_reason": istio_catalog.INGRESS_UNAVAILABLE,
    }


def _store_state(cluster: Cluster, cycle: Cycle, mapped: Mapped, now: datetime) -> None:
    available = cycle.available
    defaults = {
        "collected_at": now,
        "prometheus_version": cycle.version,
        "scrape_interval_seconds": cycle.windows.scrape_interval,
        "queries": cycle.queries,
    }
    if cycle.mesh == "istio":
        defaults |= {"preflight": {}, **_istio_state(cycle)}
    else:
        defaults |= {
            "latency_source": available.latency_source,
            "latency_unavailable_reason": catalog.LATENCY_UNAVAILABLE if available.latency_source == "none" else "",
            "tls_unavailable_reason": "" if available.tls else catalog.TLS_UNAVAILABLE,
            "denials_unavailable_reason": denials_statement(available, mapped.refusals),
            **{
                f"{key}_unavailable_reason": "" if key in available.resilience else catalog.resilience_unavailable(key)
                for key in catalog.RESILIENCE
            },
            "ingress_unavailable_reason": "" if available.ingress else catalog.INGRESS_UNAVAILABLE,
            **({"preflight": cycle.preflight} if cycle.preflight is not None else {}),
        }
    MetricsState.objects.update_or_create(cluster=cluster, defaults=defaults)


def _store_refusals(cluster: Cluster, mapped: Mapped, now: datetime) -> None:
    """Replace the refusal rows when their queries answered; rows at zero are not kept."""
    if mapped.refusal_rows is None:
        return
    rows = [
        Refusal(cluster=cluster, collected_at=now, rate=rate, **dict(zip(REFUSAL_KEY, key, strict=True)))
        for key, rate in mapped.refusal_rows.items()
        if rate > 0
    ]
    Refusal.objects.filter(cluster=cluster).delete()
    Refusal.objects.bulk_create(rows, batch_size=500)


BOUNDARY_KEY = ("direction", "namespace", "app", "workload_kind", "workload_name", "peer")


def _store_boundary(cluster: Cluster, mapped: Mapped, now: datetime) -> None:
    """Replace the boundary rows when their query answered; rows at zero are kept (a quiet egress is still known)."""
    if mapped.boundary is None:
        return
    rows = [
        BoundaryTraffic(
            cluster=cluster,
            collected_at=now,
            request_rate=requests,
            rate_5xx=errors,
            **dict(zip(BOUNDARY_KEY, key, strict=True)),
        )
        for key, (requests, errors) in mapped.boundary.items()
    ]
    BoundaryTraffic.objects.filter(cluster=cluster).delete()
    BoundaryTraffic.objects.bulk_create(rows, batch_size=500)


def store(
    cluster: Cluster,
    cycle: Cycle,
    mapped: Mapped,
    split_names: dict[tuple[str, str], str],
    stored: Stored,
) -> None:
    """Upsert the rows in one transaction; fields whose query failed keep their stored values."""
    now = timezone.now()
    with transaction.atomic():
        _store_services(cluster, cycle, mapped, now, stored.history)
        _store_edges(cluster, mapped, now)
        if cycle.ok("requests"):
            # Rows nobody reported this time are gone (a deleted service, an edge that stopped).
            _delete_gone(ServiceKPI, stored.services, set(mapped.services))
            _delete_gone(EdgeKPI, stored.edges, set(mapped.edges))
            _store_splits(cluster, cycle, mapped, split_names, now)
        _store_refusals(cluster, mapped, now)
        _store_boundary(cluster, mapped, now)
        _store_state(cluster, cycle, mapped, now)


def _delete_missing(queryset, key_fields: tuple[str, ...], keep: set[tuple]) -> None:
    _delete_gone(queryset.model, queryset.values_list("pk", *key_fields), keep)


def _delete_gone(model, rows, keep: set[tuple]) -> None:
    """Deletes the rows, (pk, *key), whose key is not in `keep`."""
    gone = [pk for pk, *key in rows if tuple(key) not in keep]
    for start in range(0, len(gone), 500):
        model.objects.filter(pk__in=gone[start : start + 500]).delete()


def _split_names(cluster: Cluster) -> dict[tuple[str, str], str]:
    """The split each (namespace, root service) belongs to, by name: TrafficSplits, and Istio's VirtualServices."""
    names = {
        (ns, root_service_name(root)): name
        for ns, name, root in TrafficSplit.objects.filter(cluster=cluster).values_list(
            "namespace", "name", "root_service"
        )
    }
    for vs in virtual_service_splits(cluster):  # Istio: the VirtualService names the split
        names.setdefault((vs.namespace, vs.root_service), vs.name)
    return names


def collect_metrics_into(cluster: Cluster, run: CollectionRun, *, at: float | None = None) -> Cycle:
    """Query, map and store one cycle, filling in the run record. PrometheusError propagates (nothing stored)."""
    resolver: Resolver | None = None
    split_names: dict[tuple[str, str], str] = {}
    stored: Stored | None = None
    snapshot_seconds = 0.0

    def read_snapshot() -> None:
        # What the mapping and the write read from the database, read while Prometheus answers (0.1-0.2 s of a
        # 1,000-service cycle that would otherwise come after the last answer).
        nonlocal resolver, split_names, stored, snapshot_seconds
        started = time.perf_counter()
        resolver = Resolver.current(cluster)
        split_names = _split_names(cluster)
        stored = Stored.read(cluster)
        snapshot_seconds = time.perf_counter() - started

    with gateway_for(cluster) as gateway:
        try:
            cycle = query_cycle(gateway, cluster, at=at, meanwhile=read_snapshot)
        finally:
            run.api_requests = gateway.requests
    assert resolver is not None and stored is not None  # ask_cycle calls `meanwhile` on every path that returns
    cycle.timings["snapshot"] = snapshot_seconds
    started = time.perf_counter()
    mapped = map_cycle(cycle, resolver)
    cycle.timings["map"] = time.perf_counter() - started
    started = time.perf_counter()
    store(cluster, cycle, mapped, split_names, stored)
    cycle.timings["write"] = time.perf_counter() - started
    warnings = list(cycle.warnings)
    warnings += list(cycle.failures.values())  # each reason starts with its query's name
    if resolver.unresolved:
        names = sorted(resolver.unresolved)
        warnings.append(
            f"{len(names)} Envoy cluster name(s) match no service in the snapshot: {', '.join(names[:10])}"
            + (" ..." if len(names) > 10 else "")
        )
    run.warnings = warnings
    run.counts = {
        "services": len(mapped.services),
        "edges": len(mapped.edges),
        "split_backends": len(mapped.splits),
        "queries": cycle.queries,
        "failed_queries": len(cycle.failures),
    }
    run.timings = {phase: round(seconds, 4) for phase, seconds in cycle.timings.items()}
    if cycle.failures:
        run.status = CollectionRun.Status.PARTIAL
        run.error = "; ".join(cycle.failures.values())[:2000]
    return cycle


def collect_and_record(
    cluster: Cluster, *, attempt: int = 1, at: float | None = None
) -> tuple[CollectionRun, PrometheusError | None]:
    """One recorded metrics cycle. A PrometheusError does not propagate: it is recorded and returned."""
    try:
        # The cyclic GC off for the cycle: decoding the answers builds ~100,000 small acyclic dicts and lists (the
        # latency buckets alone 35,000 samples at 1,000 services), and each generation scan would find nothing.
        with gc_paused(), recorded_run(cluster, CollectionRun.Kind.METRICS, attempt=attempt) as run:
            collect_metrics_into(cluster, run, at=at)
    except PrometheusError as exc:
        return run, exc
    return run, None
