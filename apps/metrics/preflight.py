"""The metrics pre-flight: which series and labels Meshboard reads this Prometheus keeps, what each missing one costs
on the pages, and the scrape configuration that would keep them (issue 15 item 5).

Why it is needed: the AKS OSM add-on ships no Prometheus for users' dashboards, Azure Monitor's managed Prometheus
scrapes the sidecars only when given a scrape job, and a Prometheus set up like OSM's own keeps only OSM's keep-list
(reference osm.md §4.2), which drops Envoy's latency histogram, the TLS stats, the refusal counters and
`upstream_cx_total`.

- `NEEDS` is the declarative table: each series (a metric-name regex, full or truncated Envoy cluster names alike, see
  catalog) and each label Meshboard reads, with what goes blank without it.
- `run(gateway, names, start, end)` is called once per metrics cycle with the metric names Prometheus has in the
  window (the cycle already fetched them) and makes ONE more request: the label names on the request counter
  (`/api/v1/labels` with `match[]`). It never raises: when that request fails the labels are "could not check",
  with the reason, and the cycle goes on. It returns plain JSON (stored in `MetricsState.preflight`).
- `advice(report)` turns what is missing into configuration to paste: the `kubernetes-pods` job for a plain Prometheus
  (OSM's relabeling that makes the `source_*` labels, and OSM's keep-list extended with what Meshboard reads) and the
  same job in the `ama-metrics-prometheus-config` ConfigMap for Azure Monitor's managed Prometheus.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import yaml

from . import catalog
from .osm_scrape import OSM_KEEP, OSM_RELABEL_CONFIGS
from .prometheus import PrometheusError, PrometheusGateway

VERSION = 1

PRESENT, MISSING, UNCHECKED, NOT_NEEDED = "present", "missing", "unchecked", "not needed"
STATUS_TEXT = {PRESENT: "present", MISSING: "missing", UNCHECKED: "could not check", NOT_NEEDED: "not needed"}

# Envoy cluster stats carry the destination in `envoy_cluster_name`, except a headless StatefulSet pod's cluster,
# whose dotted name Envoy's tag extraction cuts: `envoy_cluster_<svc>_<port>_<stat>` (catalog's module docstring).
_CLUSTER = "envoy_cluster_([a-zA-Z0-9_]+_[0-9]+_)?"

# The series the label check looks at: every label Meshboard reads is on the request counter of a sidecar.
LABEL_PROBE = catalog.stat_metric("upstream_rq_xx", "")
LABEL_PROBE_NAME = "envoy_cluster_upstream_rq_xx"


@dataclass(frozen=True)
class Need:
    """One series or label Meshboard reads, and what goes blank on the pages without it."""

    key: str
    kind: str  # "series" or "label"
    name: str  # as people read it
    pattern: str  # series: a regex a metric name must match in full (also the keep-list entry); label: its name
    cost: str  # what goes blank without it, as a sentence
    blanks: str = ""  # the same in a word or two, for the summary ("" when nothing goes blank)
    alternative_of: str = ""  # the key of the series this one stands in for (counted only when that one is missing)
    covered_by: str = ""  # the key of a series that stands in for this one when it is missing
    covered_cost: str = ""  # what missing this one costs when `covered_by` is present


_REFUSALS = "refused traffic"
_TLS = "TLS evidence"
_CALLERS = "callers"

NEEDS: tuple[Need, ...] = (
    Need(
        "requests",
        "series",
        "envoy_cluster_upstream_rq_xx",
        _CLUSTER + "upstream_rq_xx",
        "Request rate, success %, health, the graph's edges, the splits' observed shares and the request charts are "
        "blank: Meshboard has no request counts.",
        "requests",
    ),
    Need(
        "bytes_sent",
        "series",
        "envoy_cluster_upstream_cx_tx_bytes_total",
        _CLUSTER + "upstream_cx_tx_bytes_total",
        "The TCP bytes sent column and chart are blank.",
        "TCP bytes",
    ),
    Need(
        "bytes_received",
        "series",
        "envoy_cluster_upstream_cx_rx_bytes_total",
        _CLUSTER + "upstream_cx_rx_bytes_total",
        "The TCP bytes received column and chart are blank.",
        "TCP bytes",
    ),
    Need(
        "connections",
        "series",
        "envoy_cluster_upstream_cx_active",
        _CLUSTER + "upstream_cx_active",
        "Active TCP connections are blank.",
        "active connections",
    ),
    Need(
        "latency",
        "series",
        "envoy_cluster_upstream_rq_time_bucket",
        _CLUSTER + "upstream_rq_time_bucket",
        "The p50, p95 and p99 columns and the latency charts are blank (OSM's WASM metric osm_request_duration_ms is "
        "not kept either).",
        "latency",
        covered_by="latency_wasm",
        covered_cost="Latency comes from OSM's WASM metric osm_request_duration_ms instead (per workload; the service "
        "page says which source it used).",
    ),
    Need(
        "latency_wasm",
        "series",
        "osm_request_duration_ms_bucket",
        "osm_request_duration_ms_bucket",
        "Read only when Envoy's latency histogram is missing: then p50, p95 and p99 are blank (it needs OSM's WASM "
        "stats feature flag).",
        alternative_of="latency",
    ),
    Need(
        "tls_handshakes",
        "series",
        "envoy_cluster_ssl_handshake",
        _CLUSTER + "ssl_handshake",
        "TLS handshakes per edge (service page, graph) are blank, and without them Meshboard does not ask for TLS "
        "errors or certificate expiry either.",
        _TLS,
    ),
    Need(
        "tls_errors",
        "series",
        "envoy_cluster_ssl_connection_error, envoy_cluster_ssl_fail_verify_*",
        _CLUSTER + "(" + "|".join(catalog.TLS_ERROR_STATS) + ")",
        "TLS failures per edge (failed handshakes, certificates that do not verify) are blank on the graph.",
        _TLS,
    ),
    Need(
        "cert_cluster",
        "series",
        "envoy_cluster_ssl_certificate_expiration_unix_time_seconds",
        _CLUSTER + "ssl_certificate_expiration_unix_time_seconds",
        "Certificate expiry on the service page is unknown (the callers' side of each edge).",
        "certificate expiry",
    ),
    Need(
        "cert_listener",
        "series",
        "envoy_listener_ssl_certificate_expiration_unix_time_seconds",
        "envoy_listener_ssl_certificate_expiration_unix_time_seconds",
        "The expiry of the certificates each destination's sidecar serves is unknown on the service page.",
        "certificate expiry",
    ),
    Need(
        "refusals_listener",
        "series",
        "envoy_listener_no_filter_chain_match",
        "envoy_listener_no_filter_chain_match",
        "Refused traffic on the Policies page misses connections a caller's sidecar had no route for and connections "
        "a destination's sidecar refused for want of mTLS.",
        _REFUSALS,
    ),
    Need(
        "refusals_identity",
        "series",
        "envoy_rbac_denied (envoy_network_rbac_denied on older Envoys)",
        "envoy_(network_)?rbac_denied",
        "Refused traffic on the Policies page misses connections refused for an identity no TrafficTarget names. "
        "(In permissive mode sidecars have no such filter, so this counter is absent whatever Prometheus keeps.)",
        _REFUSALS,
    ),
    Need(
        "refusals_route",
        "series",
        "envoy_http_rds_inbound_<port>_rbac_denied",
        "envoy_http_rds_inbound_[0-9]+_rbac_denied",
        "Refused traffic on the Policies page misses requests refused on a route no TrafficTarget allows. "
        "(In permissive mode sidecars have no such rules, so this counter is absent whatever Prometheus keeps.)",
        _REFUSALS,
    ),
    Need(
        "passthrough",
        "series",
        f'envoy_cluster_upstream_cx_total{{envoy_cluster_name="{catalog.PASSTHROUGH_CLUSTER}"}}',
        "envoy_cluster_upstream_cx_total",
        "Traffic sent outside routes (to OSM's egress passthrough: calls out of the mesh or that SMI policy does not "
        "allow) is blank on the Policies page.",
        "passthrough",
    ),
    Need(
        "rate_limited",
        "series",
        catalog.RATE_LIMITED_METRIC,
        f"envoy_({catalog.RATE_LIMIT_PREFIX}_)?http_local_rate_limit_rate_limited",
        "Requests a service's own sidecars refused with a local rate limit (an UpstreamTrafficSetting's "
        "rateLimit.local.http) are 'not available' on the service page, so a rate-limited service looks like any "
        "other.",
        "rate-limited requests",
    ),
    Need(
        "retried",
        "series",
        "envoy_cluster_upstream_rq_retry",
        _CLUSTER + "upstream_rq_retry",
        "Retries the callers' sidecars made to a service (a Retry policy at work) are 'not available' on the service "
        "page.",
        "retries",
    ),
    Need(
        "overflow",
        "series",
        "envoy_cluster_upstream_rq_pending_overflow",
        _CLUSTER + "upstream_rq_pending_overflow",
        "Requests the callers' sidecars refused because a service's pending queue was full (an "
        "UpstreamTrafficSetting's connection limits) are 'not available' on the service page.",
        "overflow",
    ),
    Need(
        "label_cluster",
        "label",
        "envoy_cluster_name",
        "envoy_cluster_name",
        "No series names its destination: every service's and edge's KPIs are blank.",
        "destinations",
    ),
    Need(
        "label_code_class",
        "label",
        "envoy_response_code_class",
        "envoy_response_code_class",
        "Success %, the 4xx/5xx split and health are blank; request rates remain.",
        "success %",
    ),
    Need(
        "label_source_namespace",
        "label",
        "source_namespace",
        "source_namespace",
        "Callers' namespaces are unknown: edges, the graph and refused traffic cannot place the caller.",
        _CALLERS,
    ),
    Need(
        "label_source_service",
        "label",
        "source_service",
        "source_service",
        "Callers are unknown: edges, the graph and refused traffic have no source (it is the calling pod's app label).",
        _CALLERS,
    ),
    Need(
        "label_workload_kind",
        "label",
        "source_workload_kind",
        "source_workload_kind",
        "Callers are attributed by app label only, so a canary's v1 and v2 (one app label) cannot be told apart.",
        "caller workloads",
    ),
    Need(
        "label_workload_name",
        "label",
        "source_workload_name",
        "source_workload_name",
        "Callers are attributed by app label only, so a canary's v1 and v2 (one app label) cannot be told apart.",
        "caller workloads",
    ),
)
NEEDS_BY_KEY = {n.key: n for n in NEEDS}


def _series_present(need: Need, names: set[str]) -> bool:
    pattern = re.compile(need.pattern)
    return any(pattern.fullmatch(n) for n in names)


def _item(need: Need, status: str, cost: str = "", reason: str = "") -> dict:
    return {
        "key": need.key,
        "kind": need.kind,
        "name": need.name,
        "status": status,
        "cost": cost or need.cost,
        "blanks": need.blanks if status in (MISSING, UNCHECKED) and not cost else "",
        "reason": reason,
    }


def evaluate(names: set[str], labels: set[str] | None, labels_reason: str = "") -> list[dict]:
    """Each need's status, from the metric names in the window and the label names on the request counter (None:
    the labels could not be checked, for `labels_reason`)."""
    present = {n.key for n in NEEDS if n.kind == "series" and _series_present(n, names)}
    items = []
    for need in NEEDS:
        if need.kind == "label":
            if labels is None:
                items.append(_item(need, UNCHECKED, reason=labels_reason))
            else:
                items.append(_item(need, PRESENT if need.pattern in labels else MISSING))
        elif need.key in present:
            items.append(_item(need, PRESENT))
        elif need.alternative_of and need.alternative_of in present:
            items.append(_item(need, NOT_NEEDED, f"Not needed: {NEEDS_BY_KEY[need.alternative_of].name} is kept."))
        elif need.covered_by and need.covered_by in present:
            items.append(_item(need, MISSING, need.covered_cost))
        else:
            items.append(_item(need, MISSING))
    return items


def _count(items: list[dict], kind: str) -> tuple[int, int]:
    """(present, counted) among `kind`'s items; an alternative (OSM's WASM latency) is never counted: it only stands
    in for a series that is."""
    counted = [i for i in items if i["kind"] == kind and i["status"] != NOT_NEEDED and not _alternative(i)]
    return sum(1 for i in counted if i["status"] == PRESENT), len(counted)


def _alternative(item: dict) -> bool:
    need = NEEDS_BY_KEY.get(item["key"])
    return bool(need and need.alternative_of)


def summary(items: list[dict]) -> str:
    """One line: how much of what Meshboard reads this Prometheus keeps, and what goes blank."""
    series, series_total = _count(items, "series")
    labels, labels_total = _count(items, "label")
    unchecked = any(i["kind"] == "label" and i["status"] == UNCHECKED for i in items)
    keeps = f"all {series_total} series" if series == series_total else f"{series} of {series_total} series"
    if unchecked:
        text = f"Prometheus keeps {keeps} Meshboard reads (its labels could not be checked)"
    else:
        kept = f"all {labels_total} labels" if labels == labels_total else f"{labels} of {labels_total} labels"
        text = f"Prometheus keeps {keeps} and {kept} Meshboard reads"
    blanks: list[str] = []
    for item in items:
        if item["status"] == MISSING and item["blanks"] and item["blanks"] not in blanks:
            blanks.append(item["blanks"])
    if blanks:
        return f"{text}; missing ones blank: {', '.join(blanks)}."
    if any(i["status"] == MISSING for i in items):
        return f"{text}; nothing goes blank."
    return f"{text}."


def report(names: set[str], labels: set[str] | None, start: float, end: float, labels_reason: str = "") -> dict:
    """The pre-flight as stored (plain JSON) for the window `start`..`end` (unix s), from the metric names in it and
    the labels on the request counter (None: not checked, for `labels_reason`)."""
    items = evaluate(names, labels, labels_reason)
    return {
        "version": VERSION,
        "checked_at": end,
        "window_seconds": end - start,
        "items": items,
        "summary": summary(items),
        "missing": [i["key"] for i in items if i["status"] == MISSING],
    }


def run(gateway: PrometheusGateway, names: set[str], start: float, end: float) -> dict:
    """The pre-flight for the window `start`..`end` (unix s): one request (the labels), never an exception."""
    labels: set[str] | None = None
    reason = ""
    if not any(re.fullmatch(NEEDS_BY_KEY["requests"].pattern, n) for n in names):
        reason = f"no {LABEL_PROBE_NAME} series in the last {end - start:.0f} s to read labels from"
    else:
        try:
            labels = gateway.label_names(start, end, LABEL_PROBE)
        except PrometheusError as exc:
            reason = exc.reason
    return report(names, labels, start, end, reason)


# -- the configuration that keeps what is missing ------------------------------------------------------------------


def meshboard_keep() -> list[str]:
    """The keep-list entries for every series Meshboard reads (truncated cluster names included); OSM's WASM metric
    comes from another job (OSM's `smi-metrics`), so it is not among them."""
    return [n.pattern for n in NEEDS if n.kind == "series" and not n.alternative_of]


def keep_regex() -> str:
    """OSM's keep-list plus what Meshboard reads, as one regex (Prometheus anchors it): OSM's entries that one of
    Meshboard's already matches are left out."""
    ours = meshboard_keep()
    theirs = [e for e in OSM_KEEP if not any(re.fullmatch(p, e) for p in ours)]
    return "(" + "|".join([*theirs, *ours]) + ")"


def scrape_job(job_name: str = "kubernetes-pods") -> dict:
    """OSM's sidecar job with the extended keep-list."""
    return {
        "job_name": job_name,
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": OSM_RELABEL_CONFIGS,
        "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": keep_regex(), "action": "keep"}],
    }


