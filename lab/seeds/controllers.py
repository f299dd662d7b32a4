"""What a cluster's controllers and OSM's sidecar injector would have produced from applied manifests.

The stand-in runs no controllers, so a seed must already hold their output: ReplicaSets between Deployments and Pods,
Pods for every replica (scheduled on a node, with an IP, phase, Ready conditions and container statuses), the `default`
ServiceAccount of each namespace, Endpoints and EndpointSlices from Service selectors, workload status, and the
apiserver's own defaults (Service ClusterIPs, pod spec defaults). When a pod's namespace is monitored by the mesh and
injection is enabled, the pod carries OSM 1.2's sidecar marks, as `pkg/injector` adds them (reference/osm.md §3).

`expand()` is the one entry point: give it what `kubectl apply -f` would send (plus the cluster's Nodes), get back the
full list of objects in apply order. Identifiers come from `lab.seeds.naming`, so repeated expansions are identical.
Not emulated: rollouts (one ReplicaSet per Deployment), HPA, DaemonSets/Jobs, volumes beyond claim-template names,
garbage collection, and admission beyond the OSM injector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.seeds import naming
from lab.seeds.istio_injector import inject_istio_sidecar, istio_injection_decision
from lab.seeds.naming import SEED_TIME

MESH_LABEL = "openservicemesh.io/monitored-by"
IGNORE_LABEL = "openservicemesh.io/ignore"
INJECTION_ANNOTATION = "openservicemesh.io/sidecar-injection"
METRICS_ANNOTATION = "openservicemesh.io/metrics"
PROXY_UUID_LABEL = "osm-proxy-uuid"
OSM_VERSION = "v1.2.4"
OSM_REGISTRY = "openservicemesh"
INIT_IMAGE = f"{OSM_REGISTRY}/init:{OSM_VERSION}"
HEALTHCHECK_IMAGE = f"{OSM_REGISTRY}/osm-healthcheck:{OSM_VERSION}"
# [unconfirmed] OSM 1.2's chart pins the Envoy sidecar by digest; the tag here is for readability.
ENVOY_IMAGE = "envoyproxy/envoy-distroless:v1.22.2"
# Added by the injector when the namespace has `openservicemesh.io/metrics: enabled` (osm.md §3.2).
PROMETHEUS_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": "15010",
    "prometheus.io/path": "/stats/prometheus",
}
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICE_MANAGED_BY = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS_PER_SLICE = 100
PODS_PER_NODE = 110  # AKS kubenet default maxPods

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "StorageClass",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "PriorityClass",
        "IngressClass",
    }
)
BUILTIN_GROUPS = frozenset(
    {"", "apps", "discovery.k8s.io", "networking.k8s.io", "rbac.authorization.k8s.io", "batch", "policy"}
)
# Namespaces first, then what pods need (nodes, service accounts), then workloads, then what selects pods.
_KIND_ORDER = {
    k: i
    for i, k in enumerate(
        [
            "Namespace",
            "Node",
            "ServiceAccount",
            "Service",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "Pod",
            "Endpoints",
            "EndpointSlice",
        ]
    )
}
_INJECT_TRUE = {"enabled", "yes", "true"}
_INJECT_FALSE = {"disabled", "no", "false"}


@dataclass(frozen=True)
class PodPlacement:
    """Where a replica runs, when the caller (the synthetic mesh model) has already decided it."""

    name: str
    node: str | None  # None: unschedulable, stays Pending
    ip: str | None
    ready: bool = True


Placements = Mapping[tuple[str, str, str], Sequence[PodPlacement]]  # (namespace, kind, workload name) -> replicas


def api_group(obj: dict) -> str:
    api_version = obj.get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else ""


def clone(value: Any) -> Any:
    # Hand-rolled because copy.deepcopy is several times slower, and a synthetic seed clones 5,000 pod templates.
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def label_selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions), as workloads use."""
    if not selector_matches(selector.get("matchLabels") or {}, labels):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def injection_decision(namespace: dict, pod_annotations: Mapping[str, str], mesh_name: str) -> bool:
    """OSM 1.2 `mustInject`: monitored by this mesh, not ignored, and annotated (pod overrides namespace)."""
    ns_meta = namespace.get("metadata", {})
    ns_labels = ns_meta.get("labels") or {}
    if ns_labels.get(MESH_LABEL) != mesh_name or ns_labels.get(IGNORE_LABEL, "").lower() == "true":
        return False
    value = pod_annotations.get(INJECTION_ANNOTATION)
    if value is None:
        value = (ns_meta.get("annotations") or {}).get(INJECTION_ANNOTATION)
    if value is None:
        return False
    if value.lower() in _INJECT_TRUE:
        return True
    if value.lower() in _INJECT_FALSE:
        return False
    # The webhook rejects the pod; a seed that asks for that is a mistake we should not hide.
    raise ValueError(f"invalid value {value!r} for annotation {INJECTION_ANNOTATION}")


