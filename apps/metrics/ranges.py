"""Range data for one service's charts, fetched on demand by the pages (the one place pages reach Prometheus)."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings

from apps.clusters.models import Cluster
from apps.core.breaker import CircuitBreaker
from apps.core.locks import page_redis_breaker, page_redis_client
from apps.core.windows import TimeRange, preset
from apps.mesh.istio_splits import virtual_service_splits
from apps.mesh.models import MeshState, Pod, Service, TrafficSplit, Workload, selects

from . import catalog, istio_catalog
from .models import KPI_FIELDS, MetricsState, success_ratio
from .prometheus import PrometheusError, PrometheusGateway, RangeSeries, TransientPrometheusError, gateway_for

# Per cluster: a Prometheus that timed out is not asked again by page requests for a while (one per web process).
BREAKER = CircuitBreaker()
# A query is not started with less than this left of the page's deadline (the smallest chart timeout settings allow).
MIN_QUERY_SECONDS = 0.1

T = TypeVar("T")

SERIES = KPI_FIELDS
REQUEST_SERIES = ("request_rate", "rate_2xx", "rate_4xx", "rate_5xx", "success_rate")  # all from one query


class DeadlinePassed(TransientPrometheusError):
    """A query not sent: the page request's Prometheus deadline had passed."""


class PageDeadline:
    """Prometheus on the page path (charts, the compare page): every query of one request shares one deadline,
    MESHBOARD_CHART_READ_TIMEOUT in total from when this object is made, not per query; each query's read timeout is
    what is left of it. A query that times out or cannot reach Prometheus trips the cluster's breaker, so the next
    requests fail at once until it closes (MESHBOARD_CHART_BREAKER_SECONDS). The connect timeout is bounded by what
    is left too (gateway_for), so an address that drops packets costs one request its deadline, once per breaker
    period."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seconds = float(settings.MESHBOARD_CHART_READ_TIMEOUT)
        self.ends = time.monotonic() + self.seconds
        self.tripped_until: float | None = None  # set when a query of this request tripped the breaker

    def held_back(self) -> str:
        """While the breaker is open, the sentence saying Prometheus is not asked and when it will be; else ""."""
        until = BREAKER.open_until(_breaker_key(self.cluster))
        return "" if until is None else f"Prometheus is not answering; retrying at {_clock(until)}"

    def ask(self, call: Callable[[PrometheusGateway], T]) -> T:
        """`call(gateway)` with a read timeout of what is left of the deadline. Raises DeadlinePassed, without asking,
        when less than MIN_QUERY_SECONDS is left, and the PrometheusError of a failed query (after tripping the
        breaker if Prometheus timed out or could not be reached)."""
        left = self.ends - time.monotonic()
        if left < MIN_QUERY_SECONDS:
            raise DeadlinePassed(f"not asked: the {self.seconds:g} s deadline for Prometheus had passed")
        with gateway_for(self.cluster, read_timeout=round(left, 2)) as gateway:
            try:
                return call(gateway)
            except PrometheusError as exc:
                if exc.transient and exc.status is None:  # timed out or unreachable: spare the next requests the wait
                    self.tripped_until = BREAKER.trip(
                        _breaker_key(self.cluster), settings.MESHBOARD_CHART_BREAKER_SECONDS
                    )
                raise

    def why(self, exc: PrometheusError) -> str:
        """What a page says of a failed query: its reason, and when Prometheus will be asked again if it tripped."""
        if self.tripped_until is None:
            return exc.reason
        return f"Prometheus is not answering ({exc.reason}); retrying at {_clock(self.tripped_until)}"


@dataclass(frozen=True)
class _Frame:
    """Where a chart's points fall: the scrape interval, the step between points, the rate() window, and the ends."""

    scrape: float
    step: float
    rate_window: str
    start: float
    end: float
    span: int

    @property
    def timestamps(self) -> list[float]:
        return [self.start + i * self.step for i in range(round(self.span / self.step) + 1)]


