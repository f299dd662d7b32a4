"""What every seeded cluster has before any app is applied: an AKS-like cluster and, optionally, OSM's control plane.

The cluster part: Linux nodes labelled as AKS labels them, the system namespaces, and the `default/kubernetes`
Service with the API server's address in its Endpoints (AKS exclusion checks compare it with the MeshConfig's
outbound IP range exclusions). The OSM part: what `osm install` (chart v1.2.4, mesh name `osm`, Tresor) leaves in
`osm-system`: the osm-controller, osm-injector and osm-bootstrap Deployments with the labels `osm mesh list` reads,
their Services, and MeshConfig `osm-mesh-config` with the chart's defaults.
"""

from __future__ import annotations

from typing import Any

from lab.seeds import naming
from lab.seeds.controllers import OSM_REGISTRY, OSM_VERSION
from lab.seeds.naming import SEED_TIME

CLUSTER_NAME = "MC_meshboard-rg_meshboard-aks_westeurope"
REGION = "westeurope"
INSTANCE_TYPE = "Standard_D4s_v3"
NODE_POOL = "nodepool1"
# RFC 5737 documentation address: it stands for the AKS API server's public IP and can never be a real one.
API_SERVER_IP = "203.0.113.10"
OSM_NAMESPACE = "osm-system"
MESH_NAME = "osm"
TRUST_DOMAIN = "cluster.local"
ENVOY_IMAGE_FOR_MESHCONFIG = "envoyproxy/envoy-distroless:v1.22.2"  # [unconfirmed] chart pins a digest


def node_name(index: int) -> str:
    return f"aks-{NODE_POOL}-31415926-vmss{index:06d}"


def node_ip(index: int) -> str:
    return naming.nth_host("10.224.0.0/16", index + 4)  # AKS default node subnet; .1-.3 are Azure's


def node_zone(index: int) -> str:
    return f"{REGION}-{index % 3 + 1}"


def node(index: int, kubernetes_version: str, random_seed: int) -> dict:
    """An AKS Ubuntu node of a VM scale set, labelled as AKS labels its nodes."""
    name = node_name(index)
    zone = str(index % 3 + 1)
    ip = node_ip(index)
    labels = {
        "agentpool": NODE_POOL,
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": INSTANCE_TYPE,
        "beta.kubernetes.io/os": "linux",
        "failure-domain.beta.kubernetes.io/region": REGION,
        "failure-domain.beta.kubernetes.io/zone": f"{REGION}-{zone}",
        "kubernetes.azure.com/agentpool": NODE_POOL,
        "kubernetes.azure.com/cluster": CLUSTER_NAME,
        "kubernetes.azure.com/consolidated-additional-properties": naming.stable_uuid("aks-props", random_seed),
        "kubernetes.azure.com/kubelet-identity-client-id": naming.stable_uuid("kubelet-identity", random_seed),
        "kubernetes.azure.com/mode": "system",
        "kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202408.12.0",
        "kubernetes.azure.com/nodepool-type": "VirtualMachineScaleSets",
        "kubernetes.azure.com/os-sku": "Ubuntu",
        "kubernetes.azure.com/role": "agent",
        "kubernetes.azure.com/storageprofile": "managed",
        "kubernetes.azure.com/storagetier": "Premium_LRS",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/role": "agent",
        "node-role.kubernetes.io/agent": "",
        "node.kubernetes.io/instance-type": INSTANCE_TYPE,
        "storageprofile": "managed",
        "storagetier": "Premium_LRS",
        "topology.disk.csi.azure.com/zone": f"{REGION}-{zone}",
        "topology.kubernetes.io/region": REGION,
        "topology.kubernetes.io/zone": f"{REGION}-{zone}",
    }
    capacity = {
        "cpu": "4",
        "ephemeral-storage": "129886128Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": "16375836Ki",
        "pods": "110",
    }
    allocatable = {**capacity, "cpu": "3860m", "ephemeral-storage": "119703055367", "memory": "12880412Ki"}
    sub = naming.stable_uuid("subscription", random_seed)
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ]
    conditions = [
        {
            "type": t,
            "status": "False",
            "reason": r,
            "message": m,
            "lastHeartbeatTime": SEED_TIME,
            "lastTransitionTime": SEED_TIME,
        }
        for t, r, m in pressure
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": SEED_TIME,
            "lastTransitionTime": SEED_TIME,
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "csi.volume.kubernetes.io/nodeid": f'{{"disk.csi.azure.com":"{name}","file.csi.azure.com":"{name}"}}',
            },
        },
        "spec": {
            "podCIDR": naming.node_pod_cidr(index),
            "podCIDRs": [naming.node_pod_cidr(index)],
            "providerID": (
                f"azure:///subscriptions/{sub}/resourceGroups/{CLUSTER_NAME.lower()}/providers/"
                f"Microsoft.Compute/virtualMachineScaleSets/aks-{NODE_POOL}-31415926-vmss/virtualMachines/{index}"
            ),
        },
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "allocatable": allocatable,
            "capacity": capacity,
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": naming.stable_uuid("boot", random_seed, name),
                "containerRuntimeVersion": "containerd://1.7.20-1",
                "kernelVersion": "5.15.0-1071-azure",
                "kubeProxyVersion": kubernetes_version,
                "kubeletVersion": kubernetes_version,
                "machineID": naming.hex_id(32, "machine", random_seed, name),
                "operatingSystem": "linux",
                "osImage": "Ubuntu 22.04.4 LTS",
                "systemUUID": naming.stable_uuid("system", random_seed, name),
            },
        },
    }


