"""A production-like Meshboard on loopback, for the load test and the fault suite: Redis, the Kubernetes API stand-in
(seeded with the bookstore demo), a real Prometheus with an hour of backfilled sidecar stats, the Celery workers as
docker-compose.yml runs them (one per collection queue, each also consuming the tick queue: `worker-cluster` on
`cluster,tick`, `worker-metrics` on `metrics,tick`, prefork with 2 processes), beat, and gunicorn with the production
config. Each runs in its own process group, so a fault can stop (SIGSTOP), resume (SIGCONT) or kill one of them, or
stop only a worker's pool processes (`hung`: its tasks hang while its heartbeat goes on); everything binds to
127.0.0.1 and lives in one temporary folder. What differs from compose: SQLite instead of PostgreSQL, the stand-in and
the backfilled Prometheus instead of a cluster, a tick every second and a 5 s poll interval."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import requests

from lab.metrics_data import OpenMetrics, envoy_edge, piecewise_cdf, sample_times
from lab.prometheus import PrometheusServer, backfill_openmetrics
from lab.waiting import free_port

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
POLL_SECONDS = 5
USER, PASSWORD = "loadviewer", "a-long-load-test-pass"
OPERATOR, OPERATOR_PASSWORD = "loadoperator", "a-long-load-operator-pass"


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (loopback)
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _prometheus_data(workdir: Path) -> Path:
    """The last hour of bookbuyer's sidecar stats to the bookstore backends, backfilled into a TSDB."""
    now = time.time()
    om = OpenMetrics(sample_times(now - 3600, now, 15))
    buyer = {"source_namespace": "bookbuyer", "source_service": "bookbuyer", "source_workload_name": "bookbuyer"}
    cdf = piecewise_cdf([(5, 0.5), (10, 0.9), (25, 1.0)])
    envoy_edge(om, buyer, "bookstore/bookstore-v1|14001", rps_by_class={"2": 8.0}, cdf=cdf, bytes_sent=900.0)
    envoy_edge(om, buyer, "bookstore/bookstore-v2|14001", rps_by_class={"2": 1.6, "5": 0.4}, cdf=cdf)
    tsdb = workdir / "prometheus" / "data"
    backfill_openmetrics(om.text(), tsdb)
    return tsdb


def range_queries(prometheus_url: str) -> int:
    """How many range queries Prometheus has answered (its own counter)."""
    text = requests.get(f"{prometheus_url}/metrics", timeout=5).text
    match = re.search(r'prometheus_http_requests_total\{code="200",handler="/api/v1/query_range"\} (\d+)', text)
    return int(match.group(1)) if match else 0


def _celery(*args: str) -> list[str]:
    return [PY, "-m", "celery", "-A", "meshboard", *args, "--loglevel", "WARNING"]


# The queues of the collections registered at startup and of the tick, from the settings' task routes (built from
# MESHBOARD_QUEUES), as `manage.py shell` prints them.
_QUEUES = (
    "import json; from django.conf import settings; from apps.clusters.tasks import COLLECTIONS; "
    "print(json.dumps({'collections': sorted({c.queue for c in COLLECTIONS}), "
    "'tick': settings.CELERY_TASK_ROUTES['clusters.tick']['queue']}))"
)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a prefork worker's pool), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


class Processes:
    """Processes of Meshboard's stack started from the repository, each in its own session with its log in
    `workdir`, all sharing one environment (`env`), plus `manage` for its management commands."""

    workdir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen]

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[name] = proc
        return proc

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout


class Stack(Processes):
    """Redis, the stand-in, Prometheus, a Celery worker per collection queue + beat and gunicorn, each its own
    process group."""

    def __init__(self, workdir: Path, *, fault_control: bool = False, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.fault_control = fault_control
        self.procs: dict[str, subprocess.Popen] = {}
        self.prometheus: PrometheusServer | None = None
        self.kubeapi_url = ""
        self.collection_queues: list[str] = []
        self.tick_queue = ""
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "SECRET_KEY": "load-test-only",
            "DEBUG": "0",
            "DATABASE_URL": f"sqlite:///{workdir / 'meshboard.sqlite3'}",
            # Its own collectstatic folder: another stack may be collecting at the same time (test processes).
            "STATIC_ROOT": str(workdir / "static"),
            "REDIS_URL": "",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MESHBOARD_BIND": f"127.0.0.1:{self.web_port}",
            "MESHBOARD_TICK_SECONDS": "1",
            "DJANGO_SETTINGS_MODULE": "meshboard.settings",
            **(env or {}),
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> Stack:
        redis_port = free_port()
        self._spawn("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""])
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        kubeconfig = self.workdir / "kubeconfig"
        flags = ["--fault-control"] if self.fault_control else []
        self._spawn(
            "kubeapi", [PY, "-m", "lab.kubeapi", "--seed", "bookstore", "--kubeconfig-out", str(kubeconfig), *flags]
        )
        tsdb = _prometheus_data(self.workdir)
        self.prometheus = PrometheusServer(self.workdir / "prometheus", tsdb_dir=tsdb, retention="30d").start()
        deadline = time.monotonic() + 20
        while not kubeconfig.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Kubernetes API stand-in wrote no kubeconfig in 20 s; see {self.workdir}")
            time.sleep(0.1)
        self.kubeapi_url = re.search(r"server: (\S+)", kubeconfig.read_text()).group(1)
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput")
        cluster = ["load", "--kubeconfig", str(kubeconfig), "--prometheus-url", self.prometheus.url]
        self.manage("add_cluster", *cluster, "--poll-interval", str(POLL_SECONDS))
        self.manage("create_user", USER, "--role", "viewer", "--password", PASSWORD)
        self.manage("create_user", OPERATOR, "--role", "operator", "--password", OPERATOR_PASSWORD)
        queues = json.loads(self.manage("shell", "--no-imports", "-c", _QUEUES))
        self.collection_queues, self.tick_queue = queues["collections"], queues["tick"]
        for queue in self.collection_queues:
            self.start_worker(queue)
        self._spawn("beat", _celery("beat", "--schedule", str(self.workdir / "beat-schedule")))
        self._spawn("web", [PY, "-m", "gunicorn", "-c", "meshboard/gunicorn.conf.py", "meshboard.wsgi:application"])
        _wait_http(f"{self.url}/healthz", 30)
        return self

    def start_worker(self, queue: str) -> subprocess.Popen:
        """`worker-<queue>`: the worker of one collection queue, as docker-compose.yml runs it (that queue and the
        tick queue, prefork with 2 processes)."""
        args = _celery("worker", "-Q", f"{queue},{self.tick_queue}", "-n", f"{queue}@%h", "--concurrency", "2")
        return self._spawn(f"worker-{queue}", args)

    def _pid(self, name: str) -> int:
        return self.prometheus._proc.pid if name == "prometheus" else self.procs[name].pid

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """SIGSTOP a component for the block (its sockets stay open: callers connect, then wait), then SIGCONT."""
        os.killpg(os.getpgid(self._pid(name)), signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(os.getpgid(self._pid(name)), signal.SIGCONT)

    def pool(self, worker: str) -> list[int]:
        """The pids of a worker's pool processes (not its main process)."""
        pool = _children(self._pid(worker))
        if not pool:
            raise RuntimeError(f"{worker} has no pool processes")
        return pool

    def kill_pool(self, worker: str) -> None:
        """SIGKILL a worker's pool processes, as the kernel's OOM killer would: the main process lives on (and
        starts new ones)."""
        for pid in self.pool(worker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @contextlib.contextmanager
    def hung(self, worker: str) -> Iterator[None]:
        """SIGSTOP a worker's pool processes for the block, not the worker's main process: the tasks it runs or
        receives hang while its heartbeat (a thread of the main process) goes on, as when a collection is stuck."""
        pool = self.pool(worker)
        for pid in pool:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pool:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def runs(self) -> list[dict]:
        code = (
            "import json; from apps.clusters.models import CollectionRun as R; print(json.dumps([[r.kind, r.status,"
            " r.started_at.timestamp(), r.finished_at and r.finished_at.timestamp(), r.error]"
            " for r in R.objects.order_by('id')]))"
        )
        out = self.manage("shell", "--no-imports", "-c", code)
        keys = ("kind", "status", "started", "finished", "error")
        return [dict(zip(keys, r, strict=True)) for r in json.loads(out)]

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