def _frame(span: int, scrape: float, now: float) -> _Frame:
    step = catalog.range_step(span, scrape)
    end = math.floor(now / step) * step
    return _Frame(scrape, step, catalog.duration(catalog.range_window(step, scrape)), end - span, end, span)


def service_pods(cluster: Cluster, namespace: str, service: str) -> tuple[list[str], list[str]]:
    """Names of the service's pods (for truncated cluster names) and of its workloads (for OSM's WASM labels)."""
    svc = Service.objects.filter(cluster=cluster, namespace=namespace, name=service).first()
    selector = (svc.selector if svc else None) or {}
    if not selector:
        return [], []
    pods = Pod.objects.filter(cluster=cluster, namespace=namespace).values_list("name", "labels")
    workloads = Workload.objects.filter(cluster=cluster, namespace=namespace).values_list("name", "template_labels")
    return (
        [name for name, labels in pods if selects(selector, labels or {})],
        [name for name, labels in workloads if selects(selector, labels or {})],
    )


def _routed_backends(cluster: Cluster, namespace: str, service: str) -> list[str]:
    """The backends of the first TrafficSplit whose root is `service` (the metrics cycle takes the same one), else
    of the first VirtualService that splits it (Istio)."""
    for split in TrafficSplit.objects.filter(cluster=cluster, namespace=namespace).order_by("name"):
        if split.root_service_name == service:
            return [b for b in split.backend_services if b != service]
    for vs in virtual_service_splits(cluster):
        if vs.namespace == namespace and vs.root_service == service:
            return [b for b in vs.backend_services if b != service]
    return []


def is_istio(cluster: Cluster) -> bool:
    state = MeshState.objects.filter(cluster=cluster).only("istio_revisions", "osm_version", "mesh_name").first()
    return bool(state and state.is_istio)


def _align(points: list[tuple[float, float | None]], timestamps: list[float]) -> list[float | None]:
    by_ts = {round(t, 3): v for t, v in points}
    return [by_ts.get(round(t, 3)) for t in timestamps]


def _sum(*columns: list[float | None]) -> list[float | None]:
    out: list[float | None] = []
    for values in zip(*columns, strict=True):
        present = [v for v in values if v is not None]
        out.append(sum(present) if present else None)
    return out


def _queries(
    cluster: Cluster, namespace: str, service: str, frame: _Frame, state: MetricsState | None
) -> tuple[dict[str, str], dict[str, str]]:
    """The range queries behind the charts, by series (or "requests" for the five request series), and the series
    that cannot be drawn with why."""
    latency_source = state.latency_source if state else "envoy"
    if is_istio(cluster):
        services = [service, *_routed_backends(cluster, namespace, service)]
        selector = istio_catalog.service_selector(namespace, services)
        queries = istio_catalog.series_queries(selector, frame.rate_window, latency_source == "istio")
        reason = (state.latency_unavailable_reason if state else "") or istio_catalog.LATENCY_UNAVAILABLE
        return queries, {name: reason for name in catalog.QUANTILES if name not in queries}
    pods, workloads = service_pods(cluster, namespace, service)
    regexes = [catalog.service_cluster_regex(namespace, service, pods)]
    # A split root's traffic is routed to its backends' clusters (no series names the root): chart theirs, summed.
    for backend in _routed_backends(cluster, namespace, service):
        backend_pods, backend_workloads = service_pods(cluster, namespace, backend)
        regexes.append(catalog.service_cluster_regex(namespace, backend, backend_pods))
        workloads = sorted({*workloads, *backend_workloads})
    selector = f'envoy_cluster_name=~"{catalog.promql_string("|".join(regexes))}"'
    queries = {
        "requests": catalog.series_requests(selector, frame.rate_window),
        "tcp_bytes_sent_rate": catalog.series_bytes("upstream_cx_tx_bytes_total", selector, frame.rate_window),
        "tcp_bytes_received_rate": catalog.series_bytes("upstream_cx_rx_bytes_total", selector, frame.rate_window),
    }
    unavailable = {}
    for name, q in catalog.QUANTILES.items():
        if latency_source == "envoy":
            queries[name] = catalog.series_envoy_quantile(q, selector, frame.rate_window)
        elif latency_source == "osm-wasm":
            queries[name] = catalog.series_wasm_quantile(q, namespace, workloads, frame.rate_window)
        else:
            unavailable[name] = (state.latency_unavailable_reason if state else "") or catalog.LATENCY_UNAVAILABLE
    return queries, unavailable


