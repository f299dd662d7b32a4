"""KubeAPIServer: the stand-in's lifecycle (seed, serve in a thread, stop) and its test controls."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from lab.seeds import Seed

from .faults import Faults, RequestLog
from .handler import KubeHandler
from .registry import Registry, load_crds
from .status import APIError
from .store import Store


class SeedError(ValueError):
    """A seed object the apiserver would have refused; the message carries the apiserver's answer."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any):
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        # Go's net/http (so the real apiserver) sets TCP_NODELAY. Without it, a response written as headers then
        # body waits for the client's delayed ACK: 40 ms added to every keep-alive request.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.connections_lock:
            self.connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self.connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-response is routine, not worth a traceback


class KubeAPIServer:
    """A Kubernetes API server stand-in on 127.0.0.1; see the package docstring for what it does and does not do."""

    def __init__(
        self,
        seed: Seed,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_size: int = 1000,
        bookmark_interval: float = 60.0,
        fault_control: bool = False,
    ):
        """`fault_control=True` serves `server.faults` over HTTP on `/_lab/faults` (see faultcontrol.py)."""
        self.seed = seed
        self.fault_control = fault_control
        self.host = host
        self._requested_port = port
        self.bookmark_interval = bookmark_interval
        self._crds = load_crds()
        self.registry = Registry(self._crds, seed.crd_groups)
        self.store = Store(self.registry, history_size=history_size)
        self.faults = Faults()
        self.requests = RequestLog()
        self._httpd: _HTTPServer | None = None
        self.kubeconfig: Path | None = None  # the last file write_kubeconfig wrote
        self._thread: threading.Thread | None = None
        self._load_seed()

    def _load_seed(self) -> None:
        for obj in self.seed.objects:
            api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
            rt = self.registry.by_kind(api_version, kind)
            name = (obj.get("metadata") or {}).get("name", "?")
            if rt is None:
                raise SeedError(
                    f"seed {self.seed.name!r}: {api_version} {kind} {name!r} is not served "
                    f"(CRD groups installed: {sorted(self.seed.crd_groups)})"
                )
            version = api_version.rpartition("/")[2]
            namespace = (obj.get("metadata") or {}).get("namespace") if rt.namespaced else None
            if rt.namespaced and not namespace:
                namespace = "default"
            try:
                self.store.create(rt, version, namespace, obj, from_seed=True)
            except APIError as err:
                raise SeedError(f"seed {self.seed.name!r}: {kind} {namespace}/{name}: {err.body['message']}") from err

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> KubeAPIServer:
        handler = type("BoundKubeHandler", (KubeHandler,), {"kube": self})
        self._httpd = _HTTPServer((self.host, self._requested_port), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="kubeapi", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self.store.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._httpd.connections_lock:
            for conn in list(self._httpd.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> KubeAPIServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def fault_control_url(self) -> str | None:
        """Where faults are added over HTTP, when the server was started with fault control."""
        return f"{self.url}/_lab/faults" if self.fault_control else None

    # ---- test controls -----------------------------------------------------------------------------------------
    def set_crd_groups(self, groups: frozenset[str] | set[str]) -> None:
        """Install or remove CRD groups at run time; removing one deletes its objects, as deleting a CRD does."""
        with self.store.cond:
            removed = self.registry.crd_groups - frozenset(groups)
            for rt in self._crds:
                if rt.group in removed:
                    self.store.drop_type((rt.group, rt.plural))
            self.registry.set_crd_groups(groups)

    def write_kubeconfig(self, path: str | Path) -> Path:
        path = Path(path)
        name = f"kubeapi-{self.seed.name}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {"token": "stand-in"}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
            "current-context": name,
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig = path
        return path