def metrics_enabled(namespace: dict) -> bool:
    return ((namespace.get("metadata", {}).get("annotations") or {}).get(METRICS_ANNOTATION) or "") == "enabled"


# --------------------------------------------------------------------------------------------------------------
# apiserver defaulting


def normalize_image(image: str) -> str:
    """How the kubelet reports an image: registry and tag made explicit."""
    first, _, rest = image.partition("/")
    if not rest:
        image = f"docker.io/library/{image}"
    elif "." not in first and ":" not in first and first != "localhost":
        image = f"docker.io/{image}"
    last = image.rsplit("/", 1)[1]
    if ":" not in last and "@" not in last:
        image += ":latest"
    return image


def _default_container(container: dict) -> None:
    image = container.get("image", "")
    tag = image.rsplit("/", 1)[-1]
    if "imagePullPolicy" not in container:
        container["imagePullPolicy"] = "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent"
    container.setdefault("resources", {})
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def default_pod_spec(spec: dict) -> None:
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        _default_container(container)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)


def default_service(service: dict, cluster_ip: str | None) -> None:
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    if spec.get("clusterIP") is None and cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    if "clusterIPs" not in spec and "clusterIP" in spec:
        spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
    service.setdefault("status", {"loadBalancer": {}})


# --------------------------------------------------------------------------------------------------------------
# OSM sidecar injection (pkg/injector in OSM 1.2)

_IPTABLES = (
    "iptables-restore --noflush <<EOF\n"
    "# OSM sidecar interception rules\n*nat\n:OSM_PROXY_INBOUND - [0:0]\n:OSM_PROXY_IN_REDIRECT - [0:0]\n"
    ":OSM_PROXY_OUTBOUND - [0:0]\n:OSM_PROXY_OUT_REDIRECT - [0:0]\n"
    "-A OSM_PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-port 15003\n"
    "-A PREROUTING -p tcp -j OSM_PROXY_INBOUND\n"
    "-A OSM_PROXY_INBOUND -p tcp --dport 15010 -j RETURN\n"
    "-A OSM_PROXY_INBOUND -p tcp --dport 15901 -j RETURN\n"
    "-A OSM_PROXY_INBOUND -p tcp --dport 15902 -j RETURN\n"
    "-A OSM_PROXY_INBOUND -p tcp --dport 15903 -j RETURN\n"
    "-A OSM_PROXY_INBOUND -p tcp --dport 15904 -j RETURN\n"
    "-A OSM_PROXY_INBOUND -p tcp -j OSM_PROXY_IN_REDIRECT\n"
    "-A OSM_PROXY_OUT_REDIRECT -p tcp -j REDIRECT --to-port 15001\n"
    "-A OSM_PROXY_OUT_REDIRECT -p tcp --dport 15000 -j ACCEPT\n"
    "-A OUTPUT -p tcp -j OSM_PROXY_OUTBOUND\n"
    "-A OSM_PROXY_OUTBOUND -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1500 -j OSM_PROXY_IN_REDIRECT\n"
    "-A OSM_PROXY_OUTBOUND -o lo -m owner ! --uid-owner 1500 -j RETURN\n"
    "-A OSM_PROXY_OUTBOUND -m owner --uid-owner 1500 -j RETURN\n"
    "-A OSM_PROXY_OUTBOUND -d 127.0.0.1/32 -j RETURN\n"
    "-A OSM_PROXY_OUTBOUND -j OSM_PROXY_OUT_REDIRECT\n"
    "COMMIT\nEOF\n"
)


def _field_env(name: str, path: str) -> dict:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _osm_init_container() -> dict:
    return {
        "name": "osm-init",
        "image": INIT_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh"],
        "args": ["-c", _IPTABLES],
        "env": [_field_env("POD_IP", "status.podIP")],
        "securityContext": {
            "capabilities": {"add": ["NET_ADMIN"]},
            "privileged": False,
            "runAsNonRoot": False,
            "runAsUser": 0,
        },
    }