def _request_series(result: list[RangeSeries], timestamps: list[float]) -> dict[str, list[float | None]]:
    """The request series from one query's per-class results; a class never seen is 0 where any request was."""
    by_class = {r.labels.get("envoy_response_code_class", ""): _align(r.points, timestamps) for r in result}
    if not by_class:
        return {}
    total = _sum(*by_class.values())
    out = {"request_rate": total}
    for cls in ("2", "4", "5"):
        out[f"rate_{cls}xx"] = by_class.get(cls) or [0.0 if t is not None else None for t in total]
    out["success_rate"] = [success_ratio(t, e) for t, e in zip(total, out["rate_5xx"], strict=True)]
    return out


def _fetch(queries: dict[str, str], frame: _Frame, data: dict, deadline: PageDeadline) -> bool:
    """Run the queries into `data["series"]` within `deadline`; failures go to `data["unavailable"]`. True when every
    query answered. The first query failing for a transient reason speaks for the whole chart (`"*"`); after a
    timeout, or once the deadline has passed, no further query is sent and each series left says why."""
    series, unavailable, timestamps = data["series"], data["unavailable"], data["timestamps"]

    def unavailable_as(name: str, reason: str) -> None:
        for target in REQUEST_SERIES if name == "requests" else (name,):
            unavailable[target] = reason

    names = list(queries)
    answered = True
    for i, name in enumerate(names):
        try:
            result = deadline.ask(
                lambda gateway, expr=queries[name], name=name: gateway.range(
                    expr, frame.start, frame.end, frame.step, what=f"chart {name}"
                )
            )
        except PrometheusError as exc:
            if i == 0 and exc.transient:
                why = deadline.why(exc)
                unavailable["*"] = why if deadline.tripped_until else f"metrics unavailable: {why}"
                return False
            if isinstance(exc, DeadlinePassed) or deadline.tripped_until is not None:
                for left in names[i:]:  # the query that failed and those not sent
                    unavailable_as(left, deadline.why(exc))
                return False
            unavailable_as(name, exc.reason)
            answered = False
            continue
        if name == "requests":
            series.update(_request_series(result, timestamps))
        elif result:
            series[name] = _align(result[0].points, timestamps)
    return answered


def _breaker_key(cluster: Cluster) -> tuple[int, str]:
    return (cluster.pk, cluster.prometheus_url)  # a new URL is a new Prometheus: not held back by the old one


def _clock(unix: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix))


def _cached(key: str) -> dict | None:
    try:
        with page_redis_breaker():
            cached = page_redis_client().get(key)
    except Exception:  # a cache that is down must not take the chart with it
        return None
    if not cached:
        return None
    data = json.loads(cached)
    data["cached"] = True
    return data


