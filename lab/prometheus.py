"""A real Prometheus server (Debian package `prometheus`) for tests, the lab mesh, the demo and benchmarks.

`PrometheusServer` runs the binary on 127.0.0.1 with a config and a TSDB folder of the caller's, waits until
`/-/ready`, and stops it by pid. A subclass may speak HTTPS or send credentials (`_ssl_context`, `_headers`; see
lab/prometheus_secure.py) and may turn the lifecycle and admin APIs off (`lifecycle=False`). `backfill_openmetrics`
turns OpenMetrics text into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, so tests can query
known series at known times.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from lab.waiting import free_port


class PrometheusError(RuntimeError):
    pass


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not path:
        raise PrometheusError(f"{name} is not installed (Debian package prometheus; `make test` installs it)")
    return path


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `timeout` s; nothing if it has already exited."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def backfill_openmetrics(text: str, tsdb_dir: Path, *, block_hours: int = 2) -> None:
    """Write OpenMetrics `text` (ending in `# EOF`) as TSDB blocks into `tsdb_dir`."""
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    source = tsdb_dir.parent / f".{tsdb_dir.name}.om"
    source.write_text(text if text.rstrip().endswith("# EOF") else text.rstrip() + "\n# EOF\n")
    try:
        result = subprocess.run(
            [
                _binary("promtool"),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                f"--max-block-duration={block_hours}h",
                str(source),
                str(tsdb_dir),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        source.unlink(missing_ok=True)
    if result.returncode != 0:
        raise PrometheusError(f"promtool could not backfill: {result.stderr.strip() or result.stdout.strip()}")


class PrometheusServer:
    """`PrometheusServer(workdir, config).start()`; `config` is the prometheus.yml content as a dict."""

    def __init__(
        self,
        workdir: Path,
        config: dict | None = None,
        *,
        port: int = 0,
        tsdb_dir: Path | None = None,
        retention: str = "30d",
        extra_args: tuple[str, ...] = (),
        lifecycle: bool = True,
    ) -> None:
        self.workdir = Path(workdir)
        self.config = config or {"global": {"scrape_interval": "15s"}}
        self.port = port or free_port()
        self.tsdb_dir = tsdb_dir or self.workdir / "data"
        self.retention = retention
        self.extra_args = extra_args
        self.lifecycle = lifecycle  # --web.enable-lifecycle (/-/reload) and --web.enable-admin-api
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def write_config(self, config: dict | None = None) -> None:
        """Replace the config; a running server picks it up through /-/reload (with the lifecycle API off, at its
        next start)."""
        if config is not None:
            self.config = config
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.config, sort_keys=False))
        tmp.replace(self.config_path)
        if self._proc is not None and self.lifecycle:
            self._post("/-/reload")

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.write_config()
        log = (self.workdir / "prometheus.log").open("ab")
        self._proc = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.tsdb_dir}",
                f"--storage.tsdb.retention.time={self.retention}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *(("--web.enable-lifecycle", "--web.enable-admin-api") if self.lifecycle else ()),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with {self._proc.returncode}; see {self.workdir}/prometheus.log"
                )
            try:
                with self._open("/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"prometheus was not ready within {timeout} s")
            time.sleep(0.1)

    def _ssl_context(self) -> ssl.SSLContext | None:
        """How the server's own requests (readiness, reload) verify it: plain HTTP here."""
        return None

    def _headers(self) -> dict[str, str]:
        """Headers the server's own requests send: none here."""
        return {}

    def _open(self, path: str, *, method: str = "GET", timeout: float = 10):
        request = urllib.request.Request(f"{self.url}{path}", method=method, headers=self._headers())  # noqa: S310
        return urllib.request.urlopen(request, timeout=timeout, context=self._ssl_context())  # noqa: S310

    def _post(self, path: str) -> None:
        with self._open(path, method="POST"):
            pass

    def stop(self) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, timeout=15)
        self._proc = None

    def __enter__(self) -> PrometheusServer:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