def _namespace(name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def mesh_namespace(
    name: str,
    *,
    mesh: str = MESH_NAME,
    injection: bool = True,
    metrics: bool = True,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict:
    """A namespace as `osm namespace add` (and `osm metrics enable`) leave it."""
    ann = dict(annotations or {})
    ann["openservicemesh.io/sidecar-injection"] = "enabled" if injection else "disabled"
    if metrics:
        ann["openservicemesh.io/metrics"] = "enabled"
    return _namespace(name, {**(labels or {}), "openservicemesh.io/monitored-by": mesh}, ann)


def base_cluster(*, nodes: int = 2, kubernetes_version: str = "v1.30.4", random_seed: int = 7) -> list[dict]:
    """Nodes, system namespaces and the `default/kubernetes` Service, Endpoints and EndpointSlice."""
    objects = [_namespace(n) for n in ("default", "kube-system", "kube-public", "kube-node-lease")]
    objects += [node(i, kubernetes_version, random_seed) for i in range(nodes)]
    port = {"name": "https", "port": 443, "protocol": "TCP"}
    objects += [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {"clusterIP": "10.0.0.1", "ports": [{**port, "targetPort": 443}], "type": "ClusterIP"},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [{"addresses": [{"ip": API_SERVER_IP}], "ports": [port]}],
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [API_SERVER_IP], "conditions": {"ready": True}}],
            "ports": [port],
        },
    ]
    return objects


# --------------------------------------------------------------------------------------------------------------
# OSM control plane (charts/osm v1.2.4 rendered with `osm install` defaults)


def osm_labels(app: str) -> dict[str, str]:
    # `osm.labels` helper of the chart, plus the per-component `app` label.
    return {
        "app.kubernetes.io/instance": MESH_NAME,
        "app.kubernetes.io/name": "openservicemesh.io",
        "app.kubernetes.io/version": OSM_VERSION,
        "app": app,
    }


def osm_controller_args() -> list[str]:
    """The osm-controller args as the v1.2.4 chart renders them: flag and value are separate list items."""
    return [
        "--verbosity", "info",
        "--osm-namespace", OSM_NAMESPACE,
        "--osm-version", OSM_VERSION,
        "--osm-service-account", "osm",
        "--mesh-name", MESH_NAME,
        "--validator-webhook-config", f"osm-validator-mesh-{MESH_NAME}",
        "--ca-bundle-secret-name", "osm-ca-bundle",
        "--certificate-manager", "tresor",
        "--trust-domain", TRUST_DOMAIN,
        "--enable-mesh-root-certificate=false",
        "--cert-manager-issuer-name", "osm-ca",
        "--cert-manager-issuer-kind", "Issuer",
        "--cert-manager-issuer-group", "cert-manager.io",
        "--enable-reconciler=false",
    ]  # fmt: skip


def _osm_injector_args() -> list[str]:
    return [
        "--verbosity", "info",
        "--osm-namespace", OSM_NAMESPACE,
        "--osm-version", OSM_VERSION,
        "--mesh-name", MESH_NAME,
        "--webhook-config-name", f"osm-webhook-{MESH_NAME}",
        "--webhook-timeout", "20",
        "--ca-bundle-secret-name", "osm-ca-bundle",
        "--certificate-manager", "tresor",
        "--enable-reconciler=false",
        "--osm-container-pull-policy", "IfNotPresent",
        "--trust-domain", TRUST_DOMAIN,
        "--enable-mesh-root-certificate=false",
        "--cert-manager-issuer-name", "osm-ca",
        "--cert-manager-issuer-kind", "Issuer",
        "--cert-manager-issuer-group", "cert-manager.io",
    ]  # fmt: skip


def _osm_bootstrap_args() -> list[str]:
    return [
        "--verbosity", "info",
        "--osm-namespace", OSM_NAMESPACE,
        "--osm-version", OSM_VERSION,
        "--ca-bundle-secret-name", "osm-ca-bundle",
        "--certificate-manager", "tresor",
        "--enable-mesh-root-certificate=false",
        "--enable-reconciler=false",
        "--cert-manager-issuer-name", "osm-ca",
        "--cert-manager-issuer-kind", "Issuer",
        "--cert-manager-issuer-group", "cert-manager.io",
        "--trust-domain", TRUST_DOMAIN,
    ]  # fmt: skip