class _Literal(str):
    """A string YAML writes as a literal block (`|`)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Literal, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")
)
# Lists of label names inline, as OSM's config writes them: `source_labels: [__meta_kubernetes_namespace]`.
_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=all(isinstance(v, str) for v in data)
    ),
)


def _yaml(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=10_000)


AZURE_CONFIGMAP = "ama-metrics-prometheus-config"
AZURE_JOB = "osm-sidecars"


@functools.cache
def prometheus_config() -> str:
    """For a plain Prometheus: the `scrape_configs` entry to use (or merge into) for the sidecars."""
    return _yaml({"scrape_configs": [scrape_job()]})


@functools.cache
def azure_configmap() -> str:
    """For Azure Monitor's managed Prometheus: the ConfigMap whose `prometheus-config` key holds the same job."""
    inner = _yaml({"scrape_configs": [scrape_job(AZURE_JOB)]})
    return _yaml(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": AZURE_CONFIGMAP, "namespace": "kube-system"},
            "data": {"prometheus-config": _Literal(inner)},
        }
    )


@dataclass(frozen=True)
class Advice:
    missing_series: list[str]  # the names to keep, as people read them
    missing_labels: list[str]
    prometheus: str  # YAML
    azure: str  # YAML


def advice(report: dict) -> Advice | None:
    """The configuration that would keep what `report` (a stored `run` result) found missing; None if nothing is."""
    missing = [i for i in report.get("items") or [] if i.get("status") == MISSING]
    if not missing:
        return None
    return Advice(
        missing_series=[i["name"] for i in missing if i.get("kind") == "series"],
        missing_labels=[i["name"] for i in missing if i.get("kind") == "label"],
        prometheus=prometheus_config(),
        azure=azure_configmap(),
    )
