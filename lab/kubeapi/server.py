"""KubeAPIServer: the stand-in's lifecycle (seed, serve in a thread, stop) and its test controls.

By default it speaks plain HTTP and accepts any request. `tls=True` serves HTTPS with a CA of its own (the
kubeconfig it writes carries the CA); `tokens` and `client_certificates` turn on authentication (auth.py: 401 for a
missing or wrong credential); `rbac` (YAML files or folders of Roles, ClusterRoles and their bindings) turns on
authorization (rbac.py: 403 for what the identity may not do).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from lab.seeds import Seed

from .auth import Authenticator, UserInfo
from .faults import Faults, RequestLog
from .handler import KubeHandler
from .rbac import Authorizer
from .registry import Registry, load_crds
from .status import APIError
from .store import Store
from .tls import DEFAULT_SERVER_NAMES, CertificateAuthority, KeyPair, server_context

# The identity of the kubeconfig written for a server that takes client certificates but no tokens, as kubeadm's
# admin.conf: in system:masters, which RBAC lets do anything.
ADMIN_USER = UserInfo("kubernetes-admin", ("system:masters",))
TLS_HANDSHAKE_TIMEOUT = 10.0
_PLAIN_HTTP_ANSWER = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


class SeedError(ValueError):
    """A seed object the apiserver would have refused; the message carries the apiserver's answer."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any, ssl_context: ssl.SSLContext | None = None, **kwargs: Any):
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.ssl_context = ssl_context
        self.tls_failures: list[str] = []  # why handshakes failed, newest last (for tests)
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.ssl_context is not None:
            # The handshake happens in the connection's own thread, so a slow client cannot stall accept().
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        # Go's net/http (so the real apiserver) sets TCP_NODELAY. Without it, a response written as headers then
        # body waits for the client's delayed ACK: 40 ms added to every keep-alive request.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.connections_lock:
            self.connections.add(request)
        try:
            if isinstance(request, ssl.SSLSocket):
                try:
                    request.settimeout(TLS_HANDSHAKE_TIMEOUT)
                    request.do_handshake()
                    request.settimeout(None)
                except (OSError, ValueError) as exc:
                    self.tls_failures.append(str(exc))
                    if "HTTP_REQUEST" in str(exc):  # what Go's TLS server answers plain HTTP with
                        with contextlib.suppress(OSError):
                            socket.socket.sendall(request, _PLAIN_HTTP_ANSWER)
                    self.shutdown_request(request)
                    return
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
        tls: bool = False,
        tls_names: Iterable[str] = DEFAULT_SERVER_NAMES,
        ca: CertificateAuthority | None = None,
        tokens: dict[str, UserInfo | str] | None = None,
        client_certificates: bool = False,
        rbac: Authorizer | Iterable[str | Path] | None = None,
    ):
        """`fault_control=True` serves `server.faults` over HTTP on `/_lab/faults` (see faultcontrol.py).

        `tls=True`: HTTPS with a certificate for `tls_names`, signed by `ca` (a fresh one by default: `server.ca`).
        `tokens` (token -> user name or UserInfo; `{}` for none yet) and/or `client_certificates=True` (signed by
        `server.ca`; TLS only) turn on authentication; `rbac` (an Authorizer, or YAML files and folders) turns on
        authorization. Without them the server accepts every request, as it always did."""
        if client_certificates and not tls:
            raise ValueError("client certificates need tls=True")
        if rbac is not None and tokens is None and not client_certificates:
            raise ValueError("rbac needs authentication (tokens or client_certificates): it authorizes an identity")
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
        self.tls = tls
        self.tls_names = tuple(tls_names)
        self.ca = (ca or CertificateAuthority("kube-standin-ca")) if tls else None
        self._tls_dir: Path | None = None
        self.authenticator = (
            Authenticator.with_tokens(tokens, client_certificates=client_certificates)
            if tokens is not None or client_certificates
            else None
        )
        if rbac is None or isinstance(rbac, Authorizer):
            self.authorizer = rbac
        else:
            self.authorizer = Authorizer.from_paths(rbac)
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
    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.ca is None:
            return None
        self._tls_dir = Path(tempfile.mkdtemp(prefix="kubeapi-tls-"))
        cert, key = self.ca.issue_server(self.tls_names).write(
            self._tls_dir / "apiserver.crt", self._tls_dir / "apiserver.key"
        )
        client_ca = None
        if self.authenticator is not None and self.authenticator.client_certificates:
            client_ca = self.ca.write(self._tls_dir / "client-ca.crt")
        return server_context(cert, key, client_ca)

    def start(self) -> KubeAPIServer:
        handler = type("BoundKubeHandler", (KubeHandler,), {"kube": self})
        self._httpd = _HTTPServer((self.host, self._requested_port), handler, ssl_context=self._ssl_context())
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
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

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
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def tls_failures(self) -> list[str]:
        """Why TLS handshakes failed (a client that does not trust the CA, a certificate from another CA)."""
        return list(self._httpd.tls_failures) if self._httpd is not None else []

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

    def issue_client_certificate(self, user: str, groups: Iterable[str] = (), **options: Any) -> KeyPair:
        """A client certificate for `user` in `groups`, signed by the server's CA (`options`: not_before, validity)."""
        if self.ca is None:
            raise RuntimeError("client certificates need a server started with tls=True")
        return self.ca.issue_client(user, tuple(groups), **options)

    def default_credential(self) -> dict[str, Any]:
        """The kubeconfig user the server writes by default: its first token, else (client certificates only) an
        admin certificate in system:masters, else (no authentication) a dummy token."""
        if self.authenticator is None:
            return {"token": "stand-in"}
        tokens = self.authenticator.tokens()
        if tokens:
            return {"token": next(iter(tokens))}
        return self.client_certificate_user(ADMIN_USER.name, ADMIN_USER.groups)

    def client_certificate_user(self, user: str, groups: Iterable[str] = (), **options: Any) -> dict[str, str]:
        """A kubeconfig `user` entry carrying a fresh client certificate and key (base64 data)."""
        pair = self.issue_client_certificate(user, groups, **options)
        return {
            "client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
            "client-key-data": base64.b64encode(pair.key_pem).decode(),
        }

    def write_kubeconfig(
        self,
        path: str | Path,
        *,
        user: dict[str, Any] | None = None,
        server: str | None = None,
        ca_pem: bytes | None = None,
    ) -> Path:
        """A kubeconfig for this server: its URL (or `server`), its CA's data when it serves TLS (or `ca_pem`), and
        the kubeconfig `user` entry given (`{"token": ...}`, `client_certificate_user(...)`, `{"exec": {...}}`),
        else `default_credential()`."""
        path = Path(path)
        name = f"kubeapi-{self.seed.name}"
        cluster: dict[str, Any] = {"server": server or self.url}
        ca = ca_pem if ca_pem is not None else (self.ca.cert_pem if self.ca is not None else None)
        if ca is not None:
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": name, "user": user if user is not None else self.default_credential()}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
            "current-context": name,
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside and renamed into place: whoever waits for the file to appear (the lab's stacks) must never
        # read it half-written. It may carry a credential: readable by its owner only, as kubectl writes ~/.kube/config.
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(yaml.safe_dump(config, sort_keys=False))
        os.replace(partial, path)
        self.kubeconfig = path
        return path
