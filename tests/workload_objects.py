"""Workloads the bookstore demo lacks, as a cluster's controllers would have left them: a DaemonSet with a pod per
node, a pod no controller owns, and a ReplicaSet no Deployment owns. Added to a seed of one test's own (the shared
seeds are counted by other tests), or created through the API in tests of the stand-in itself."""

from __future__ import annotations

import copy

from lab.seeds import Seed
from lab.seeds.loader import load_seed

NODES = ("aks-nodepool1-31415926-vmss000000", "aks-nodepool1-31415926-vmss000001")
SIDECAR = {"name": "envoy", "image": "envoyproxy/envoy-distroless:v1.22.2"}


def _status(ready: bool, restarts: int = 0) -> dict:
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "podIP": "10.244.3.7",
        "containerStatuses": [
            {"name": "app", "ready": ready, "restartCount": restarts},
            {"name": "envoy", "ready": True, "restartCount": 0},
        ],
    }


def daemonset(namespace: str = "bookwarehouse", name: str = "log-shipper") -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "platform"}},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": name, "containers": [{"name": "app", "image": "fluent-bit:3"}]},
            },
        },
        "status": {
            "currentNumberScheduled": 2,
            "desiredNumberScheduled": 2,
            "numberAvailable": 1,
            "numberMisscheduled": 0,
            "numberReady": 1,
            "observedGeneration": 1,
            "updatedNumberScheduled": 2,
        },
    }


def daemonset_pods(namespace: str = "bookwarehouse", name: str = "log-shipper") -> list[dict]:
    """One pod per node, the first ready and meshed with 3 restarts, the second not ready and without a sidecar."""
    pods = []
    for index, node in enumerate(NODES):
        meshed = index == 0
        pod_labels = {"app": name, "controller-revision-hash": "7c9d8f6b5", "pod-template-generation": "1"}
        if meshed:
            pod_labels["osm-proxy-uuid"] = f"0b7a3c1e-0000-4000-8000-00000000000{index}"
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{name}-{'xk2lp' if index == 0 else 'q9wzt'}",
                    "namespace": namespace,
                    "labels": pod_labels,
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": "d5", "controller": True}
                    ],
                },
                "spec": {
                    "nodeName": node,
                    "serviceAccountName": name,
                    "containers": [{"name": "app", "image": "fluent-bit:3"}] + ([SIDECAR] if meshed else []),
                },
                "status": _status(ready=meshed, restarts=3 if meshed else 0),
            }
        )
    return pods


def bare_pod(namespace: str = "bookstore", name: str = "debug-shell") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "debug", "osm-proxy-uuid": "0b7a3c1e-0000-4000-8000-0000000000aa"},
        },
        "spec": {"nodeName": NODES[1], "containers": [{"name": "app", "image": "busybox:1"}, SIDECAR]},
        "status": _status(ready=True),
    }


def bare_replicaset(namespace: str = "bookwarehouse", name: str = "reports-6d5f8") -> list[dict]:
    """A ReplicaSet no Deployment owns (OSM's relabeling names its calls Deployment `reports`), and its pod."""
    labels = {"app": "reports", "pod-template-hash": "6d5f8"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"serviceAccountName": "reports", "containers": [{"name": "app", "image": "reports:2"}]},
                },
            },
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-m2x7q",
                "namespace": namespace,
                "labels": {**labels, "osm-proxy-uuid": "0b7a3c1e-0000-4000-8000-0000000000bb"},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": "r5", "controller": True}
                ],
            },
            "spec": {
                "nodeName": NODES[0],
                "serviceAccountName": "reports",
                "containers": [{"name": "app", "image": "reports:2"}, SIDECAR],
            },
            "status": _status(ready=True),
        },
    ]


def extra_workloads() -> list[dict]:
    return [daemonset(), *daemonset_pods(), bare_pod(), *bare_replicaset()]


def bookstore_with_extra_workloads() -> Seed:
    """The bookstore demo plus a DaemonSet (bookwarehouse/log-shipper), a bare pod (bookstore/debug-shell) and a bare
    ReplicaSet (bookwarehouse/reports-6d5f8)."""
    seed = load_seed("bookstore")
    seed.objects.extend(copy.deepcopy(extra_workloads()))
    return seed
