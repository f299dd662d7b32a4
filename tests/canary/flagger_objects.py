"""A Flagger Canary driving the bookstore split, with a MetricTemplate, put into the stand-in as Flagger's users and
Flagger itself write them (the official client; the status through its subresource), and the Prometheus data its
checks read: bookbuyer's sidecar sending bookstore-v1 8 requests/s, all 2xx, and bookstore-v2 2 requests/s, 20 % 5xx
(Envoy's cluster stats, which the lab and most meshes keep), but none of OSM's WASM stats unless asked for."""

from __future__ import annotations

import time

from lab.metrics_data import OpenMetrics, envoy_edge, piecewise_cdf, sample_times
from tests.helpers import custom_api

FLAGGER = ("flagger.app", "v1beta1", "bookstore")
BUYER = {
    "source_namespace": "bookbuyer",
    "source_service": "bookbuyer",
    "source_pod_name": "bookbuyer-5b8d-abcde",
    "source_workload_kind": "Deployment",
    "source_workload_name": "bookbuyer",
}
# The success rate, in percent, of the backend named by the template variable `backend`: Envoy's stats as the
# callers' sidecars keep them, over the metric's interval.
SUCCESS_QUERY = """
100 * sum(
  rate(envoy_cluster_upstream_rq_xx{envoy_cluster_name="{{ namespace }}/{{ variables.backend }}|14001",
                                    envoy_response_code_class!="5"}[{{ interval }}])
)
/
sum(
  rate(envoy_cluster_upstream_rq_xx{envoy_cluster_name="{{ namespace }}/{{ variables.backend }}|14001"}[{{ interval }}])
)
"""


def metric_template(name: str = "envoy-success-rate", query: str = SUCCESS_QUERY) -> dict:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": name, "namespace": "bookstore"},
        "spec": {
            "provider": {"type": "prometheus", "address": "http://osm-prometheus.osm-system.svc:7070"},
            "query": query,
        },
    }


def canary(metrics: list[dict] | None = None, name: str = "bookstore") -> dict:
    """Flagger's OSM tutorial's Canary, for the bookstore: its apex is the split's root, `bookstore`."""
    if metrics is None:
        metrics = [
            {
                "name": "v2 success rate",
                "templateRef": {"name": "envoy-success-rate"},
                "templateVariables": {"backend": "bookstore-v2"},
                "thresholdRange": {"min": 75},
                "interval": "5m",
            },
            {
                "name": "v2 success rate, strict",
                "templateRef": {"name": "envoy-success-rate", "namespace": "bookstore"},
                "templateVariables": {"backend": "bookstore-v2"},
                "thresholdRange": {"min": 99},
                "interval": "5m",
            },
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"},
        ]
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": "bookstore"},
        "spec": {
            "provider": "osm",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bookstore"},
            "service": {"name": "bookstore", "port": 14001},
            "analysis": {"interval": "30s", "threshold": 5, "maxWeight": 50, "stepWeight": 10, "metrics": metrics},
        },
    }


STATUS = {
    "phase": "Progressing",
    "canaryWeight": 20,
    "failedChecks": 2,
    "iterations": 0,
    "lastTransitionTime": "2026-11-30T17:26:45Z",
    "lastAppliedSpec": "x" * 5000,  # Flagger's hash of the spec: not kept
    "conditions": [
        {
            "type": "Promoted",
            "status": "Unknown",
            "reason": "Progressing",
            "message": "New revision detected, progressing canary analysis.",
            "lastTransitionTime": "2026-11-30T17:20:00Z",
            "lastUpdateTime": "2026-11-30T17:26:45Z",
        }
    ],
}


def put_canary(server: object, canary_obj: dict | None = None, *, template: dict | None = None) -> None:
    """Create the MetricTemplate and the Canary in the stand-in, then set the Canary's status as Flagger does."""
    api = custom_api(server)
    api.create_namespaced_custom_object(*FLAGGER, "metrictemplates", template or metric_template())
    obj = canary_obj or canary()
    api.create_namespaced_custom_object(*FLAGGER, "canaries", obj)
    api.patch_namespaced_custom_object_status(
        *FLAGGER, "canaries", obj["metadata"]["name"], {"status": STATUS}, field_manager="flagger"
    )


def bookstore_openmetrics(*, wasm: bool = False, minutes: int = 50) -> str:
    """The last `minutes` of bookbuyer's calls to both bookstore versions, up to now; with `wasm`, OSM's WASM stats
    of the `bookstore` Deployment too (90 % success, p99 in the 100-250 ms bucket)."""
    now = time.time()
    om = OpenMetrics(sample_times(now - minutes * 60, now, 15))
    fast, slow = piecewise_cdf([(5, 0.5), (10, 0.9), (25, 1.0)]), piecewise_cdf([(25, 0.3), (50, 0.8), (100, 1.0)])
    envoy_edge(om, BUYER, "bookstore/bookstore-v1|14001", rps_by_class={"2": 8.0}, cdf=fast, bytes_sent=900.0)
    envoy_edge(om, BUYER, "bookstore/bookstore-v2|14001", rps_by_class={"2": 1.6, "5": 0.4}, cdf=slow)
    if wasm:
        dest = {"destination_namespace": "bookstore", "destination_kind": "Deployment", "destination_name": "bookstore"}
        om.counter("osm_request_total", {**dest, "response_code": "200"}, 9.0)
        om.counter("osm_request_total", {**dest, "response_code": "503"}, 1.0)
        wasm_cdf = piecewise_cdf([(50, 0.5), (100, 0.95), (250, 1.0)])
        om.histogram("osm_request_duration_ms", dest, 10.0, wasm_cdf)
    return om.text()
