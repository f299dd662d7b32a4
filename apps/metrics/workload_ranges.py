"""Range data for one workload's charts: what its pods' sidecars sent to every destination service, over a window.

The same JSON as a service's charts (apps.metrics.ranges.service_series), from the caller side: Envoy's cluster stats
of the workload's own sidecars, selected by OSM's source labels (reference osm.md §4.2-4.3) and restricted to
destination-service clusters (catalog.DESTINATION: not OSM's internal clusters, not the inbound `|local` ones).
- By workload: `source_namespace`, `source_workload_kind` and `source_workload_name` (a bare ReplicaSet is named
  as OSM's relabeling names it: kind Deployment, its name less the last `-part`).
- A bare pod has no workload labels: `source_pod_name` names it.
- Where this Prometheus lacks the workload labels (the workload's KPIs say so), its pods' app label
  (`source_service`), shared by every workload with that label.
The latency chart is a quantile of the summed histogram over all destinations (one quantile of all its calls), which
the KPI table cannot give: quantiles of edges cannot be added.

On Istio the same series come from istio-proxy's standard metrics, as the KPIs read them: the destination reporter
(each request is counted by both sidecars), selected by the caller, `source_workload_namespace` and
`source_workload` (Istio names a pod's workload as OSM's relabeling does: a Deployment by its name, a bare pod by
its own). A destination without a sidecar reports nothing, so calls to it are not charted; Istio has no egress
passthrough counter, which the page says instead of a blank chart.
"""

from __future__ import annotations

import json

from apps.clusters.models import Cluster
from apps.core.windows import TimeRange

from . import catalog, istio_catalog
from .models import EdgeKPI, MetricsState
from .ranges import SERIES, _Frame, chart_data, is_istio

BY_WORKLOAD, BY_POD, BY_APP = "workload", "pod", "app"
PASSTHROUGH = "passthrough_rate"  # connections/s to the egress passthrough, beside service_series' SERIES
WASM_BY_APP = "OSM's WASM latency metric names callers by workload, and this one is known by its app label only"
ISTIO_NO_PASSTHROUGH = "not on Istio: its standard metrics have no egress passthrough counter"


def _istio_selector(namespace: str, name: str) -> str:
    """The destination reporter's series of the calls this workload (or bare pod) made."""
    ns, name = catalog.promql_string(namespace), catalog.promql_string(name)
    return f'{istio_catalog.REPORTER},source_workload_namespace="{ns}",source_workload="{name}"'


def _istio_queries(selector: str, frame: _Frame, state: MetricsState | None) -> tuple[dict, dict]:
    latency = (state.latency_source if state else "istio") == "istio"
    queries = istio_catalog.series_queries(selector, frame.rate_window, latency)
    reason = (state.latency_unavailable_reason if state else "") or istio_catalog.LATENCY_UNAVAILABLE
    unavailable = {name: reason for name in catalog.QUANTILES if name not in queries}
    unavailable[PASSTHROUGH] = ISTIO_NO_PASSTHROUGH
    return queries, unavailable


def _source_selector(namespace: str, by: str, kind: str, name: str, app: str) -> str:
    ns = f'source_namespace="{catalog.promql_string(namespace)}"'
    if by == BY_POD:
        return f'{ns},source_pod_name="{catalog.promql_string(name)}"'
    if by == BY_APP:
        return f'{ns},source_service="{catalog.promql_string(app)}"'
    kind, name = catalog.promql_string(kind), catalog.promql_string(name)
    return f'{ns},source_workload_kind="{kind}",source_workload_name="{name}"'


def attribution(cluster: Cluster, namespace: str, kind: str, name: str, app: str) -> str:
    """How to select this workload's series: by its workload labels when the stored KPIs have them (or nothing says
    otherwise), by app label when the KPIs of its app carry none; a bare pod (kind "") by its pod name."""
    if not kind:
        return BY_POD
    edges = EdgeKPI.objects.filter(cluster=cluster, source_namespace=namespace)
    if edges.filter(source_workload_kind=kind, source_workload_name=name).exists():
        return BY_WORKLOAD
    if app and edges.filter(source_service=app, source_workload_name="").exists():
        return BY_APP
    return BY_WORKLOAD