def _envoy_container(service_account: str, namespace: str) -> dict:
    return {
        "name": "envoy",
        "image": ENVOY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["envoy"],
        "args": [
            "--log-level",
            "error",
            "--config-path",
            "/etc/envoy/bootstrap.yaml",
            "--service-cluster",
            f"{service_account}.{namespace}",
        ],
        "env": [
            _field_env("POD_UID", "metadata.uid"),
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("POD_IP", "status.podIP"),
            _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ],
        "ports": [
            {"containerPort": 15000, "name": "proxy-admin", "protocol": "TCP"},
            {"containerPort": 15003, "name": "proxy-inbound", "protocol": "TCP"},
            {"containerPort": 15010, "name": "proxy-metrics", "protocol": "TCP"},
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsUser": 1500},
        "volumeMounts": [{"name": "envoy-bootstrap-config-volume", "mountPath": "/etc/envoy", "readOnly": True}],
    }


_PROBE_REWRITE = {
    "livenessProbe": (15901, "/osm-liveness-probe"),
    "readinessProbe": (15902, "/osm-readiness-probe"),
    "startupProbe": (15903, "/osm-startup-probe"),
}


def _rewrite_probes(containers: list[dict]) -> bool:
    """OSM 1.2 sends app probes through Envoy; TCP probes go to osm-healthcheck. True if a TCP probe was seen."""
    saw_tcp = False
    for container in containers:
        for field, (port, path) in _PROBE_REWRITE.items():
            probe = container.get(field)
            if not probe:
                continue
            if "tcpSocket" in probe:
                saw_tcp = True
                original = probe.pop("tcpSocket")["port"]
                probe["httpGet"] = {
                    "path": "/osm-healthcheck",
                    "port": 15904,
                    "scheme": "HTTP",
                    "httpHeaders": [{"name": "Original-Tcp-Port", "value": str(original)}],
                }
            elif "httpGet" in probe:
                probe["httpGet"] = {**probe["httpGet"], "path": path, "port": port, "scheme": "HTTP"}
    return saw_tcp


def inject_sidecar(pod: dict, *, proxy_uuid: str, metrics: bool) -> None:
    """Add what OSM 1.2's mutating webhook adds to a pod it injects."""
    meta, spec = pod["metadata"], pod["spec"]
    meta.setdefault("labels", {})[PROXY_UUID_LABEL] = proxy_uuid
    if metrics:
        meta.setdefault("annotations", {}).update(PROMETHEUS_ANNOTATIONS)
    saw_tcp = _rewrite_probes(spec["containers"])
    spec.setdefault("initContainers", []).append(_osm_init_container())
    spec["containers"].append(_envoy_container(spec.get("serviceAccountName", "default"), meta["namespace"]))
    if saw_tcp:
        spec["containers"].append(
            {
                "name": "osm-healthcheck",
                "image": HEALTHCHECK_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "args": ["--verbosity", "info"],
                "command": ["/osm-healthcheck"],
                "ports": [{"containerPort": 15904, "protocol": "TCP"}],
            }
        )
    spec.setdefault("volumes", []).append(
        {
            "name": "envoy-bootstrap-config-volume",
            "secret": {"secretName": f"envoy-bootstrap-config-{proxy_uuid}", "defaultMode": 420},
        }
    )


# --------------------------------------------------------------------------------------------------------------
# Pods


def _kube_api_access(random_seed: int, namespace: str, pod: str) -> tuple[dict, dict]:
    name = f"kube-api-access-{naming.safe_suffix(5, random_seed, 'kube-api-access', namespace, pod)}"
    volume = {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }
    mount = {"name": name, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}
    return volume, mount


def _qos_class(containers: list[dict]) -> str:
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits = r.get("limits") or {}
        requests = r.get("requests") or limits  # requests default to limits
        if not {"cpu", "memory"} <= limits.keys() or any(requests.get(k) != limits[k] for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def _container_status(container: dict, *, ready: bool, random_seed: int, pod_uid: str, init: bool = False) -> dict:
    image = normalize_image(container["image"])
    repo = image.rsplit(":", 1)[0] if "@" not in image else image.split("@")[0]
    status: dict[str, Any] = {
        "containerID": f"containerd://{naming.hex_id(64, random_seed, 'cid', pod_uid, container['name'])}",
        "image": image,
        "imageID": f"{repo}@sha256:{naming.hex_id(64, 'image', image)}",
        "lastState": {},
        "name": container["name"],
        "ready": ready,
        "restartCount": 0,
    }
    if init:
        status["state"] = {
            "terminated": {
                "containerID": status["containerID"],
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": SEED_TIME,
                "finishedAt": SEED_TIME,
            }
        }
        return status
    status["started"] = ready
    if ready:
        status["state"] = {"running": {"startedAt": SEED_TIME}}
    else:
        # A crash-looping app container: the usual reason a Running pod is not Ready.
        status["restartCount"] = 5
        status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 5m0s restarting failed container={container['name']}",
            }
        }
        status["lastState"] = {
            "terminated": {
                "containerID": status["containerID"],
                "exitCode": 1,
                "reason": "Error",
                "startedAt": SEED_TIME,
                "finishedAt": SEED_TIME,
            }
        }
    return status


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict:
    cond: dict[str, Any] = {
        "type": kind,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": SEED_TIME,
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


@dataclass(frozen=True)
class _NodeInfo:
    name: str
    ip: str
    zone: str | None
    labels: Mapping[str, str]
    pod_cidr: str


def _pod_status(pod: dict, placement: PodPlacement, node: _NodeInfo | None, random_seed: int, nodes: int) -> dict:
    spec = pod["spec"]
    qos = _qos_class(spec["containers"])
    if node is None:
        msg = (
            f"0/{nodes} nodes are available: {nodes} node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling."
        )
        return {
            "phase": "Pending",
            "qosClass": qos,
            "conditions": [_condition("PodScheduled", False, "Unschedulable", msg.format(nodes=nodes))],
        }
    uid = pod["metadata"]["uid"]
    app_names = [c["name"] for c in spec["containers"] if c["name"] not in ("envoy", "osm-healthcheck", "istio-proxy")]
    statuses = []
    for c in spec["containers"]:
        ok = placement.ready or c["name"] not in app_names[:1]
        statuses.append(_container_status(c, ready=ok, random_seed=random_seed, pod_uid=uid))
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    msg = f"containers with unready status: [{' '.join(not_ready)}]" if not_ready else None
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": [
            _condition("PodReadyToStartContainers", True),
            _condition("Initialized", True),
            _condition("Ready", not not_ready, "ContainersNotReady" if not_ready else None, msg),
            _condition("ContainersReady", not not_ready, "ContainersNotReady" if not_ready else None, msg),
            _condition("PodScheduled", True),
        ],
        "hostIP": node.ip,
        "hostIPs": [{"ip": node.ip}],
        "podIP": placement.ip,
        "podIPs": [{"ip": placement.ip}],
        "startTime": SEED_TIME,
        "containerStatuses": statuses,
        "qosClass": qos,
    }
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [
            _container_status(c, ready=True, random_seed=random_seed, pod_uid=uid, init=True)
            for c in spec["initContainers"]
        ]
    return status


