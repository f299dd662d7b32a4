"""Range data for one service's charts, fetched on demand by the pages (the one place pages reach Prometheus)."""

from __future__ import annotations

import contextlib
import json
import math
import time

from django.conf import settings

from apps.clusters.models import Cluster
from apps.core.locks import redis_client
from apps.mesh.models import Pod, Service, Workload

from . import catalog
from .models import MetricsState
from .prometheus import PrometheusError, PrometheusGateway

WINDOWS = {"15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800}
SERIES = (
    "request_rate",
    "rate_2xx",
    "rate_4xx",
    "rate_5xx",
    "success_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "tcp_bytes_sent_rate",
    "tcp_bytes_received_rate",
)


def _service_pods(cluster: Cluster, namespace: str, service: str) -> tuple[list[str], list[str]]:
    """Names of the service's pods (for truncated cluster names) and of its workloads (for OSM's WASM labels)."""
    svc = Service.objects.filter(cluster=cluster, namespace=namespace, name=service).first()
    selector = (svc.selector if svc else None) or {}
    if not selector:
        return [], []
    pods = [
        name
        for name, labels in Pod.objects.filter(cluster=cluster, namespace=namespace).values_list("name", "labels")
        if all((labels or {}).get(k) == v for k, v in selector.items())
    ]
    workloads = [
        name
        for name, labels in Workload.objects.filter(cluster=cluster, namespace=namespace).values_list(
            "name", "template_labels"
        )
        if all((labels or {}).get(k) == v for k, v in selector.items())
    ]
    return pods, workloads


def _align(points: list[tuple[float, float | None]], timestamps: list[float]) -> list[float | None]:
    by_ts = {round(t, 3): v for t, v in points}
    return [by_ts.get(round(t, 3)) for t in timestamps]


def _sum(*columns: list[float | None]) -> list[float | None]:
    out: list[float | None] = []
    for values in zip(*columns, strict=True):
        present = [v for v in values if v is not None]
        out.append(sum(present) if present else None)
    return out


def service_series(cluster: Cluster, namespace: str, service: str, window: str, *, now: float | None = None) -> dict:
    """Chart data for one service over `window` ("15m", "1h", "6h", "24h" or "7d"), as plain JSON-able data.

    Returns::

        {
          "window": "1h", "start": 1700000000.0, "end": 1700003600.0,   # unix seconds
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
    (and such answers are not cached). Raises ValueError for an unknown `window`.
    """
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; choose one of {', '.join(WINDOWS)}")
    state = MetricsState.objects.filter(cluster=cluster).first()
    scrape = float(cluster.scrape_interval_seconds or (state.scrape_interval_seconds if state else 15.0))
    latency_source = state.latency_source if state else "envoy"
    span = WINDOWS[window]
    step = catalog.range_step(span, scrape)
    rate_window = catalog.duration(catalog.range_window(step, scrape))
    now = float(now if now is not None else time.time())
    end = math.floor(now / step) * step
    start = end - span
    key = f"meshboard:series:{cluster.pk}:{namespace}:{service}:{window}:{end:.0f}"
    try:
        cached = redis_client().get(key)
    except Exception:  # a cache that is down must not take the chart with it
        cached = None
    if cached:
        data = json.loads(cached)
        data["cached"] = True
        return data

    timestamps = [start + i * step for i in range(round(span / step) + 1)]
    empty = [None] * len(timestamps)
    series: dict[str, list[float | None]] = {name: list(empty) for name in SERIES}
    unavailable: dict[str, str] = {}
    data = {
        "window": window,
        "start": start,
        "end": end,
        "step": step,
        "rate_window": rate_window,
        "scrape_interval": scrape,
        "latency_source": latency_source,
        "timestamps": timestamps,
        "series": series,
        "unavailable": unavailable,
        "cached": False,
    }
    if not cluster.prometheus_url:
        unavailable["*"] = "this cluster has no Prometheus URL"
        return data
    pods, workloads = _service_pods(cluster, namespace, service)
    selector = catalog.service_selector(namespace, service, pods)
    queries = {
        "requests": catalog.series_requests(selector, rate_window),
        "tcp_bytes_sent_rate": catalog.series_bytes("upstream_cx_tx_bytes_total", selector, rate_window),
        "tcp_bytes_received_rate": catalog.series_bytes("upstream_cx_rx_bytes_total", selector, rate_window),
    }
    for name, q in catalog.QUANTILES.items():
        if latency_source == "envoy":
            queries[name] = catalog.series_envoy_quantile(q, selector, rate_window)
        elif latency_source == "osm-wasm":
            queries[name] = catalog.series_wasm_quantile(q, namespace, workloads, rate_window)
        else:
            unavailable[name] = (state.latency_unavailable_reason if state else "") or catalog.LATENCY_UNAVAILABLE
    failed = False
    timeout = settings.MESHBOARD_CHART_READ_TIMEOUT
    with PrometheusGateway(cluster.prometheus_url, read_timeout=timeout) as gateway:
        for name, expr in queries.items():
            try:
                result = gateway.range(expr, start, end, step, what=f"chart {name}")
            except PrometheusError as exc:
                failed = True
                if gateway.requests == 1 and exc.transient:
                    unavailable["*"] = f"metrics unavailable: {exc.reason}"
                    break
                targets = ("request_rate", "rate_2xx", "rate_4xx", "rate_5xx", "success_rate")
                for target in targets if name == "requests" else (name,):
                    unavailable[target] = exc.reason
                continue
            if name == "requests":
                by_class = {r.labels.get("envoy_response_code_class", ""): _align(r.points, timestamps) for r in result}
                if by_class:
                    series["request_rate"] = _sum(*by_class.values())
                    for cls in ("2", "4", "5"):
                        column = by_class.get(cls)
                        series[f"rate_{cls}xx"] = (
                            column if column else [0.0 if t is not None else None for t in series["request_rate"]]
                        )
                    series["success_rate"] = [
                        None if (total is None or total <= 0) else max(0.0, min(1.0, (total - (err or 0.0)) / total))
                        for total, err in zip(series["request_rate"], series["rate_5xx"], strict=True)
                    ]
            elif result:
                series[name] = _align(result[0].points, timestamps)
    if not failed:
        with contextlib.suppress(Exception):  # caching is best effort
            redis_client().set(key, json.dumps(data), ex=max(1, math.ceil(step)))
    return data