def service_series(
    cluster: Cluster, namespace: str, service: str, window: str | TimeRange, *, now: float | None = None
) -> dict:
    """Chart data for one service over `window` ("15m", "1h", "6h", "24h" or "7d", or a custom TimeRange), as plain
    JSON-able data.

    Returns::

        {
          "window": "1h", "start": 1700000000.0, "end": 1700003600.0,   # unix seconds; window "custom" for a range
          "step": 12.0,                  # seconds between points: max(range / 300, scrape interval)
          "rate_window": "60s",          # every rate() window: max(4 x scrape interval, step)
          "scrape_interval": 15.0,
          "latency_source": "envoy" | "osm-wasm" | "none",
          "timestamps": [1700000000.0, ...],          # oldest first, one per step
          "series": {                                 # each list is as long as `timestamps`; None = no data there
            "request_rate": [...],                    # requests/s, all classes (what callers' sidecars saw)
            "rate_2xx": [...], "rate_4xx": [...], "rate_5xx": [...],
            "success_rate": [...],                    # 0..1, non-5xx / all; None where there was no request
            "p50_ms": [...], "p95_ms": [...], "p99_ms": [...],
            "tcp_bytes_sent_rate": [...], "tcp_bytes_received_rate": [...],   # bytes/s, callers' side
          },
          "unavailable": {"p50_ms": "latency not available ...", ...},  # series that cannot be drawn, and why;
                                                                         # {"*": reason} when Prometheus failed
          "cached": False,               # True when served from Redis (kept for one step)
        }

    Never raises for Prometheus trouble: a failed query leaves its series all None with a reason in `unavailable`
    (and such answers are not cached). All its queries share one deadline, MESHBOARD_CHART_READ_TIMEOUT in total.
    When Prometheus times out or cannot be reached, no further query is sent and chart requests for that cluster
    fail at once for MESHBOARD_CHART_BREAKER_SECONDS, saying when they will try again. Raises ValueError for an
    unknown `window`.
    """
    return chart_data(
        cluster,
        window,
        who=f"series:{namespace}:{service}",
        queries=lambda frame, state: _queries(cluster, namespace, service, frame, state),
        now=now,
    )


def chart_data(
    cluster: Cluster,
    window: str | TimeRange,
    *,
    who: str,
    queries: Callable[[_Frame, MetricsState | None], tuple[dict[str, str], dict[str, str]]],
    series: Iterable[str] = SERIES,
    extra: dict | None = None,
    now: float | None = None,
) -> dict:
    """The charts' JSON (service_series' shape, plus `extra`) for whatever `queries(frame, state)` asks: the frame
    from the window and the scrape interval, a Redis cache for one step keyed by `who`, the circuit breaker, and
    every series all None until its query answers. Everything it asks of Prometheus and Redis fits in the chart
    deadline (MESHBOARD_CHART_READ_TIMEOUT, counted from here). Raises ValueError for an unknown `window`."""
    deadline = PageDeadline(cluster)
    time_range = window if isinstance(window, TimeRange) else preset(window)
    span = time_range.seconds
    if time_range.custom:
        now = time_range.end
    state = MetricsState.objects.filter(cluster=cluster).first()
    scrape = float(cluster.scrape_interval_seconds or (state.scrape_interval_seconds if state else 15.0))
    frame = _frame(span, scrape, float(now if now is not None else time.time()))
    key = f"meshboard:{who}:{cluster.pk}:{time_range.query}:{frame.end:.0f}"
    if (cached := _cached(key)) is not None:
        return cached

    timestamps = frame.timestamps
    data = {
        "window": time_range.key,
        "start": frame.start,
        "end": frame.end,
        "step": frame.step,
        "rate_window": frame.rate_window,
        "scrape_interval": scrape,
        "latency_source": state.latency_source if state else "envoy",
        **(extra or {}),
        "timestamps": timestamps,
        "series": {name: [None] * len(timestamps) for name in series},
        "unavailable": {},
        "cached": False,
    }
    if not cluster.prometheus_url:
        data["unavailable"]["*"] = "this cluster has no Prometheus URL"
        return data
    if held_back := deadline.held_back():
        data["unavailable"]["*"] = held_back
        return data
    asked, data["unavailable"] = queries(frame, state)
    if _fetch(asked, frame, data, deadline):
        BREAKER.reset(_breaker_key(cluster))
        with contextlib.suppress(Exception), page_redis_breaker():  # caching is best effort
            page_redis_client().set(key, json.dumps(data), ex=max(1, math.ceil(frame.step)))
    return data