class _Scheduler:
    """Round-robin over the nodes a pod's nodeSelector allows; IPs handed out per node's podCIDR."""

    def __init__(self, nodes: list[_NodeInfo]) -> None:
        self.nodes = nodes
        self.used: dict[str, int] = {n.name: 0 for n in nodes}
        self.turn = 0

    def place(self, name: str, node_selector: Mapping[str, str]) -> PodPlacement:
        fits = [n for n in self.nodes if selector_matches(node_selector, n.labels)]
        if not fits:
            return PodPlacement(name=name, node=None, ip=None)
        node = fits[self.turn % len(fits)]
        self.turn += 1
        self.used[node.name] += 1
        if self.used[node.name] > PODS_PER_NODE:
            raise ValueError(f"node {node.name} has no room for pod {name}: add nodes to the seed")
        return PodPlacement(name=name, node=node.name, ip=naming.nth_host(node.pod_cidr, self.used[node.name] + 3))


# --------------------------------------------------------------------------------------------------------------
# expand()


def _owner_ref(obj: dict) -> dict:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class _Expander:
    def __init__(self, random_seed: int, mesh_name: str, placements: Placements) -> None:
        self.random_seed = random_seed
        self.mesh_name = mesh_name
        self.placements = placements
        self.namespaces: dict[str, dict] = {}
        self.nodes: dict[str, _NodeInfo] = {}
        self.pods: list[dict] = []
        self.pods_by_ns: dict[str, list[dict]] = {}
        self.out: list[dict] = []

    def uid(self, kind: str, namespace: str, name: str) -> str:
        return naming.object_uid(self.random_seed, kind, namespace, name)

    def add(self, obj: dict) -> dict:
        meta = obj["metadata"]
        meta.setdefault("uid", self.uid(obj["kind"], meta.get("namespace", ""), meta["name"]))
        self.out.append(obj)
        return obj

    # Pods --------------------------------------------------------------------------------------------------

    def make_pod(
        self,
        template: dict,
        owner: dict,
        placement: PodPlacement,
        extra_labels: dict[str, str],
        hostname: str | None = None,
        subdomain: str | None = None,
    ) -> dict:
        ns = owner["metadata"]["namespace"]
        t_meta = template.get("metadata") or {}
        labels = {**(t_meta.get("labels") or {}), **extra_labels}
        annotations = dict(t_meta.get("annotations") or {})
        meta: dict[str, Any] = {
            "name": placement.name,
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [_owner_ref(owner)],
        }
        if owner["kind"] == "ReplicaSet":
            meta["generateName"] = owner["metadata"]["name"] + "-"
        if annotations:
            meta["annotations"] = annotations
        meta["uid"] = self.uid("Pod", ns, placement.name)
        spec = clone(template.get("spec") or {})
        spec.setdefault("serviceAccountName", "default")
        spec["serviceAccount"] = spec["serviceAccountName"]
        if hostname:
            spec["hostname"], spec["subdomain"] = hostname, subdomain
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
        namespace = self.namespaces[ns]
        if not spec.get("hostNetwork") and injection_decision(namespace, annotations, self.mesh_name):
            inject_sidecar(
                pod,
                proxy_uuid=naming.proxy_uuid(self.random_seed, ns, placement.name),
                metrics=metrics_enabled(namespace),
            )
        elif not spec.get("hostNetwork") and (revision := istio_injection_decision(namespace, labels)):
            inject_istio_sidecar(pod, revision)
        if spec.get("automountServiceAccountToken", True):
            volume, mount = _kube_api_access(self.random_seed, ns, placement.name)
            spec.setdefault("volumes", []).append(volume)
            for c in spec.get("initContainers", []) + spec["containers"]:
                c.setdefault("volumeMounts", []).append(dict(mount))
        default_pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        spec.setdefault(
            "tolerations",
            [
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                },
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                },
            ],
        )
        node = self.nodes.get(placement.node) if placement.node else None
        if placement.node and node is None:
            raise ValueError(f"pod {ns}/{placement.name} placed on unknown node {placement.node}")
        if node:
            spec["nodeName"] = node.name
        pod["status"] = _pod_status(pod, placement, node, self.random_seed, len(self.nodes))
        self.pods.append(pod)
        self.pods_by_ns.setdefault(ns, []).append(pod)
        return pod

    def _placements_for(self, kind: str, obj: dict, names: list[str], scheduler: _Scheduler) -> list[PodPlacement]:
        meta = obj["metadata"]
        given = self.placements.get((meta["namespace"], kind, meta["name"]))
        if given is not None:
            if [p.name for p in given] != names:
                raise ValueError(f"placements for {kind} {meta['namespace']}/{meta['name']} do not match its pods")
            return list(given)
        selector = ((obj["spec"].get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
        return [scheduler.place(n, selector) for n in names]

    def _check_selector(self, obj: dict) -> None:
        spec = obj["spec"]
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not label_selector_matches(spec.get("selector") or {}, labels):
            meta = obj["metadata"]
            raise ValueError(
                f"{obj['kind']} {meta['namespace']}/{meta['name']}: selector does not match template "
                "labels (the apiserver rejects this)"
            )

    def deployment(self, deploy: dict, scheduler: _Scheduler) -> None:
        self._check_selector(deploy)
        meta, spec = deploy["metadata"], deploy["spec"]
        ns, name = meta["namespace"], meta["name"]
        replicas = spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault(
            "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        )
        default_pod_spec(spec["template"].setdefault("spec", {}))
        meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "1"
        self.add(deploy)
        hash_ = naming.pod_template_hash(self.random_seed, ns, name)
        rs_name = naming.replicaset_name(self.random_seed, ns, name)
        template = clone(spec["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = hash_
        max_surge = math.ceil(replicas * 0.25)
        rs = self.add(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": ns,
                    "labels": dict(template["metadata"]["labels"]),
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                        "deployment.kubernetes.io/max-replicas": str(replicas + max_surge),
                        "deployment.kubernetes.io/revision": "1",
                    },
                    "ownerReferences": [_owner_ref(deploy)],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {
                        "matchLabels": {**(spec["selector"].get("matchLabels") or {}), "pod-template-hash": hash_},
                        **(
                            {"matchExpressions": spec["selector"]["matchExpressions"]}
                            if spec["selector"].get("matchExpressions")
                            else {}
                        ),
                    },
                    "template": template,
                },
            }
        )
        names = [naming.deployment_pod_name(self.random_seed, ns, name, i) for i in range(replicas)]
        pods = [
            self.make_pod(template, rs, p, {"pod-template-hash": hash_})
            for p in self._placements_for("Deployment", deploy, names, scheduler)
        ]
        ready = sum(1 for p in pods if _pod_ready(p))
        rs["status"] = _omit_zero(
            {
                "replicas": replicas,
                "fullyLabeledReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": 1,
            }
        )
        unavailable = replicas - ready
        available = unavailable <= math.floor(replicas * 0.25)
        deploy["status"] = _omit_zero(
            {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": unavailable,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True" if available else "False",
                        "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                        "message": "Deployment has minimum availability."
                        if available
                        else "Deployment does not have minimum availability.",
                        "lastUpdateTime": SEED_TIME,
                        "lastTransitionTime": SEED_TIME,
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable",
                        "message": f'ReplicaSet "{rs_name}" has successfully progressed.',
                        "lastUpdateTime": SEED_TIME,
                        "lastTransitionTime": SEED_TIME,
                    },
                ],
            }
        )

    def statefulset(self, sts: dict, scheduler: _Scheduler) -> None:
        self._check_selector(sts)
        meta, spec = sts["metadata"], sts["spec"]
        ns, name = meta["namespace"], meta["name"]
        replicas = spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
        default_pod_spec(spec["template"].setdefault("spec", {}))
        self.add(sts)
        revision = f"{name}-{naming.safe_suffix(10, self.random_seed, 'controller-revision', ns, name)}"
        names = [naming.statefulset_pod_name(name, i) for i in range(replicas)]
        pods = []
        for ordinal, placement in enumerate(self._placements_for("StatefulSet", sts, names, scheduler)):
            template = clone(spec["template"])
            # The StatefulSet controller swaps a template volume for the claim of the same name.
            claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []]
            volumes = [v for v in template["spec"].get("volumes") or [] if v["name"] not in claims]
            volumes += [{"name": c, "persistentVolumeClaim": {"claimName": f"{c}-{placement.name}"}} for c in claims]
            if volumes:
                template["spec"]["volumes"] = volumes
            extra = {
                "controller-revision-hash": revision,
                "statefulset.kubernetes.io/pod-name": placement.name,
                "apps.kubernetes.io/pod-index": str(ordinal),
            }
            pods.append(
                self.make_pod(
                    template, sts, placement, extra, hostname=placement.name, subdomain=spec.get("serviceName")
                )
            )
        ready = sum(1 for p in pods if _pod_ready(p))
        sts["status"] = _omit_zero(
            {
                "observedGeneration": 1,
                "replicas": replicas,
                "readyReplicas": ready,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": ready,
                "currentRevision": revision,
                "updateRevision": revision,
                "collisionCount": 0,
            },
            keep=("collisionCount",),
        )

    # Services -------------------------------------------------------------------------------------------------

    def endpoints_for(self, service: dict) -> None:
        meta, spec = service["metadata"], service["spec"]
        selector = spec.get("selector")
        if not selector:
            return  # Selector-less Services keep whatever Endpoints the user writes.
        ns, name = meta["namespace"], meta["name"]
        headless = spec.get("clusterIP") == "None"
        publish = spec.get("publishNotReadyAddresses", False)
        groups: dict[tuple, list[tuple[dict, bool]]] = {}
        for pod in self.pods_by_ns.get(ns, ()):
            p_meta = pod["metadata"]
            if not pod["status"].get("podIP"):
                continue
            if not selector_matches(selector, p_meta.get("labels") or {}):
                continue
            ports = _resolve_ports(spec.get("ports") or [], pod)
            if spec.get("ports") and not ports:
                continue
            groups.setdefault(ports, []).append((pod, publish or _pod_ready(pod)))
        labels = dict(meta.get("labels") or {})
        if headless:
            labels["service.kubernetes.io/headless"] = ""
        annotations = {"endpoints.kubernetes.io/last-change-trigger-time": SEED_TIME}
        subsets = []
        for ports, members in groups.items():
            subset: dict[str, Any] = {}
            ready = sorted((p for p, ok in members if ok), key=lambda p: p["status"]["podIP"])
            not_ready = sorted((p for p, ok in members if not ok), key=lambda p: p["status"]["podIP"])
            if ready:
                subset["addresses"] = [_endpoint_address(p, name) for p in ready]
            if not_ready:
                subset["notReadyAddresses"] = [_endpoint_address(p, name) for p in not_ready]
            subset["ports"] = [_port_dict(p) for p in ports]
            subsets.append(subset)
        endpoints: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        }
        if labels:
            endpoints["metadata"]["labels"] = labels
        if subsets:
            endpoints["subsets"] = subsets
        self.add(endpoints)

        slice_labels = {**labels, SERVICE_NAME_LABEL: name, "endpointslice.kubernetes.io/managed-by": SLICE_MANAGED_BY}
        chunks: list[tuple[tuple, list[tuple[dict, bool]]]] = []
        for ports, members in groups.items():
            members = sorted(members, key=lambda m: m[0]["status"]["podIP"])
            for i in range(0, len(members), MAX_ENDPOINTS_PER_SLICE):
                chunks.append((ports, members[i : i + MAX_ENDPOINTS_PER_SLICE]))
        if not chunks:
            chunks = [((), [])]  # The controller keeps one placeholder slice for a Service with no endpoints.
        for index, (ports, members) in enumerate(chunks):
            slice_name = f"{name}-{naming.safe_suffix(5, self.random_seed, 'slice', ns, name, index)}"
            obj: dict[str, Any] = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name,
                    "generateName": f"{name}-",
                    "namespace": ns,
                    "labels": dict(slice_labels),
                    "annotations": dict(annotations),
                    "ownerReferences": [_owner_ref(service)],
                },
                "addressType": "IPv4",
                "endpoints": [self._slice_endpoint(p, ok, name) for p, ok in members],
            }
            if ports:
                obj["ports"] = [_port_dict(p) for p in ports]
            self.add(obj)

    def _slice_endpoint(self, pod: dict, ready: bool, service: str) -> dict:
        endpoint: dict[str, Any] = {
            "addresses": [pod["status"]["podIP"]],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "nodeName": pod["spec"]["nodeName"],
            "targetRef": {
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "namespace": pod["metadata"]["namespace"],
                "uid": pod["metadata"]["uid"],
            },
        }
        if pod["spec"].get("hostname") and pod["spec"].get("subdomain") == service:
            endpoint["hostname"] = pod["spec"]["hostname"]
        zone = self.nodes[pod["spec"]["nodeName"]].zone
        if zone is not None:
            endpoint["zone"] = zone
        return endpoint


