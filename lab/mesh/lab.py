"""`LabMesh`: the whole lab mesh, started and stopped as one object (the CLI and the pytest plugin wrap it)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lab.mesh.apps import Behaviour, HttpApp, HttpClient, Request, TcpClient, TcpEchoApp
from lab.mesh.certs import CertFiles, LabCA
from lab.mesh.controller import LabController
from lab.mesh.dns import DnsServer
from lab.mesh.envoy import EnvoyProcess, LabNetwork, SidecarPorts, render
from lab.mesh.ingress import ingress_routes, render_ingress
from lab.mesh.prom import prometheus_config
from lab.mesh.topology import IngressController, Policy, Topology, Workload, mesh_services, read_topology
from lab.prometheus import PrometheusServer
from lab.waiting import free_ports

log = logging.getLogger("lab.mesh")

# Traffic of the bookstore demo, by the pod's `app` label: (destination MeshService, requests or "tcp", requests/s).
_UA = "-http-client/1.0"
TRAFFIC: dict[str, list[tuple[str, Any, float]]] = {
    "bookbuyer": [
        (
            "bookstore/bookstore",
            [
                Request("GET", "/books-bought", (("user-agent", "bookbuyer" + _UA), ("client-app", "bookbuyer"))),
                Request("GET", "/buy-a-book/new", (("user-agent", "bookbuyer" + _UA),)),
            ],
            20.0,
        )
    ],
    "bookthief": [
        ("bookstore/bookstore", [Request("GET", "/buy-a-book/new", (("user-agent", "bookthief" + _UA),))], 2.0)
    ],
    "bookstore": [("bookwarehouse/bookwarehouse", [Request("POST", "/restock-books")], 1.0)],
    "bookwarehouse": [("bookwarehouse/mysql-0.mysql", "tcp", 1.0)],
}

# Calls to hosts outside the mesh, by the pod's `app` label: (host, port, requests, requests/s). Sent to the port of
# the caller's outbound listener that stands for the Egress port; they reach the host only where an Egress allows it.
EGRESS_TRAFFIC: dict[str, list[tuple[str, int, list[Request], float]]] = {
    "bookbuyer": [
        (
            "books.example.com",
            80,
            [Request("GET", "/catalog/new-releases", (("user-agent", "bookbuyer" + _UA),))],
            4.0,
        )
    ],
}
# The "external" hosts the lab serves itself (a local HTTP server each) and its DNS server resolves to 127.0.0.1.
EXTERNAL_HOSTS = ("books.example.com",)
# Ingress traffic from outside the cluster: requests/s per path of each Ingress the lab's ingress controller serves,
# sent to the controller with the rule's host, to `<path>/books-bought`.
INGRESS_RATE = 2.0

# How each server answers by default (by workload name); bookstore-v2, the canary, is slower and fails sometimes.
BEHAVIOURS = {
    "bookstore": Behaviour(0.0, 2.0, 15.0),
    "bookstore-v2": Behaviour(0.05, 20.0, 60.0),
    "bookwarehouse": Behaviour(0.0, 1.0, 5.0),
    "books.example.com": Behaviour(0.0, 2.0, 10.0),
}


class LabMesh:
    """The bookstore mesh with real Envoys and a real Prometheus, from the stand-in at `kubeconfig`.

    `LabMesh(kubeconfig, workdir).start()` reads the meshed pods and services, issues certificates, starts the apps,
    one Envoy per pod, one Envoy per ingress controller pod (ingress-nginx, outside the mesh: lab/mesh/ingress.py),
    the external hosts' servers and the DNS server that resolves them, the controller and Prometheus, then the
    traffic (the demo's calls, ingress through the controller, egress to the external hosts); `stop()` stops
    everything it started.
    `rate_scale` multiplies every client's rate; `duration` bounds how long the clients send (seconds).
    With `supervise`, a thread restarts Prometheus or an Envoy that exits (`lab.supervise.Backoff`: 1 s, 2 s, 4 s ...
    capped at 30 s) and prints one line per restart, "lab mesh: prometheus exited (killed by SIGKILL); restarting in
    1 s"; Prometheus keeps its TSDB folder, so its data goes on with a gap, and lab.json gets the new pids.
    """

    def __init__(
        self,
        kubeconfig: str | Path,
        workdir: str | Path,
        *,
        prometheus_mode: str = "byo",
        scrape_interval: str = "1s",
        rate_scale: float = 1.0,
        duration: float = 8 * 3600.0,
        prometheus: bool = True,
        control_port: int | None = None,
        supervise: bool = False,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.workdir = Path(workdir).resolve()
        self.prometheus_mode = prometheus_mode
        self.scrape_interval = scrape_interval
        self.rate_scale = rate_scale
        self.duration = duration
        self._with_prometheus = prometheus
        self._control_port = control_port
        self.workloads: list[Workload] = []
        self.topology = Topology([])
        self.sidecars: dict[str, EnvoyProcess] = {}  # by pod name
        self.ingress_proxies: dict[str, EnvoyProcess] = {}  # the ingress controllers' Envoys, by pod name
        self.ingress_ports: dict[str, SidecarPorts] = {}  # by pod name: admin, and `inbound` = its HTTP port
        self.external: dict[str, HttpApp] = {}  # by host
        self.dns: DnsServer | None = None
        self.network = LabNetwork()
        self.ingress_cert: CertFiles | None = None  # OSM's ingress gateway certificate (MeshConfig), for nginx
        self.ports: dict[str, SidecarPorts] = {}
        self.servers: dict[str, HttpApp | TcpEchoApp] = {}  # by workload name
        self.clients: dict[str, HttpClient | TcpClient] = {}  # "<workload> -> <ns>/<svc>"
        self.prometheus: PrometheusServer | None = None
        self.controller: LabController | None = None
        self.policy = Policy()
        self._certs: dict[str, CertFiles] = {}
        self._ca: LabCA | None = None
        self._control: ThreadingHTTPServer | None = None
        self._render_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._supervise = supervise
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts: dict[str, int] = {}
        self.started_at: float | None = None
        self._started_monotonic = 0.0

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> LabMesh:
        from kubernetes import client, config

        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            configuration = client.Configuration()
            config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
            # one connection per watch (a thread per kind: lab/mesh/controller.py), and one for lists and writes
            configuration.connection_pool_maxsize = 32
            api_client = client.ApiClient(configuration)
            self.topology = read_topology(api_client)
            self.workloads = self.topology.workloads
            if not self.workloads:
                raise RuntimeError("the stand-in has no meshed pods (label osm-proxy-uuid)")
            self.controller = LabController(api_client, self._apply)
            self.policy = self.controller.load()
            self._ca = LabCA(self.workdir / "certs")
            for wl in self.workloads:
                self._certs[wl.pod] = self._ca.issue(wl.identity)
            if self.topology.ingress_controllers and self.policy.ingress_gateway_names:
                self.ingress_cert = self._ca.issue(self.policy.ingress_gateway_names[0])
            self._start_servers()
            self._allocate_ports()
            self.network = LabNetwork(
                endpoints=self.topology.endpoints,
                addresses=self.topology.addresses(),
                external={host: app.port for host, app in self.external.items()},
            )
            dns_port = self.dns.port if self.dns else None
            for wl in self.workloads:
                self.sidecars[wl.pod] = EnvoyProcess(
                    wl, self.workdir / "envoy" / wl.name, self.ports[wl.pod], self.ports[wl.pod].admin, dns_port
                )
            for ic in self.topology.ingress_controllers:
                ports = self.ingress_ports[ic.workload.pod]
                self.ingress_proxies[ic.workload.pod] = EnvoyProcess(
                    ic.workload, self.workdir / "envoy" / f"ingress-{ic.name}", ports, ports.admin, dns_port
                )
            self._apply(self.policy)
            for sidecar in self._envoys():
                sidecar.start()
            for sidecar in self._envoys():
                sidecar.wait_ready()
            self.controller.start()
            if self._with_prometheus:
                self.prometheus = PrometheusServer(
                    self.workdir / "prometheus", self._prometheus_config(), retention="1d"
                ).start()
            self._start_clients()
            self._start_control()
            self.started_at = time.time()
            self._started_monotonic = time.monotonic()
            self._write_state()
            if self._supervise:
                self._stopping.clear()
                self._watcher = threading.Thread(target=self._watch, name="lab-mesh-supervisor", daemon=True)
                self._watcher.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=45)  # a Prometheus restart in progress waits for its readiness (<= 30 s)
            self._watcher = None
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()
            self._control = None
        for c in self.clients.values():
            c._stop.set()
        for c in self.clients.values():
            c.stop()
        self.clients.clear()
        if self.controller is not None:
            self.controller.stop()
        for sidecar in self._envoys():
            sidecar.stop()
        if self.prometheus is not None:
            self.prometheus.stop()
            self.prometheus = None
        for server in [*self.servers.values(), *self.external.values()]:
            server.stop()
        self.servers.clear()
        self.external.clear()
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / "lab.json").unlink()

    def __enter__(self) -> LabMesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- parts -------------------------------------------------------------------------------------------------
    def _envoys(self) -> list[EnvoyProcess]:
        return [*self.sidecars.values(), *self.ingress_proxies.values()]

    def _start_servers(self) -> None:
        for wl in self.workloads:
            if not wl.services:
                continue
            if all(ms.protocol == "tcp" for ms in wl.services):
                self.servers[wl.name] = TcpEchoApp(wl.name).start()
            else:
                behaviour = BEHAVIOURS.get(wl.name, Behaviour())
                self.servers[wl.name] = HttpApp(wl.name, Behaviour(**asdict(behaviour))).start()
        for host in EXTERNAL_HOSTS:
            behaviour = BEHAVIOURS.get(host, Behaviour())
            self.external[host] = HttpApp(host, Behaviour(**asdict(behaviour))).start()
        self.dns = DnsServer(dict.fromkeys(EXTERNAL_HOSTS, "127.0.0.1")).start()

    def _egress_ports(self) -> list[int]:
        """The Egress ports each sidecar gets a port of its own for: 80 and those of the Egress policies at start
        (one added later on another port has none in the lab)."""
        ports = {80}
        for egress in self.policy.egresses.values():
            ports |= {int(p["number"]) for p in (egress.get("spec") or {}).get("ports") or [] if "number" in p}
        return sorted(ports)

    def _allocate_ports(self) -> None:
        services = mesh_services(self.workloads)
        egress = self._egress_ports()
        for wl in self.workloads:
            keys = sorted(services)
            ports = free_ports(3 + len(keys) + len(egress))
            server = self.servers.get(wl.name)
            self.ports[wl.pod] = SidecarPorts(
                admin=ports[0],
                inbound=ports[1] if wl.services else None,
                app=server.port if server else None,
                outbound=dict(zip(keys, ports[3 : 3 + len(keys)], strict=True)),
                prometheus=ports[2],
                egress=dict(zip(egress, ports[3 + len(keys) :], strict=True)),
            )
        for ic in self.topology.ingress_controllers:
            admin, http = free_ports(2)
            self.ingress_ports[ic.workload.pod] = SidecarPorts(admin=admin, inbound=http, app=None)

    def _apply(self, policy: Policy) -> None:
        with self._render_lock:
            self.policy = policy
            for wl in self.workloads:
                config = render(wl, self.workloads, policy, self.ports, self._certs, self._ca.cert_path, self.network)
                self.sidecars[wl.pod].write(config)
            inbound = {pod: p.inbound for pod, p in self.ports.items()}
            for ic in self.topology.ingress_controllers:
                http = self.ingress_ports[ic.workload.pod].inbound
                config = render_ingress(
                    ic, self.workloads, policy, http, inbound, self.ingress_cert, self._ca.cert_path
                )
                self.ingress_proxies[ic.workload.pod].write(config)

    def _start_clients(self) -> None:
        services = mesh_services(self.workloads)
        for wl in self.workloads:
            for dest, requests, rate in TRAFFIC.get(wl.app, []):
                port = self.ports[wl.pod].outbound.get(dest)
                if port is None:
                    continue
                name = f"{wl.name} -> {dest}"
                if requests == "tcp":
                    client = TcpClient(name, port, rate=rate * self.rate_scale, duration=self.duration)
                else:
                    ms = services[dest]
                    threads = 4 if rate * self.rate_scale >= 10 else 1
                    client = HttpClient(
                        name,
                        port,
                        requests,
                        rate=rate * self.rate_scale,
                        threads=threads,
                        duration=self.duration,
                        host=f"{ms.name}.{ms.namespace}:{ms.port}",  # as an app calls a service: by its name
                    )
                self.clients[name] = client.start()
            for host, port, requests, rate in EGRESS_TRAFFIC.get(wl.app, []):
                lab_port = self.ports[wl.pod].egress.get(port)
                if lab_port is None or host not in self.external:
                    continue
                name = f"{wl.name} -> {host}:{port}"
                client = HttpClient(
                    name, lab_port, requests, rate=rate * self.rate_scale, threads=1, duration=self.duration, host=host
                )
                self.clients[name] = client.start()
        for ic in self.topology.ingress_controllers:
            self._start_ingress_clients(ic)

    def _start_ingress_clients(self, ic: IngressController) -> None:
        """One client per path of the Ingresses the controller serves at start, from outside the cluster."""
        port = self.ingress_ports[ic.workload.pod].inbound
        for route in ingress_routes(ic, self.policy):
            host = route.host if route.host != "*" else f"{ic.name}.{ic.namespace}"
            path = route.path if route.path_type == "Exact" else f"{route.path.rstrip('/')}/books-bought"
            name = f"internet -> {host}{route.path}"
            if name in self.clients:
                continue
            requests = [Request("GET", path, (("user-agent", "curl/8.5.0"),))]
            client = HttpClient(
                name, port, requests, rate=INGRESS_RATE * self.rate_scale, threads=1, duration=self.duration, host=host
            )
            self.clients[name] = client.start()

    def _prometheus_config(self) -> dict:
        targets = [(wl, self.ports[wl.pod].prometheus) for wl in self.workloads]
        return prometheus_config(targets, mode=self.prometheus_mode, scrape_interval=self.scrape_interval)

    # ---- controls ----------------------------------------------------------------------------------------------
    @property
    def prometheus_url(self) -> str | None:
        return self.prometheus.url if self.prometheus else None

    def workload(self, name: str) -> Workload:
        for wl in self.workloads:
            if name in (wl.name, wl.pod):
                return wl
        raise KeyError(name)

    def sidecar(self, name: str) -> EnvoyProcess:
        """The sidecar of a workload (`bookbuyer`, `bookstore`, `bookstore-v2`, `mysql`...) or pod."""
        return self.sidecars[self.workload(name).pod]

    @property
    def ca_path(self) -> Path:
        """The lab CA's certificate (PEM), which every sidecar trusts."""
        if self._ca is None:
            raise RuntimeError("the lab is not started")
        return self._ca.cert_path

    def cert_files(self, name: str) -> CertFiles:
        """The certificate and key of a workload's sidecar (identity `<sa>.<ns>.cluster.local`)."""
        return self._certs[self.workload(name).pod]

    def set_behaviour(
        self, workload: str, *, error_rate: float | None = None, latency_ms: tuple[float, float] | None = None
    ) -> Behaviour:
        """Change how a server answers from now on (e.g. make the canary bookstore-v2 fail or slow)."""
        server = self.servers[self.workload(workload).name]
        if not isinstance(server, HttpApp):
            raise ValueError(f"{workload} is not an HTTP server")
        if error_rate is not None:
            if not 0.0 <= error_rate <= 1.0:
                raise ValueError("error_rate must be within 0..1")
            server.behaviour.error_rate = error_rate
        if latency_ms is not None:
            server.behaviour.latency_ms_min, server.behaviour.latency_ms_max = sorted(latency_ms)
        return server.behaviour

    def set_prometheus_mode(self, mode: str) -> None:
        """Switch Prometheus between "byo" and "osm" (keep-list) at run time (config reload)."""
        self.prometheus_mode = mode
        if self.prometheus is not None:
            self.prometheus.write_config(self._prometheus_config())
            self._write_state()

    def traffic(self) -> dict[str, dict]:
        """What the generator itself counted, per client."""
        return {name: c.snapshot() for name, c in self.clients.items()}

    def pids(self) -> dict[str, int]:
        pids = {f"envoy:{s.wl.name}": s.proc.pid for s in self.sidecars.values() if s.proc}
        pids |= {f"envoy:ingress {s.wl.name}": s.proc.pid for s in self.ingress_proxies.values() if s.proc}
        if self.prometheus is not None and self.prometheus._proc is not None:
            pids["prometheus"] = self.prometheus._proc.pid
        return pids

    def status(self) -> dict:
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "kubeconfig": str(self.kubeconfig),
            "prometheus_url": self.prometheus_url,
            "prometheus_mode": self.prometheus_mode,
            "control_url": f"http://127.0.0.1:{self._control.server_address[1]}" if self._control else None,
            "permissive": self.policy.permissive,
            "sidecars": {
                s.wl.name: {
                    "pod": s.wl.pod,
                    "namespace": s.wl.namespace,
                    "identity": s.wl.identity,
                    "admin": s.ports.admin,
                    "inbound": s.ports.inbound,
                    "prometheus": s.ports.prometheus,
                    "app": s.ports.app,
                    "outbound": s.ports.outbound,
                    "base_id": s.base_id,
                    "pid": s.proc.pid if s.proc else None,
                }
                for s in self.sidecars.values()
            },
            "ingress": {
                s.wl.name: {
                    "pod": s.wl.pod,
                    "namespace": s.wl.namespace,
                    "address": ic.address,
                    "admin": s.ports.admin,
                    "http": s.ports.inbound,
                    "base_id": s.base_id,
                    "pid": s.proc.pid if s.proc else None,
                }
                for ic in self.topology.ingress_controllers
                if (s := self.ingress_proxies.get(ic.workload.pod)) is not None
            },
            "external": {host: {"port": app.port, "address": "127.0.0.1"} for host, app in self.external.items()},
            "dns_port": self.dns.port if self.dns else None,
            "pids": self.pids(),
            "restarts": dict(self.restarts),
            "behaviours": {n: asdict(s.behaviour) for n, s in self.servers.items() if isinstance(s, HttpApp)},
            "traffic": self.traffic(),
            "controller": {
                "applied": self.controller.applied if self.controller else 0,
                "relists": dict(self.controller.relists) if self.controller else {},
                "errors": list(self.controller.errors[-5:]) if self.controller else [],
            },
        }

    def _write_state(self) -> None:
        with self._state_lock:
            tmp = self.workdir / "lab.json.tmp"
            tmp.write_text(json.dumps(self.status(), indent=2, sort_keys=True))
            tmp.replace(self.workdir / "lab.json")

    # ---- supervision -------------------------------------------------------------------------------------------
    def _supervised(self) -> list[tuple[str, int | bool | None, Any]]:
        """(name, its exit code (None: running; True: not running, code unknown), how to restart it) per child."""
        found: list[tuple[str, int | bool | None, Any]] = []
        if self.prometheus is not None:
            proc = self.prometheus._proc
            found.append(("prometheus", True if proc is None else proc.poll(), self._restart_prometheus))
        for sidecar in self.sidecars.values():
            proc = sidecar.proc
            code = True if proc is None else proc.poll()
            found.append((f"envoy {sidecar.wl.name}", code, lambda s=sidecar: self._restart_envoy(s)))
        for proxy in self.ingress_proxies.values():
            proc = proxy.proc
            code = True if proc is None else proc.poll()
            found.append((f"envoy ingress {proxy.wl.name}", code, lambda s=proxy: self._restart_envoy(s)))
        return found

    def _restart_prometheus(self) -> None:
        self.prometheus._proc = None  # it is gone; start() must not ask it to reload
        self.prometheus.start()

    def _restart_envoy(self, sidecar: EnvoyProcess) -> None:
        sidecar.stop()  # the process is gone: this removes its shared memory, which a new Envoy with its base id needs
        sidecar.start()
        sidecar.wait_ready()

    def _watch(self) -> None:
        from lab.supervise import Backoff, describe_exit

        backoffs: dict[str, Backoff] = {}
        started: dict[str, float] = {}
        due: dict[str, float] = {}
        while not self._stopping.wait(0.5):
            for name, code, restart in self._supervised():
                now = time.monotonic()
                if name in due:
                    if now < due[name]:
                        continue
                    del due[name]
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    try:
                        restart()
                    except Exception as err:
                        delay = backoffs[name].next_delay(0.0)
                        due[name] = time.monotonic() + delay
                        print(f"lab mesh: {name} did not start again ({err}); retrying in {delay:g} s", flush=True)
                    else:
                        started[name] = time.monotonic()
                    with contextlib.suppress(Exception):
                        self._write_state()
                    continue
                if code is None:
                    continue
                if self._stopping.is_set():
                    return
                backoff = backoffs.setdefault(name, Backoff())
                delay = backoff.next_delay(now - started.get(name, self._started_monotonic))
                due[name] = now + delay
                what = describe_exit(None if code is True else code)
                print(f"lab mesh: {name} exited ({what}); restarting in {delay:g} s", flush=True)

    def _start_control(self) -> None:
        """A small HTTP API on 127.0.0.1 for the CLI: GET /status, POST /behaviour, POST /prometheus-mode."""
        if self._control_port is None:
            return
        lab = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body, indent=2, sort_keys=True).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/status":
                    self._send(200, lab.status())
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                try:
                    if url.path == "/behaviour":
                        latency = tuple(float(x) for x in q["latency_ms"].split(",")) if "latency_ms" in q else None
                        if latency is not None and len(latency) == 1:
                            latency = (latency[0], latency[0])
                        b = lab.set_behaviour(
                            q["workload"],
                            error_rate=float(q["error_rate"]) if "error_rate" in q else None,
                            latency_ms=latency,
                        )
                        self._send(200, asdict(b))
                    elif url.path == "/prometheus-mode":
                        lab.set_prometheus_mode(q["mode"])
                        self._send(200, {"mode": lab.prometheus_mode})
                    else:
                        self._send(404, {"error": "not found"})
                except (KeyError, ValueError) as err:
                    self._send(400, {"error": str(err)})

        self._control = ThreadingHTTPServer(("127.0.0.1", self._control_port), Handler)
        self._control.daemon_threads = True
        threading.Thread(target=self._control.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()


def control(state_dir: Path, method: str, path: str) -> dict:
    """Call a running lab's control API, found through `<state_dir>/lab.json`."""
    state = json.loads((Path(state_dir) / "lab.json").read_text())
    request = urllib.request.Request(state["control_url"] + path, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())
