"""OSM v1.2.4's Prometheus scrape job for the sidecars (`kubernetes-pods`): its keep-list and its relabel rules.

One home for both: the metrics pre-flight advises them (extended with what Meshboard reads), and the lab's Prometheus
applies them, so what the lab's "osm" mode drops is exactly what the pre-flight says OSM's Prometheus drops. Plain
data, no Django: the lab imports it without settings.
"""

from __future__ import annotations

# OSM v1.2.4's keep-list for the sidecars (charts/osm/templates/prometheus-configmap.yaml, job kubernetes-pods;
# reference osm.md §4.2), one entry a line; the lab's "osm" mode (lab/mesh/prom.py) uses the same list.
OSM_KEEP = (
    "envoy_server_live",
    "envoy_cluster_health_check_.*",
    "envoy_cluster_upstream_rq_xx",
    "envoy_cluster_upstream_cx_active",
    "envoy_cluster_upstream_cx_tx_bytes_total",
    "envoy_cluster_upstream_cx_rx_bytes_total",
    "envoy_cluster_upstream_rq_total",
    "envoy_cluster_upstream_cx_destroy_remote_with_active_rq",
    "envoy_cluster_upstream_cx_connect_timeout",
    "envoy_cluster_upstream_cx_destroy_local_with_active_rq",
    "envoy_cluster_upstream_rq_pending_failure_eject",
    "envoy_cluster_upstream_rq_pending_overflow",
    "envoy_cluster_upstream_rq_timeout",
    "envoy_cluster_upstream_rq_rx_reset",
    "envoy_cluster_upstream_rq_retry.*",
    "^osm.*",
)

# OSM v1.2.4's relabel_configs of the same job: pod annotations pick the targets and the port (15010, the sidecar's
# prometheus listener), then namespace → source_namespace, pod → source_pod_name, the pod's `app` label →
# source_service, its controller → source_workload_kind/_name (a ReplicaSet becomes its Deployment: hash stripped).
OSM_RELABEL_CONFIGS: list[dict] = [
    {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
    {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
        "action": "replace",
        "target_label": "__metrics_path__",
        "regex": "(.+)",
    },
    {
        "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
        "action": "replace",
        "regex": r"([^:]+)(?::\d+)?;(\d+)",
        "replacement": "$1:$2",
        "target_label": "__address__",
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


def osm_keep_regex() -> str:
    """OSM's keep-list as the single regex of its `metric_relabel_configs` keep rule."""
    return f"({'|'.join(OSM_KEEP)})"
