"""Istio's sidecar injector, as the controller emulation (`lab.seeds.controllers`) runs it.

`istio_injection_decision` follows the injector's namespace and object selectors: a pod label
`sidecar.istio.io/inject=false` opts out; a pod label `istio.io/rev` opts in (the migration bundle gives the ingress
controller one); else the namespace decides: `istio-injection=enabled`, or `istio.io/rev` without
`istio-injection=disabled`.
"""

from __future__ import annotations

import json

INJECT_LABEL = "sidecar.istio.io/inject"
REV_LABEL = "istio.io/rev"
INJECTION_LABEL = "istio-injection"
# [unconfirmed] the AKS add-on's image path.
PROXY_IMAGE = "mcr.microsoft.com/oss/istio/proxyv2:1.27.3"


def istio_injection_decision(namespace: dict, pod_labels: dict) -> str | None:
    """The revision whose injector injects this pod, or None (see the module's docstring)."""
    if str(pod_labels.get(INJECT_LABEL, "")).lower() == "false":
        return None
    if pod_labels.get(REV_LABEL):
        return str(pod_labels[REV_LABEL])
    labels = (namespace.get("metadata") or {}).get("labels") or {}
    injection = str(labels.get(INJECTION_LABEL, "")).lower()
    if injection == "enabled":
        return "default"
    if labels.get(REV_LABEL) and injection != "disabled":
        return str(labels[REV_LABEL])
    return None


def inject_istio_sidecar(pod: dict, revision: str) -> None:
    """What Istio's injector adds to a pod: istio-init (the iptables redirect), the istio-proxy container, the labels
    its telemetry reads (`service.istio.io/canonical-*`, `security.istio.io/tlsMode`) and the scrape annotations of
    the merged metrics endpoint (port 15020)."""
    meta, spec = pod["metadata"], pod["spec"]
    labels = meta.setdefault("labels", {})
    labels.setdefault("security.istio.io/tlsMode", "istio")
    labels.setdefault("service.istio.io/canonical-name", labels.get("app", meta["name"]))
    labels.setdefault("service.istio.io/canonical-revision", labels.get("version", "latest"))
    annotations = meta.setdefault("annotations", {})
    annotations.update(
        {
            "istio.io/rev": revision,
            "sidecar.istio.io/status": json.dumps(
                {
                    "initContainers": ["istio-init"],
                    "containers": ["istio-proxy"],
                    "volumes": ["istio-envoy", "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert"],
                    "revision": revision,
                },
                separators=(",", ":"),
            ),
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "15020",
            "prometheus.io/path": "/stats/prometheus",
        }
    )
    spec.setdefault("initContainers", []).append(
        {
            "name": "istio-init",
            "image": PROXY_IMAGE,
            "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*"],
            "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}, "runAsUser": 0},
        }
    )
    spec["containers"].append(
        {
            "name": "istio-proxy",
            "image": PROXY_IMAGE,
            "args": ["proxy", "sidecar", "--domain", f"{meta['namespace']}.svc.cluster.local"],
            "ports": [
                {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"},
                {"containerPort": 15021, "name": "health", "protocol": "TCP"},
            ],
            "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "allowPrivilegeEscalation": False},
        }
    )