def _queries(
    selector: str, frame: _Frame, state: MetricsState | None, wasm: str, passthrough: str
) -> tuple[dict, dict]:
    """The range queries by series: service_series' over its destination clusters, and the connections it sent to
    OSM's egress passthrough (what its routes do not allow, or what leaves the mesh) by its `passthrough` selector."""
    latency_source = state.latency_source if state else "envoy"
    queries = {
        "requests": catalog.series_requests(selector, frame.rate_window),
        "tcp_bytes_sent_rate": catalog.series_bytes("upstream_cx_tx_bytes_total", selector, frame.rate_window),
        "tcp_bytes_received_rate": catalog.series_bytes("upstream_cx_rx_bytes_total", selector, frame.rate_window),
    }
    if passthrough:
        queries[PASSTHROUGH] = (
            f'sum(rate(envoy_cluster_upstream_cx_total{{{passthrough},envoy_cluster_name="{catalog.PASSTHROUGH_CLUSTER}"}}'
            f"[{frame.rate_window}]))"
        )
    unavailable = {}
    for name, q in catalog.QUANTILES.items():
        if latency_source == "envoy":
            queries[name] = catalog.series_envoy_quantile(q, selector, frame.rate_window)
        elif latency_source == "osm-wasm" and wasm:
            buckets = f"rate(osm_request_duration_ms_bucket{{{wasm}}}[{frame.rate_window}])"
            queries[name] = f"histogram_quantile({q}, sum by (le) ({buckets}))"
        elif latency_source == "osm-wasm":
            unavailable[name] = WASM_BY_APP
        else:
            unavailable[name] = (state.latency_unavailable_reason if state else "") or catalog.LATENCY_UNAVAILABLE
    return queries, unavailable


def _wasm_selector(namespace: str, by: str, kind: str, name: str) -> str:
    """OSM's WASM histogram names the caller by source_namespace/_kind/_name (or _pod), values mangled."""
    ns = f'source_namespace="{catalog.promql_string(catalog.mangle(namespace))}"'
    if by == BY_POD:
        return f'{ns},source_pod="{catalog.promql_string(catalog.mangle(name))}"'
    if by == BY_WORKLOAD:
        return f'{ns},source_name="{catalog.promql_string(catalog.mangle(name))}"'
    return ""


def workload_series(
    cluster: Cluster,
    namespace: str,
    kind: str,
    name: str,
    window: str | TimeRange,
    *,
    app: str = "",
    now: float | None = None,
) -> dict:
    """Chart data for one workload's outbound traffic over `window`, in service_series' shape, plus "selected_by"
    (workload, pod or app) and "selector" (the PromQL label matchers used).

    `kind`/`name` are what OSM's relabeling puts in source_workload_kind/_name (kind "" for a bare pod, then `name`
    is the pod's name); `app` is its pods' app label, for a Prometheus without the workload labels. Never raises
    for Prometheus trouble (see service_series); ValueError for an unknown `window`.
    """
    if is_istio(cluster):
        selector = _istio_selector(namespace, name)
        return chart_data(
            cluster,
            window,
            who=f"workload-series:istio:{json.dumps([namespace, kind, name])}",
            queries=lambda frame, state: _istio_queries(selector, frame, state),
            series=(*SERIES, PASSTHROUGH),
            extra={"selected_by": BY_POD if not kind else BY_WORKLOAD, "selector": selector},
            now=now,
        )
    by = attribution(cluster, namespace, kind, name, app)
    source = _source_selector(namespace, by, kind, name, app)
    selector = f"{source},{catalog.DESTINATION}"
    wasm = _wasm_selector(namespace, by, kind, name)
    return chart_data(
        cluster,
        window,
        who=f"workload-series:{json.dumps([namespace, kind, name, by, app])}",
        queries=lambda frame, state: _queries(selector, frame, state, wasm, source),
        series=(*SERIES, PASSTHROUGH),
        extra={"selected_by": by, "selector": source},
        now=now,
    )
