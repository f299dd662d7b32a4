"""The ingress controller the lab plays: a real Envoy standing in for ingress-nginx, outside the mesh (no sidecar),
configured from the stand-in's Ingresses as the controller would route them.

This is the controller's side, not OSM's: OSM programs only the backends' sidecars (lab/mesh/envoy.py, IngressBackend).
What it takes from each Ingress of its classes (`spec.ingressClassName`, or the `kubernetes.io/ingress.class`
annotation): a virtual host per rule host (`*` without one), a route per path (Exact: the path; Prefix: element-wise,
`/` matching everything; ImplementationSpecific: a string prefix), longest path first as nginx picks them, to one
cluster per backend Service and port, `<ns>-<svc>-<port>` as ingress-nginx names its upstreams, whose endpoints are the
backing pods (their sidecars' inbound ports). nginx routes to a Service's endpoints itself, so a TrafficSplit does not
apply to ingress traffic, as in a real cluster.

Connections to the backends leave from the controller's own address (127.0.0.3 ..., standing for its pod IP: what the
IngressBackend's Service source admits). With `nginx.ingress.kubernetes.io/backend-protocol: HTTPS` it speaks TLS:
SNI from `proxy_ssl_name` (the configuration snippet) or the `proxy-ssl-name` annotation, the client certificate OSM
issues for the ingress gateway (MeshConfig `certificate.ingressGateway`) when `proxy-ssl-secret` names that secret, and
with `proxy-ssl-verify: "on"` the mesh CA as trust anchor. Unlike nginx, it does not check the backend certificate's
name against `proxy_ssl_name` (only the chain): a sidecar presents its service account's identity, which a name
chosen per Service need not equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.mesh.certs import CertFiles
from lab.mesh.envoy import ROUTER, SidecarConfig, T, _addr, _discovery, _hcm
from lab.mesh.topology import IngressController, MeshService, Policy, Workload, backing

NGINX = "nginx.ingress.kubernetes.io/"
SSL_NAME = re.compile(r"proxy_ssl_name\s+\"?([^\";\s]+)\"?\s*;")


@dataclass(frozen=True)
class IngressRoute:
    """One path of an Ingress rule, resolved to its backend."""

    host: str
    path: str
    path_type: str
    namespace: str
    service: str
    port: int
    https: bool
    sni: str | None
    client_cert: bool
    verify: bool
    ingress: str  # <ns>/<name>

    @property
    def cluster(self) -> str:
        return f"{self.namespace}-{self.service}-{self.port}" + ("-https" if self.https else "")


def served(ic: IngressController, ingress: dict) -> bool:
    spec, annotations = ingress.get("spec") or {}, ingress["metadata"].get("annotations") or {}
    name = spec.get("ingressClassName") or annotations.get("kubernetes.io/ingress.class")
    return name in ic.classes


def ingress_routes(ic: IngressController, policy: Policy) -> list[IngressRoute]:
    """The routes of every Ingress this controller serves, in the order it matches them."""
    gateway_secret = policy.ingress_gateway_secret
    routes = []
    for key, ing in sorted(policy.ingresses.items()):
        if not served(ic, ing):
            continue
        ns = ing["metadata"].get("namespace", "")
        annotations = ing["metadata"].get("annotations") or {}
        https = annotations.get(NGINX + "backend-protocol", "HTTP").upper() in ("HTTPS", "GRPCS")
        snippet = SSL_NAME.search(annotations.get(NGINX + "configuration-snippet", ""))
        sni = snippet.group(1) if snippet else annotations.get(NGINX + "proxy-ssl-name")
        ssl_secret = annotations.get(NGINX + "proxy-ssl-secret", "")
        client_cert = https and ssl_secret == gateway_secret
        verify = https and annotations.get(NGINX + "proxy-ssl-verify", "off") == "on"
        spec = ing.get("spec") or {}
        for rule in spec.get("rules") or []:
            for p in (rule.get("http") or {}).get("paths") or []:
                backend = (p.get("backend") or {}).get("service") or {}
                port = (backend.get("port") or {}).get("number")
                if not backend.get("name") or port is None:
                    continue  # a named port or a resource backend: not in the lab
                routes.append(
                    IngressRoute(
                        rule.get("host") or "*",
                        p.get("path") or "/",
                        p.get("pathType") or "ImplementationSpecific",
                        ns,
                        backend["name"],
                        int(port),
                        https,
                        sni,
                        client_cert,
                        verify,
                        key,
                    )
                )
    return sorted(routes, key=lambda r: (r.host, -len(r.path.rstrip("/") or "/"), r.ingress))


def _match(route: IngressRoute) -> dict:
    if route.path_type == "Exact":
        return {"path": route.path}
    if route.path_type == "Prefix" and route.path.rstrip("/"):
        return {"path_separated_prefix": route.path.rstrip("/")}
    return {"prefix": route.path}


def render_ingress(
    ic: IngressController,
    workloads: list[Workload],
    policy: Policy,
    http_port: int,
    inbound_ports: dict[str, int | None],
    client_cert: CertFiles | None,
    ca: Path,
) -> SidecarConfig:
    """LDS (one HTTP listener on `http_port`, routes inline) and CDS (a cluster per backend) of the controller;
    `inbound_ports` are the meshed pods' inbound ports, by pod."""
    routes = ingress_routes(ic, policy)
    clusters: dict[str, dict] = {}
    hosts: dict[str, list[dict]] = {}
    for route in routes:
        if route.cluster not in clusters:
            clusters[route.cluster] = _backend_cluster(ic, route, workloads, inbound_ports, client_cert, ca)
        hosts.setdefault(route.host, []).append({"match": _match(route), "route": {"cluster": route.cluster}})
    virtual_hosts = [
        {"name": host, "domains": [host], "routes": host_routes} for host, host_routes in sorted(hosts.items())
    ]
    manager = _hcm("ingress_http", {"route_config": {"name": "ingress", "virtual_hosts": virtual_hosts}}, [ROUTER])
    manager["typed_config"]["strip_any_host_port"] = True
    listener = {
        "@type": T + "config.listener.v3.Listener",
        "name": "http",
        "address": _addr(http_port),
        "filter_chains": [{"filters": [manager]}],
    }
    files = {"cds.yaml": _discovery(list(clusters.values())), "lds.yaml": _discovery([listener])}
    return SidecarConfig(files)


