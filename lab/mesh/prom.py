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

from apps.metrics.osm_scrape import OSM_RELABEL_CONFIGS, osm_keep_regex
from lab.mesh.topology import Workload

MODES = ("byo", "osm")

OSM_KEEP_LIST = osm_keep_regex()

# OSM 1.2.4's kubernetes-pods relabel_configs, minus the __address__ port rewrite: each lab sidecar's metrics port is
# its own (127.0.0.1 and a port chosen at run time), not OSM's 15010.
OSM_POD_RELABELING = [r for r in OSM_RELABEL_CONFIGS if r.get("target_label") != "__address__"]


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
