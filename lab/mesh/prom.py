"""The lab's Prometheus config: OSM's `kubernetes-pods` job (osm@v1.2.4 charts/osm/templates/prometheus-configmap.yaml)
fed by static targets that carry the `__meta_kubernetes_*` labels Kubernetes service discovery would have given each
sidecar, so OSM's own relabel rules produce `source_namespace`, `source_pod_name`, `source_service`,
`source_workload_kind` and `source_workload_name`. Only the `__address__` rewrite to port 15010 is left out: each
target is already the sidecar's `inbound-prometheus-listener` (OSM's 15010, on a run-time port), which serves only
`/stats/prometheus` from the admin port through `envoy-metrics-cluster`, as on a pod.

Modes: "byo" keeps everything (a user's own Prometheus, Envoy's latency histograms included); "osm" adds OSM's
metric_relabel keep-list, which drops them (and the HTTP connection-manager stats).
"""

from __future__ import annotations

import re

from lab.mesh.topology import Workload

MODES = ("byo", "osm")

OSM_KEEP_LIST = (
    "(envoy_server_live|envoy_cluster_health_check_.*|envoy_cluster_upstream_rq_xx|envoy_cluster_upstream_cx_active"
    "|envoy_cluster_upstream_cx_tx_bytes_total|envoy_cluster_upstream_cx_rx_bytes_total|envoy_cluster_upstream_rq_total"
    "|envoy_cluster_upstream_cx_destroy_remote_with_active_rq|envoy_cluster_upstream_cx_connect_timeout"
    "|envoy_cluster_upstream_cx_destroy_local_with_active_rq|envoy_cluster_upstream_rq_pending_failure_eject"
    "|envoy_cluster_upstream_rq_pending_overflow|envoy_cluster_upstream_rq_timeout|envoy_cluster_upstream_rq_rx_reset"
    "|envoy_cluster_upstream_rq_retry.*|^osm.*)"
)

# OSM 1.2.4's kubernetes-pods relabel_configs, minus the __address__ port rewrite.
OSM_POD_RELABELING = [
    {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
    {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
        "action": "replace",
        "target_label": "__metrics_path__",
        "regex": "(.+)",
    },
    {"source_labels": ["__meta_kubernetes_namespace"], "action": "replace", "target_label": "source_namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "action": "replace", "target_label": "source_pod_name"},
    {"regex": "(__meta_kubernetes_pod_label_app)", "action": "labelmap", "replacement": "source_service"},
    {
        "regex": "(__meta_kubernetes_pod_label_osm_envoy_uid|__meta_kubernetes_pod_label_pod_template_hash"
        "|__meta_kubernetes_pod_label_version)",
        "action": "drop",
    },
    {
        "source_labels": ["__meta_kubernetes_pod_controller_kind"],
        "action": "replace",
        "target_label": "source_workload_kind",
    },
    {
        "source_labels": ["__meta_kubernetes_pod_controller_name"],
        "action": "replace",
        "target_label": "source_workload_name",
    },
    {
        "source_labels": ["__meta_kubernetes_pod_controller_kind"],
        "action": "replace",
        "regex": "^ReplicaSet$",
        "target_label": "source_workload_kind",
        "replacement": "Deployment",
    },
    {
        "source_labels": ["__meta_kubernetes_pod_controller_kind", "__meta_kubernetes_pod_controller_name"],
        "action": "replace",
        "regex": "^ReplicaSet;(.*)-[^-]+$",
        "target_label": "source_workload_name",
    },
]


def _label_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def discovery_labels(wl: Workload, annotations: dict[str, str] | None = None) -> dict[str, str]:
    """The `__meta_kubernetes_*` labels pod service discovery gives this pod's target."""
    labels = {
        "__meta_kubernetes_namespace": wl.namespace,
        "__meta_kubernetes_pod_name": wl.pod,
        "__meta_kubernetes_pod_controller_kind": wl.controller_kind,
        "__meta_kubernetes_pod_controller_name": wl.controller_name,
    }
    for key, value in wl.labels.items():
        labels[f"__meta_kubernetes_pod_label_{_label_name(key)}"] = value
    annotations = (
        annotations
        or wl.annotations
        or {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "15010",
            "prometheus.io/path": "/stats/prometheus",
        }
    )
    for key, value in annotations.items():
        labels[f"__meta_kubernetes_pod_annotation_{_label_name(key)}"] = value
    return labels


def prometheus_config(targets: list[tuple[Workload, int]], *, mode: str = "byo", scrape_interval: str = "1s") -> dict:
    """prometheus.yml (as a dict) scraping each `(workload, port of its sidecar's prometheus listener)`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    job: dict = {
        "job_name": "kubernetes-pods",
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_interval,
        "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": discovery_labels(wl)} for wl, port in targets],
        "relabel_configs": OSM_POD_RELABELING,
    }
    if mode == "osm":
        job["metric_relabel_configs"] = [{"source_labels": ["__name__"], "regex": OSM_KEEP_LIST, "action": "keep"}]
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval, "evaluation_interval": "1s"},
        "scrape_configs": [job],
    }
