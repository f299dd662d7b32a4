"""A bounded load test on loopback: N viewers for T seconds against Meshboard served as in production (gunicorn
with threaded workers, Celery workers and beat, Redis), with a real Prometheus healthy and then stalled (SIGSTOP).

    python -m lab.loadtest                       # 20 viewers, 60 s per phase (the figures in RELIABILITY.md)
    python -m lab.loadtest --viewers 5 --seconds 8

Each viewer logs in and loops over what people open: the overview, the graph's data, the splits page and the chart
series of a service page (the one request that reaches Prometheus). It prints, per phase, the latency percentiles and
status counts per endpoint, how many range queries Prometheus received per second, and whether any collection run was
lost (a gap of more than two poll intervals) or doubled (two runs of one kind overlapping).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import requests

from lab.benchkit import machine
from lab.metrics_data import OpenMetrics, envoy_edge, piecewise_cdf, sample_times
from lab.prometheus import PrometheusServer, _free_port, backfill_openmetrics

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SERVICES = ["bookstore/bookstore", "bookstore/bookstore-v1", "bookstore/bookstore-v2", "bookwarehouse/bookwarehouse"]
POLL_SECONDS = 5
USER, PASSWORD = "loadviewer", "a-long-load-test-pass"


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    range_queries: int = 0

    def p(self, endpoint: str, q: float) -> float:
        values = sorted(self.latencies[endpoint])
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


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


def _range_queries(prometheus_url: str) -> int:
    text = requests.get(f"{prometheus_url}/metrics", timeout=5).text
    match = re.search(r'prometheus_http_requests_total\{code="200",handler="/api/v1/query_range"\} (\d+)', text)
    return int(match.group(1)) if match else 0


class Stack:
    """Redis, the stand-in, Prometheus, Celery workers + beat and gunicorn, each its own process group."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.prometheus: PrometheusServer | None = None
        self.web_port = _free_port()
        self.env = {
            **os.environ,
            "SECRET_KEY": "load-test-only",
            "DEBUG": "0",
            "DATABASE_URL": f"sqlite:///{workdir / 'meshboard.sqlite3'}",
            "REDIS_URL": "",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MESHBOARD_BIND": f"127.0.0.1:{self.web_port}",
            "MESHBOARD_TICK_SECONDS": "1",
            "DJANGO_SETTINGS_MODULE": "meshboard.settings",
        }

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs.append(proc)
        return proc

    def _manage(self, *args: str) -> str:
        return subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def start(self) -> Stack:
        redis_port = _free_port()
        self._spawn("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""])
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        kubeconfig = self.workdir / "kubeconfig"
        self._spawn("kubeapi", [PY, "-m", "lab.kubeapi", "--seed", "bookstore", "--kubeconfig-out", str(kubeconfig)])
        tsdb = _prometheus_data(self.workdir)
        self.prometheus = PrometheusServer(self.workdir / "prometheus", tsdb_dir=tsdb, retention="30d").start()
        deadline = time.monotonic() + 20
        while not kubeconfig.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._manage("migrate", "--noinput")
        self._manage("collectstatic", "--noinput")
        self._manage(
            "add_cluster",
            "load",
            "--kubeconfig",
            str(kubeconfig),
            "--prometheus-url",
            self.prometheus.url,
            "--poll-interval",
            str(POLL_SECONDS),
        )
        self._manage("create_user", USER, "--role", "viewer", "--password", PASSWORD)
        queues = self._manage(
            "shell",
            "--no-imports",
            "-c",
            "from meshboard.celery import app; "
            "print(','.join(sorted({'celery', *(r.get('queue', 'celery') for r in "
            "(app.conf.task_routes or {}).values())})))",
        ).strip()
        self._spawn(
            "worker",
            [
                PY,
                "-m",
                "celery",
                "-A",
                "meshboard",
                "worker",
                "-Q",
                queues,
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--loglevel",
                "WARNING",
            ],
        )
        self._spawn(
            "beat",
            [
                PY,
                "-m",
                "celery",
                "-A",
                "meshboard",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(self.workdir / "beat-schedule"),
            ],
        )
        self._spawn("web", [PY, "-m", "gunicorn", "-c", "meshboard/gunicorn.conf.py", "meshboard.wsgi:application"])
        _wait_http(f"http://127.0.0.1:{self.web_port}/healthz", 30)
        return self

    def runs(self) -> list[dict]:
        code = (
            "import json; from apps.clusters.models import CollectionRun as R; print(json.dumps([[r.kind, r.status,"
            " r.started_at.timestamp(), r.finished_at and r.finished_at.timestamp()]"
            " for r in R.objects.order_by('id')]))"
        )
        out = self._manage("shell", "--no-imports", "-c", code)
        return [dict(zip(("kind", "status", "started", "finished"), r, strict=True)) for r in json.loads(out)]

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _viewer(base: str, phase: Phase, until: float, rng: random.Random) -> None:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=10)
    session.post(
        f"{base}/accounts/login/",
        data={"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies.get("csrftoken", "")},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=10,
    )
    while time.monotonic() < until:
        for endpoint, path in (
            ("overview", "/"),
            ("graph data", "/graph/data"),
            ("splits", "/splits/"),
            ("chart series", f"/services/{rng.choice(SERVICES)}/series?window={rng.choice(['15m', '1h'])}"),
        ):
            started = time.monotonic()
            try:
                status = session.get(base + path, timeout=30, allow_redirects=False).status_code
            except requests.RequestException:
                status = 0  # no answer at all
            phase.latencies[endpoint].append(time.monotonic() - started)
            phase.statuses[endpoint][status] += 1
            if time.monotonic() >= until:
                break


def run_phase(stack: Stack, name: str, viewers: int, seconds: float) -> Phase:
    phase = Phase(name, seconds)
    base = f"http://127.0.0.1:{stack.web_port}"
    healthy = name.startswith("healthy")
    before = _range_queries(stack.prometheus.url) if healthy else 0
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_viewer, args=(base, phase, until, random.Random(i)), daemon=True)
        for i in range(viewers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    if healthy:
        phase.range_queries = _range_queries(stack.prometheus.url) - before
    return phase


def collection_report(runs: list[dict], started: float) -> dict[str, dict[str, int]]:
    """Per kind: runs, overlaps (two runs of one kind at once: doubled) and gaps longer than two poll intervals."""
    report = {}
    for kind in sorted({r["kind"] for r in runs}):
        mine = [r for r in runs if r["kind"] == kind and r["started"] >= started and r["status"] != "skipped"]
        overlaps = sum(1 for a, b in pairwise(mine) if a["finished"] and b["started"] < a["finished"])
        gaps = sum(1 for a, b in pairwise(mine) if b["started"] - a["started"] > 2 * POLL_SECONDS + 1)
        report[kind] = {"runs": len(mine), "overlapping": overlaps, "gaps": gaps}
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    print(
        f"machine: {machine()}; date: {time.strftime('%Y-%m-%d')}; {args.viewers} viewers, {args.seconds:g} s a phase"
    )
    with tempfile.TemporaryDirectory(prefix="meshboard-load-") as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.start()
            time.sleep(2 * POLL_SECONDS)  # the first collections
            started = time.time()
            phases = [
                run_phase(stack, "healthy, 1/4 of the viewers", max(1, args.viewers // 4), args.seconds / 2),
                run_phase(stack, "healthy", args.viewers, args.seconds),
            ]
            os.kill(stack.prometheus._proc.pid, signal.SIGSTOP)
            try:
                phases.append(run_phase(stack, "Prometheus stalled (SIGSTOP)", args.viewers, args.seconds))
            finally:
                os.kill(stack.prometheus._proc.pid, signal.SIGCONT)
            collections = collection_report(stack.runs(), started)
        finally:
            stack.stop()
    result = {"phases": [], "collections": collections}
    for phase in phases:
        rows = {}
        for endpoint in phase.latencies:
            rows[endpoint] = {
                "requests": len(phase.latencies[endpoint]),
                "p50_ms": round(phase.p(endpoint, 0.5) * 1000),
                "p95_ms": round(phase.p(endpoint, 0.95) * 1000),
                "max_ms": round(max(phase.latencies[endpoint]) * 1000),
                "statuses": dict(phase.statuses[endpoint]),
            }
        qps = phase.range_queries / phase.seconds if phase.name.startswith("healthy") else None
        result["phases"].append({"name": phase.name, "endpoints": rows, "range_queries_per_s": qps})
        print(f"\n### {phase.name} ({phase.seconds:g} s)" + (f"; Prometheus range queries {qps:.2f}/s" if qps else ""))
        print("| endpoint | requests | p50 ms | p95 ms | max ms | statuses |\n|---|---|---|---|---|---|")
        for endpoint, row in rows.items():
            print(
                f"| {endpoint} | {row['requests']} | {row['p50_ms']} | {row['p95_ms']} | {row['max_ms']} | "
                f"{row['statuses']} |"
            )
    print(f"\ncollections (poll {POLL_SECONDS} s): {collections}")
    return result


if __name__ == "__main__":
    main()
