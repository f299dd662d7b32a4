"""Objects of OSM's policy API (IngressBackend, Egress, UpstreamTrafficSetting, Retry, MeshRootCertificate) and the
networking.k8s.io Ingress and IngressClass, as a client would create them: for tests that build their own seeds or
write them to the stand-in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

POLICY = "policy.openservicemesh.io/v1alpha1"
NETWORKING = "networking.k8s.io/v1"


def _meta(namespace: str, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace} if namespace else {"name": name}


def ingress_class(name: str = "nginx", controller: str = "k8s.io/ingress-nginx") -> dict:
    return {
        "apiVersion": NETWORKING,
        "kind": "IngressClass",
        "metadata": _meta("", name),
        "spec": {"controller": controller},
    }


def ingress(
    namespace: str,
    name: str,
    service: str,
    port: int | str = 80,
    *,
    host: str = "",
    path: str = "/",
    ingress_class_name: str = "nginx",
) -> dict:
    """One rule, one path, to `service` on a port number (int) or port name (str)."""
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    rule: dict[str, Any] = {
        "http": {
            "paths": [{"path": path, "pathType": "Prefix", "backend": {"service": {"name": service, "port": port_ref}}}]
        }
    }
    if host:
        rule["host"] = host
    return {
        "apiVersion": NETWORKING,
        "kind": "Ingress",
        "metadata": _meta(namespace, name),
        "spec": {"ingressClassName": ingress_class_name, "rules": [rule]},
    }


def ingress_backend(
    namespace: str,
    name: str,
    backends: list[dict],
    sources: list[dict],
) -> dict:
    return {
        "apiVersion": POLICY,
        "kind": "IngressBackend",
        "metadata": _meta(namespace, name),
        "spec": {"backends": backends, "sources": sources},
    }


def backend(name: str, port: int, protocol: str = "http", tls: dict | None = None) -> dict:
    out: dict[str, Any] = {"name": name, "port": {"number": port, "protocol": protocol}}
    if tls is not None:
        out["tls"] = tls
    return out


def egress(
    namespace: str,
    name: str,
    *,
    sources: Sequence[tuple[str, str]],
    hosts: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    ports: Sequence[tuple[int, str]] = ((80, "http"),),
    matches: Sequence[dict] = (),
) -> dict:
    """`sources`: (namespace, service account) pairs; `ports`: (number, protocol) pairs."""
    spec: dict[str, Any] = {
        "sources": [{"kind": "ServiceAccount", "name": sa, "namespace": ns} for ns, sa in sources],
        "ports": [{"number": n, "protocol": p} for n, p in ports],
    }
    if hosts:
        spec["hosts"] = list(hosts)
    if ip_addresses:
        spec["ipAddresses"] = list(ip_addresses)
    if matches:
        spec["matches"] = list(matches)
    return {"apiVersion": POLICY, "kind": "Egress", "metadata": _meta(namespace, name), "spec": spec}


def upstream_traffic_setting(namespace: str, name: str, host: str, **spec: Any) -> dict:
    return {
        "apiVersion": POLICY,
        "kind": "UpstreamTrafficSetting",
        "metadata": _meta(namespace, name),
        "spec": {"host": host, **spec},
    }


def retry(
    namespace: str,
    name: str,
    *,
    source: tuple[str, str],
    destinations: Sequence[tuple[str, str]],
    retry_on: str = "5xx",
    num_retries: int = 3,
) -> dict:
    """`source`: (namespace, service account); `destinations`: (namespace, service) pairs."""
    return {
        "apiVersion": POLICY,
        "kind": "Retry",
        "metadata": _meta(namespace, name),
        "spec": {
            "source": {"kind": "ServiceAccount", "name": source[1], "namespace": source[0]},
            "destinations": [{"kind": "Service", "name": n, "namespace": ns} for ns, n in destinations],
            "retryPolicy": {
                "retryOn": retry_on,
                "perTryTimeout": "1s",
                "numRetries": num_retries,
                "retryBackoffBaseInterval": "100ms",
            },
        },
    }


def mesh_root_certificate(namespace: str, name: str, state: str = "active", **status: Any) -> dict:
    return {
        "apiVersion": "config.openservicemesh.io/v1alpha2",
        "kind": "MeshRootCertificate",
        "metadata": _meta(namespace, name),
        "spec": {
            "trustDomain": "cluster.local",
            "provider": {"tresor": {"ca": {"secretRef": {"name": "osm-ca-bundle", "namespace": namespace}}}},
        },
        "status": {"state": state, **status},
    }