def _backend_cluster(
    ic: IngressController,
    route: IngressRoute,
    workloads: list[Workload],
    inbound_ports: dict[str, int | None],
    client_cert: CertFiles | None,
    ca: Path,
) -> dict:
    ms = next(
        (
            s
            for w in workloads
            for s in w.services
            if (s.namespace, s.service, s.port) == (route.namespace, route.service, route.port)
        ),
        None,
    )
    pods = backing(workloads, ms) if isinstance(ms, MeshService) else []
    endpoints = [inbound_ports[p.pod] for p in pods if inbound_ports.get(p.pod)]
    cluster: dict = {
        "@type": T + "config.cluster.v3.Cluster",
        "name": route.cluster,
        "type": "STATIC",
        "connect_timeout": "1s",
        "upstream_bind_config": {"source_address": {"address": ic.address, "port_value": 0}},
        "load_assignment": {
            "cluster_name": route.cluster,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _addr(p)}} for p in endpoints]}],
        },
    }
    if route.https:
        common: dict = {}
        if route.client_cert and client_cert is not None:
            common["tls_certificates"] = [
                {
                    "certificate_chain": {"filename": str(client_cert.cert)},
                    "private_key": {"filename": str(client_cert.key)},
                }
            ]
        if route.verify:
            common["validation_context"] = {"trusted_ca": {"filename": str(ca)}}
        tls: dict = {
            "@type": T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": common,
        }
        if route.sni:
            tls["sni"] = route.sni
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return cluster