def _omit_zero(status: dict, keep: Sequence[str] = ()) -> dict:
    # Go's omitempty drops zero counts from workload status; the client then sees None, as against a cluster.
    return {k: v for k, v in status.items() if v != 0 or k in keep}


def _pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def _resolve_ports(service_ports: list[dict], pod: dict) -> tuple:
    resolved = []
    for sp in service_ports:
        target = sp.get("targetPort", sp["port"])
        if isinstance(target, str):
            found = [
                cp["containerPort"]
                for c in pod["spec"]["containers"]
                for cp in c.get("ports") or []
                if cp.get("name") == target
            ]
            if not found:
                continue
            target = found[0]
        resolved.append((sp.get("name"), int(target), sp.get("protocol", "TCP"), sp.get("appProtocol")))
    return tuple(resolved)


def _port_dict(port: tuple) -> dict:
    name, number, protocol, app_protocol = port
    out: dict[str, Any] = {"port": number, "protocol": protocol}
    if name:
        out["name"] = name
    if app_protocol:
        out["appProtocol"] = app_protocol
    return out


def _endpoint_address(pod: dict, service: str) -> dict:
    address = {
        "ip": pod["status"]["podIP"],
        "nodeName": pod["spec"]["nodeName"],
        "targetRef": {
            "kind": "Pod",
            "name": pod["metadata"]["name"],
            "namespace": pod["metadata"]["namespace"],
            "uid": pod["metadata"]["uid"],
        },
    }
    if pod["spec"].get("hostname") and pod["spec"].get("subdomain") == service:
        address["hostname"] = pod["spec"]["hostname"]
    return address