def _osm_deployment(app: str, args: list[str], ports: list[dict], replicas: int = 1) -> dict:
    labels = osm_labels(app)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": OSM_NAMESPACE, "labels": {**labels, "meshName": MESH_NAME}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9091"},
                },
                "spec": {
                    "serviceAccountName": "osm",
                    "priorityClassName": "system-node-critical",
                    "nodeSelector": {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"},
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": app,
                            "image": f"{OSM_REGISTRY}/{app}:{OSM_VERSION}",
                            "imagePullPolicy": "IfNotPresent",
                            "command": [f"/{app}"],
                            "args": args,
                            "ports": ports,
                            "resources": {
                                "limits": {"cpu": "1500m", "memory": "1G"},
                                "requests": {"cpu": "500m", "memory": "128M"},
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/health/ready", "port": 9091, "scheme": "HTTP"},
                                "initialDelaySeconds": 1,
                                "timeoutSeconds": 5,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/health/alive", "port": 9091, "scheme": "HTTP"},
                                "initialDelaySeconds": 1,
                                "timeoutSeconds": 5,
                            },
                            "env": [
                                {
                                    "name": f"{app.upper().replace('-', '_')}_POD_NAME",
                                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                                }
                            ],
                        }
                    ],
                },
            },
        },
    }


def _osm_service(name: str, app: str, ports: list[dict]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": OSM_NAMESPACE, "labels": osm_labels(app)},
        "spec": {"selector": {"app": app}, "ports": ports},
    }


def mesh_config(*, permissive: bool) -> dict:
    """MeshConfig `osm-mesh-config` with the v1.2.4 chart's defaults (preset-mesh-config.yaml)."""
    return {
        "apiVersion": "config.openservicemesh.io/v1alpha2",
        "kind": "MeshConfig",
        "metadata": {"name": "osm-mesh-config", "namespace": OSM_NAMESPACE},
        "spec": {
            "sidecar": {
                "enablePrivilegedInitContainer": False,
                "logLevel": "error",
                "maxDataPlaneConnections": 0,
                "envoyImage": ENVOY_IMAGE_FOR_MESHCONFIG,
                "initContainerImage": f"{OSM_REGISTRY}/init:{OSM_VERSION}",
                "configResyncInterval": "0s",
                "localProxyMode": "Localhost",
                "tlsMinProtocolVersion": "TLSv1_2",
                "tlsMaxProtocolVersion": "TLSv1_3",
            },
            "traffic": {
                "enableEgress": True,
                "enablePermissiveTrafficPolicyMode": permissive,
                "outboundPortExclusionList": [],
                "inboundPortExclusionList": [],
                "outboundIPRangeExclusionList": [],
                "outboundIPRangeInclusionList": [],
                "networkInterfaceExclusionList": [],
                "inboundExternalAuthorization": {
                    "enable": False,
                    "statPrefix": "inboundExtAuthz",
                    "timeout": "1s",
                    "failureModeAllow": False,
                },
            },
            "observability": {"enableDebugServer": False, "osmLogLevel": "info", "tracing": {"enable": False}},
            "certificate": {"serviceCertValidityDuration": "24h", "certKeyBitSize": 2048},
            "featureFlags": {
                "enableWASMStats": True,
                "enableEgressPolicy": True,
                "enableSnapshotCacheMode": False,
                "enableAsyncProxyServiceMapping": False,
                "enableIngressBackendPolicy": True,
                "enableEnvoyActiveHealthChecks": False,
                "enableRetryPolicy": False,
            },
        },
    }


def osm_control_plane(*, permissive: bool = False) -> list[dict]:
    """What `osm install` leaves in osm-system (not monitored, so its pods carry no sidecar)."""
    metrics = {"name": "metrics", "containerPort": 9091}
    return [
        _namespace(OSM_NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "osm", "namespace": OSM_NAMESPACE, "labels": osm_labels("osm")},
        },
        _osm_deployment(
            "osm-controller",
            osm_controller_args(),
            [{"name": "admin-port", "containerPort": 15000}, {"name": "ads-port", "containerPort": 15128}, metrics],
        ),
        _osm_deployment("osm-injector", _osm_injector_args(), [{"name": "webhook", "containerPort": 9090}, metrics]),
        _osm_deployment(
            "osm-bootstrap", _osm_bootstrap_args(), [{"name": "crdconversion", "containerPort": 9443}, metrics]
        ),
        _osm_service(
            "osm-controller",
            "osm-controller",
            [
                {"name": "ads-port", "port": 15128, "targetPort": 15128},
                {"name": "debug-port", "port": 9092, "targetPort": 9092},
            ],
        ),
        _osm_service("osm-validator", "osm-controller", [{"name": "validator", "port": 9093, "targetPort": 9093}]),
        _osm_service("osm-injector", "osm-injector", [{"name": "sidecar-injector", "port": 9090}]),
        _osm_service(
            "osm-bootstrap",
            "osm-bootstrap",
            [{"name": "crdconversion", "port": 9443}, {"name": "health", "port": 9091}],
        ),
        mesh_config(permissive=permissive),
    ]
