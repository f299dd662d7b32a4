"""The synthetic mesh model (lab/synthetic.py) as Kubernetes objects, through the same controller emulation as YAML,
then as a real cluster serves them (managedFields, last-applied annotations: `lab.seeds.payloads`).

The model decides pod names, nodes, IPs and readiness (passed to `controllers.expand` as placements), but not
whether a pod is meshed: that follows from the namespace labels and pod-template annotations written here, through
the injector rules in `controllers.py`, so a test can check both agree.
"""

from __future__ import annotations

from typing import Any

from lab.seeds import cluster, controllers, payloads
from lab.seeds.controllers import PodPlacement
from lab.synthetic import Namespace, Service, SyntheticMesh, Workload


def _meta(name: str, namespace: str | None = None, labels: dict | None = None, annotations: dict | None = None) -> dict:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _namespace(ns: Namespace, mesh: str) -> dict:
    if ns.monitored:
        return cluster.mesh_namespace(
            ns.name, mesh=mesh, injection=ns.injection, metrics=ns.metrics, labels=ns.labels, annotations=ns.annotations
        )
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns.name, None, ns.labels, ns.annotations)}


def _service(svc: Service) -> dict:
    spec: dict[str, Any] = {
        "selector": dict(svc.selector),
        "ports": [
            {"name": p.name, "port": p.port, "targetPort": p.target_port, "appProtocol": p.protocol} for p in svc.ports
        ],
    }
    if svc.headless:
        spec["clusterIP"] = "None"
    labels = {"app": svc.app, **svc.labels}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(svc.name, svc.namespace, labels, svc.annotations),
        "spec": spec,
    }


def _workload(w: Workload) -> dict:
    labels = {"app": w.app, "version": w.version}
    annotations = dict(w.annotations)
    if w.injection is not None:
        annotations[controllers.INJECTION_ANNOTATION] = "enabled" if w.injection else "disabled"
    container: dict[str, Any] = {
        "name": w.app if w.protocol != "none" else "loadgen",
        "image": w.image,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
    }
    if w.protocol == "http":
        container["ports"] = [{"name": "http", "containerPort": 8080}]
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
    elif w.protocol == "tcp":
        container["ports"] = [{"name": "tcp-db", "containerPort": 5432}]
        container["readinessProbe"] = {"tcpSocket": {"port": 5432}, "periodSeconds": 10}
    template_meta: dict[str, Any] = {"labels": {**labels, **w.labels}}
    if annotations:
        template_meta["annotations"] = annotations
    template = {
        "metadata": template_meta,
        "spec": {
            "serviceAccountName": w.service_account,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "containers": [container],
        },
    }
    spec: dict[str, Any] = {"replicas": w.replicas, "selector": {"matchLabels": labels}, "template": template}
    if w.kind == "StatefulSet":
        spec["serviceName"] = w.service
    return {
        "apiVersion": "apps/v1",
        "kind": w.kind,
        "metadata": _meta(w.name, w.namespace, {"app": w.app, **w.labels}, w.annotations),
        "spec": spec,
    }


def _policy_objects(mesh: SyntheticMesh) -> list[dict]:
    objects: list[dict] = []
    for split in mesh.splits:
        objects.append(
            {
                "apiVersion": "split.smi-spec.io/v1alpha2",
                "kind": "TrafficSplit",
                "metadata": _meta(split.name, split.namespace),
                "spec": {
                    "service": f"{split.root_service}.{split.namespace}",
                    "backends": [{"service": b.service, "weight": b.weight} for b in split.backends],
                },
            }
        )
    routes: dict[tuple[str, str, str], dict] = {}
    for t in mesh.targets:
        rule: dict[str, Any] = {"kind": t.route_kind, "name": t.route_name}
        if t.route_kind == "HTTPRouteGroup":
            rule["matches"] = ["all"]
            routes[(t.namespace, t.route_kind, t.route_name)] = {
                "apiVersion": "specs.smi-spec.io/v1alpha4",
                "kind": "HTTPRouteGroup",
                "metadata": _meta(t.route_name, t.namespace),
                "spec": {"matches": [{"name": "all", "pathRegex": ".*", "methods": ["*"]}]},
            }
        else:
            routes[(t.namespace, t.route_kind, t.route_name)] = {
                "apiVersion": "specs.smi-spec.io/v1alpha4",
                "kind": "TCPRoute",
                "metadata": _meta(t.route_name, t.namespace),
                "spec": {"matches": {"ports": [t.port]}},
            }
        objects.append(
            {
                "apiVersion": "access.smi-spec.io/v1alpha3",
                "kind": "TrafficTarget",
                "metadata": _meta(t.name, t.namespace),
                "spec": {
                    "destination": {"kind": "ServiceAccount", "name": t.destination_sa, "namespace": t.namespace},
                    "rules": [rule],
                    "sources": [{"kind": "ServiceAccount", "name": sa, "namespace": ns} for ns, sa in t.sources],
                },
            }
        )
    return list(routes.values()) + objects


def synthetic_manifests(mesh: SyntheticMesh, *, kubernetes_version: str = "v1.30.4") -> list[dict]:
    """What would be applied for the model, before the controller emulation."""
    objects = cluster.base_cluster(
        nodes=len(mesh.nodes), kubernetes_version=kubernetes_version, random_seed=mesh.random_seed
    )
    objects += cluster.osm_control_plane(permissive=mesh.permissive)
    objects += [_namespace(ns, mesh.mesh_name) for ns in mesh.namespaces]
    accounts = sorted({(w.namespace, w.service_account) for w in mesh.workloads})
    objects += [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(sa, ns)} for ns, sa in accounts]
    objects += [_service(s) for s in mesh.services]
    objects += [_workload(w) for w in mesh.workloads]
    objects += _policy_objects(mesh)
    return objects


def synthetic_objects(mesh: SyntheticMesh, *, kubernetes_version: str = "v1.30.4") -> list[dict]:
    """The full seeded state for the model, in apply order."""
    placements: dict[tuple[str, str, str], list[PodPlacement]] = {}
    for pod in mesh.pods:
        placements.setdefault((pod.namespace, pod.workload_kind, pod.workload), []).append(
            PodPlacement(name=pod.name, node=pod.node, ip=pod.ip, ready=pod.ready)
        )
    manifests = synthetic_manifests(mesh, kubernetes_version=kubernetes_version)
    expanded = controllers.expand(
        manifests, random_seed=mesh.random_seed, mesh_name=mesh.mesh_name, placements=placements
    )
    # As a real cluster serves them: with managedFields and kubectl's last-applied annotation (see payloads.py).
    return payloads.as_served(expanded, applied=manifests)