def _node_info(node: dict, index: int) -> _NodeInfo:
    labels = node["metadata"].get("labels") or {}
    ips = [a["address"] for a in (node.get("status") or {}).get("addresses") or [] if a["type"] == "InternalIP"]
    return _NodeInfo(
        name=node["metadata"]["name"],
        ip=ips[0] if ips else f"10.224.0.{index + 4}",
        zone=labels.get("topology.kubernetes.io/zone"),
        labels=labels,
        pod_cidr=(node.get("spec") or {}).get("podCIDR") or naming.node_pod_cidr(index),
    )


def _key(obj: dict) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (api_group(obj), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))


def expand(
    objects: Sequence[dict],
    *,
    random_seed: int = 7,
    mesh_name: str = "osm",
    placements: Placements | None = None,
) -> list[dict]:
    """Applied manifests (and the cluster's Nodes) in, the cluster's full state out, in apply order.

    Objects are copied, never changed in place. A later object with the same group/kind/namespace/name replaces an
    earlier one, as a second `kubectl apply` would. Namespaced objects without a namespace land in `default`.
    Raises ValueError for what the apiserver would reject: a missing namespace, a workload whose selector does not
    match its template, pods with nowhere to run.
    """
    placements = placements or {}
    latest: dict[tuple[str, str, str, str], dict] = {}
    for raw in objects:
        obj = clone(raw)
        if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
            raise ValueError(f"not a Kubernetes object (apiVersion and kind are required): {str(raw)[:80]}")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise ValueError(f"{obj['kind']} without metadata.name")
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            meta.setdefault("namespace", "default")
        latest[_key(obj)] = obj  # dict keeps first-insertion position, value is the last applied version

    ex = _Expander(random_seed, mesh_name, placements)
    objs = list(latest.values())
    ex.namespaces = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Namespace" and api_group(o) == ""}
    node_objs = [o for o in objs if o["kind"] == "Node"]
    ex.nodes = {info.name: info for info in (_node_info(n, i) for i, n in enumerate(node_objs))}
    for obj in objs:
        ns = obj["metadata"].get("namespace")
        if ns is not None and ns not in ex.namespaces:
            raise ValueError(f'{obj["kind"]} {ns}/{obj["metadata"]["name"]}: namespaces "{ns}" not found')

    workloads = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet") and api_group(o) == "apps"]
    if workloads and not ex.nodes:
        raise ValueError("the seed has workloads but no Node to run their pods on")
    scheduler = _Scheduler(list(ex.nodes.values()))

    for ns in ex.namespaces.values():
        ns_meta = ns["metadata"]
        ns_meta.setdefault("labels", {}).setdefault("kubernetes.io/metadata.name", ns_meta["name"])
        ns.setdefault("spec", {"finalizers": ["kubernetes"]})
        ns.setdefault("status", {"phase": "Active"})
    have_sa = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] == "ServiceAccount"}
    for name in ex.namespaces:
        if (name, "default") not in have_sa:  # made by the ServiceAccount controller in every namespace
            objs.append(
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}
            )

    used_ips = {
        o["spec"]["clusterIP"] for o in objs if o["kind"] == "Service" and (o.get("spec") or {}).get("clusterIP")
    }
    next_ip = [256]  # 10.0.1.0 onwards: 10.0.0.1 is the apiserver, 10.0.0.10 kube-dns on AKS

    def allocate_ip() -> str:
        while True:
            ip = naming.nth_host("10.0.0.0/16", next_ip[0])
            next_ip[0] += 1
            if ip not in used_ips:
                used_ips.add(ip)
                return ip

    services = []
    for obj in objs:
        kind, group = obj["kind"], api_group(obj)
        if kind == "Deployment" and group == "apps":
            ex.deployment(obj, scheduler)
        elif kind == "StatefulSet" and group == "apps":
            ex.statefulset(obj, scheduler)
        elif kind == "Service" and group == "":
            spec = obj.setdefault("spec", {})
            default_service(obj, None if spec.get("clusterIP") else allocate_ip())
            services.append(obj)
            ex.add(obj)
        else:
            ex.add(obj)
    explicit_endpoints = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] == "Endpoints"}
    for service in services:
        meta = service["metadata"]
        if (meta["namespace"], meta["name"]) not in explicit_endpoints:
            ex.endpoints_for(service)
    out = ex.out + ex.pods
    return sorted(
        out, key=lambda o: _KIND_ORDER.get(o["kind"], len(_KIND_ORDER) + (api_group(o) not in BUILTIN_GROUPS))
    )
