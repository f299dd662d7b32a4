"""Many clusters on many workers (`python -m lab.bench fleet`): stand-ins, Celery workers and beat sharing one
PostgreSQL and one Redis, as a fleet of machines would, and what the workers did over some poll intervals.

`Fleet` starts a throwaway PostgreSQL (scripts/postgres.sh, as .ci/run does), a Redis, one stand-in per cluster
(synthetic seed, each in its own process), the workers (`python -m lab.bench_fleet worker`: a Celery worker on the
cluster and tick queues, prefork with one process, as `celery -A meshboard worker` runs it, plus a recorder of each
collection it executes) and beat. Cluster collection only: the clusters have no Prometheus.

The recorder connects Celery's task_prerun and task_postrun signals in the worker and pushes, for each execution of
mesh.collect_cluster, which worker ran it, for which cluster, when it started and ended and what it returned, to a
Redis list. `analyse` reads those executions: after each cluster's first WARM_UP collections (every cluster is due
at once when beat starts, and its second can wait in the queue behind that burst), interval k of a cluster is the
poll interval centred k intervals after its next collection; each must hold exactly one collection, no two
executions of one cluster may overlap, and the per-worker counts are compared.
tests/fleet/test_fleet_workers.py runs a CI-sized fleet; `bench_fleet` the 20-cluster one.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from lab.stack import PY, ROOT, Processes

T = TypeVar("T")

LOG_KEY = "meshboard:bench:fleet:executions"
COLLECT = "mesh.collect_cluster"
COLLECTED = ("ok", "partial")


# ---- inside each worker process -------------------------------------------------------------------------------------


def _recorder() -> None:
    """Push each collection's start and end to LOG_KEY (the pool's processes inherit these connections)."""
    import redis
    from celery.signals import task_postrun, task_prerun

    clients: dict[int, redis.Redis] = {}

    def push(record: dict) -> None:
        # One client per process: a prefork child must not share its parent's socket.
        if os.getpid() not in clients:
            clients[os.getpid()] = redis.Redis.from_url(os.environ["REDIS_URL"])
        clients[os.getpid()].rpush(LOG_KEY, json.dumps(record))

    def started(task_id: str = "", task: object = None, args: tuple = (), **_kwargs: object) -> None:
        if getattr(task, "name", "") == COLLECT:
            worker = task.request.hostname
            push({"event": "start", "id": task_id, "worker": worker, "cluster": args[0], "t": time.time()})

    def ended(task_id: str = "", task: object = None, retval: object = None, **_kwargs: object) -> None:
        if getattr(task, "name", "") == COLLECT:
            push({"event": "end", "id": task_id, "t": time.time(), "result": str(retval)})

    task_prerun.connect(started, weak=False)
    task_postrun.connect(ended, weak=False)


def worker_main(name: str) -> None:
    """A Celery worker on the cluster and tick queues (prefork, one process), recording its collections."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshboard.settings")
    from django.conf import settings

    from meshboard.celery import app

    _recorder()
    queues = f"{settings.MESHBOARD_QUEUES['cluster']},{settings.MESHBOARD_QUEUES['tick']}"
    app.worker_main(["worker", "-Q", queues, "-n", f"{name}@%h", "--concurrency", "1", "--loglevel", "WARNING"])


# ---- what the workers did --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    worker: str
    cluster: int
    start: float
    end: float
    result: str


def executions(raw: list[bytes]) -> tuple[list[Execution], int]:
    """The executions the recorder pushed, and how many started without an end yet."""
    starts, ends = {}, {}
    for item in raw:
        record = json.loads(item)
        (starts if record["event"] == "start" else ends)[record["id"]] = record
    done = [
        Execution(s["worker"], int(s["cluster"]), s["t"], ends[i]["t"], ends[i]["result"])
        for i, s in starts.items()
        if i in ends
    ]
    return sorted(done, key=lambda e: e.start), len(set(starts) - set(ends))


@dataclass
class FleetReport:
    clusters: int
    workers: list[str]
    poll_seconds: float
    intervals: int
    missed: list[tuple[int, int]] = field(default_factory=list)  # (cluster, interval) with no collection
    doubled: list[tuple[int, int]] = field(default_factory=list)  # (cluster, interval) with more than one run
    overlaps: list[tuple[int, float]] = field(default_factory=list)  # (cluster, when) two executions at once
    results: Counter = field(default_factory=Counter)  # every execution's result, measured or not
    per_worker: dict[str, int] = field(default_factory=dict)  # collections in the measured intervals
    gaps: list[float] = field(default_factory=list)  # seconds between a cluster's consecutive measured collections
    durations: list[float] = field(default_factory=list)  # seconds per measured collection

    @property
    def collected(self) -> int:
        return sum(self.per_worker.values())

    @property
    def spread(self) -> float:
        """The largest deviation of a worker's count from the mean, as a share of the mean."""
        if not self.per_worker or not self.collected:
            return 1.0
        mean = self.collected / len(self.workers)
        return max(abs(self.per_worker.get(w, 0) - mean) for w in self.workers) / mean

    @property
    def ok(self) -> bool:
        return not (self.missed or self.doubled or self.overlaps) and self.results["skipped"] == 0

    def lines(self) -> list[str]:
        expected = self.clusters * self.intervals
        counts = ", ".join(f"{w.split('@')[0]} {self.per_worker.get(w, 0)}" for w in self.workers)
        durations = sorted(self.durations) or [0.0]
        return (
            [
                f"- collections in the measured intervals: {self.collected} of {expected} expected "
                f"({self.clusters} clusters × {self.intervals} intervals); missed intervals: {len(self.missed)}, "
                f"intervals with two runs: {len(self.doubled)}",
                f"- two executions of one cluster at once: {len(self.overlaps)}; lock refusals (skipped runs): "
                f"{self.results['skipped']}; results of every execution: {dict(sorted(self.results.items()))}",
                f"- per worker: {counts}; largest deviation from the mean: {self.spread * 100:.1f} %",
                f"- gap between a cluster's consecutive collections: min {min(self.gaps, default=0):.2f} s, "
                f"median {statistics.median(self.gaps or [0]):.2f} s, max {max(self.gaps, default=0):.2f} s "
                f"(poll interval {self.poll_seconds:g} s)",
                f"- one collection (task start to end): median {statistics.median(durations) * 1000:.0f} ms, "
                f"max {durations[-1] * 1000:.0f} ms",
            ]
            + ([f"- missed (cluster id, interval): {self.missed}"] if self.missed else [])
            + ([f"- two runs in (cluster id, interval): {self.doubled}"] if self.doubled else [])
        )


# The first collections are the warm-up: every cluster at beat's first tick, then a second that may wait in the queue
# behind that burst and come a few seconds before the third (counted as two in one interval if measured).
WARM_UP = 2


def anchor(starts: list[float]) -> float | None:
    """Where a cluster's measured intervals are centred from: its first collection after the warm-up (start times,
    in order), or None before it has had one."""
    return starts[WARM_UP] if len(starts) > WARM_UP else None


def analyse(
    done: list[Execution], *, clusters: list[int], workers: list[str], poll_seconds: float, intervals: int
) -> FleetReport:
    """Each cluster's intervals after its warm-up: interval k is `poll_seconds` long, centred k intervals after the
    cluster's first collection past WARM_UP (`anchor`), and must hold exactly one execution, which collected; a
    cluster's executions never overlap. Per-worker counts are of the collections in those intervals."""
    report = FleetReport(len(clusters), workers, poll_seconds, intervals, results=Counter(e.result for e in done))
    per_worker: Counter = Counter()
    by_cluster: dict[int, list[Execution]] = defaultdict(list)
    for e in done:
        by_cluster[e.cluster].append(e)
    for cluster in clusters:
        runs = by_cluster.get(cluster, [])
        for a, b in itertools.pairwise(runs):
            if b.start < a.end:
                report.overlaps.append((cluster, b.start))
        collected = [e for e in runs if e.result in COLLECTED]
        start = anchor([e.start for e in collected])
        if start is None:
            report.missed.extend((cluster, k) for k in range(intervals))
            continue
        measured = []
        for k in range(intervals):
            low = start + (k - 0.5) * poll_seconds
            inside = [e for e in runs if low <= e.start < low + poll_seconds]
            if len(inside) > 1:
                report.doubled.append((cluster, k))
            good = [e for e in inside if e.result in COLLECTED]
            if not good:
                report.missed.append((cluster, k))
            measured.extend(good[:1])
        for e in measured:
            per_worker[e.worker] += 1
            report.durations.append(e.end - e.start)
        report.gaps.extend(b.start - a.start for a, b in itertools.pairwise(measured))
    report.per_worker = dict(per_worker)
    return report


# ---- the fleet -------------------------------------------------------------------------------------------------------


def _wait(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"{what} not within {timeout:g} s")


class Fleet(Processes):
    """PostgreSQL, Redis, `clusters` stand-ins of `services` services each, `workers` workers and beat."""

    def __init__(
        self,
        workdir: Path,
        *,
        clusters: int,
        services: int,
        workers: int,
        poll_seconds: int = 15,
        tick_seconds: float = 5.0,
    ) -> None:
        self.workdir = workdir
        self.n_clusters, self.services, self.n_workers = clusters, services, workers
        self.poll_seconds, self.tick_seconds = poll_seconds, tick_seconds
        self.procs: dict[str, subprocess.Popen] = {}
        # Not under `workdir`: as root, scripts/postgres.sh runs PostgreSQL as the postgres user, which must reach the
        # folder (pytest's tmp_path is inside a folder only root may enter); .ci/run uses /tmp alike.
        self.pg_dir = Path(tempfile.mkdtemp(prefix="meshboard-fleet-pg-"))
        self.cluster_ids: list[int] = []
        self.workers: list[str] = []
        self.beat_started = 0.0
        self.timings: dict[str, float] = {}
        self.env = {
            **os.environ,
            "SECRET_KEY": "fleet-bench-only",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MESHBOARD_TICK_SECONDS": str(tick_seconds),
            "DJANGO_SETTINGS_MODULE": "meshboard.settings",
        }
        self._redis = None

    def start(self) -> Fleet:
        from lab.waiting import free_port

        began = time.monotonic()
        pg_port = free_port()
        started = subprocess.run(
            [str(ROOT / "scripts" / "postgres.sh"), "start", str(self.pg_dir), str(pg_port)],
            capture_output=True,
            text=True,
        )
        if started.returncode:
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip() or started.stdout.strip()}")
        self.env["DATABASE_URL"] = started.stdout.strip()
        redis_port = free_port()
        self._spawn("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""])
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        kubeconfigs = [self.workdir / f"kubeconfig-{i}" for i in range(self.n_clusters)]
        standin = [PY, "-m", "lab.kubeapi", "--seed", "synthetic", "--services", str(self.services)]
        for i, kubeconfig in enumerate(kubeconfigs):
            self._spawn(f"kubeapi-{i}", [*standin, "--kubeconfig-out", str(kubeconfig)])
        self.manage("migrate", "--noinput")  # while the stand-ins seed themselves
        _wait(lambda: all(k.exists() and k.stat().st_size for k in kubeconfigs), 120, "the stand-ins")
        self.cluster_ids = self._register(kubeconfigs)
        import redis

        self._redis = redis.Redis.from_url(self.env["REDIS_URL"])
        for i in range(self.n_workers):
            self._spawn(f"worker-{i + 1}", [PY, "-m", "lab.bench_fleet", "worker", f"fleet-{i + 1}"])
        beats = "meshboard:heartbeat:queue:cluster"
        members = _wait(lambda: self._live(beats) if len(self._live(beats)) == self.n_workers else None, 60, "workers")
        self.workers = sorted(members)
        self.timings["start"] = time.monotonic() - began
        schedule = str(self.workdir / "beat-schedule")
        self._spawn("beat", [PY, "-m", "celery", "-A", "meshboard", "beat", "--loglevel", "WARNING", "-s", schedule])
        self.beat_started = time.time()
        return self

    def _live(self, key: str) -> list[str]:
        return [m.decode() for m in self._redis.zrange(key, 0, -1)]

    def _register(self, kubeconfigs: list[Path]) -> list[int]:
        """Every cluster through add_cluster, in one Django process (one per cluster would take a second each)."""
        code = (
            "import json; from django.core.management import call_command; from apps.clusters.models import Cluster\n"
            f"for i, path in enumerate({json.dumps([str(k) for k in kubeconfigs])}):\n"
            f"    call_command('add_cluster', f'fleet-{{i + 1:02d}}', kubeconfig=path, "
            f"poll_interval={self.poll_seconds}, stdout=open('/dev/null', 'w'))\n"
            "print(json.dumps(list(Cluster.objects.order_by('pk').values_list('pk', flat=True))))"
        )
        return json.loads(self.manage("shell", "--no-imports", "-c", code))

    def observe(self, intervals: int) -> FleetReport:
        """Wait until every cluster has had `intervals` intervals after its first collection, stop beat, let the
        last collections end, and analyse what the workers did."""
        poll = self.poll_seconds
        # The first collections start at beat's first tick; the second within two intervals (the cluster's first
        # slot a whole interval later), the third one interval after; interval k ends half an interval after the
        # k-th collection after the third.
        until = self.beat_started + self.tick_seconds + (intervals + 2.5) * poll + self.tick_seconds + 2
        time.sleep(max(0.0, until - time.time()))
        # A cluster whose second collection waited in the queue behind the first ones (all clusters at beat's first
        # tick) has its intervals later: beat stops only once every cluster's last interval has ended, so that none
        # is counted missed for not having been watched (a slower machine drains that first burst later).
        deadline = time.time() + 3 * poll
        while time.time() < deadline and time.time() < self._last_interval_end(intervals) + 1:
            time.sleep(1)
        self.stop_process("beat")
        raw = _wait(lambda: (lambda r: r if executions(r)[1] == 0 else None)(self._redis.lrange(LOG_KEY, 0, -1)),
                    60, "the last collections to end")  # fmt: skip
        done, _ = executions(raw)
        return analyse(done, clusters=self.cluster_ids, workers=self.workers, poll_seconds=poll, intervals=intervals)

    def _last_interval_end(self, intervals: int) -> float:
        """When the last measured interval of the latest cluster ends, by `analyse`'s rule (interval k centred k
        intervals after the cluster's anchor); infinity while a cluster has not had its warm-up yet."""
        done, _ = executions(self._redis.lrange(LOG_KEY, 0, -1))
        seconds: dict[int, list[float]] = defaultdict(list)
        for e in done:
            if e.result in COLLECTED:
                seconds[e.cluster].append(e.start)
        anchors = [anchor(seconds[c]) for c in self.cluster_ids]
        if None in anchors:
            return float("inf")
        return max(anchors) + (intervals - 0.5) * self.poll_seconds

    def runs(self) -> list[dict]:
        """The run records in the database: cluster id, status, duration."""
        code = (
            "import json; from apps.clusters.models import CollectionRun as R; print(json.dumps(list("
            "R.objects.filter(kind='cluster').values_list('cluster_id', 'status', 'duration_ms'))))"
        )
        return [
            dict(zip(("cluster", "status", "ms"), r, strict=True))
            for r in json.loads(self.manage("shell", "--no-imports", "-c", code))
        ]

    def stop_process(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for name in [n for n in self.procs if n == "beat"] + [n for n in self.procs if n != "beat"]:
            self.stop_process(name)
        subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "stop", str(self.pg_dir)], check=False)

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- the benchmark ---------------------------------------------------------------------------------------------------


def _fleet_page(fleet: Fleet, runs: int) -> list[float]:
    """Server time of the fleet view (`/?show=fleet`) on the fleet's database, in this process, once every cluster
    has KPIs as the metrics collector stores them (the synthetic mesh's, as the overview benchmark does)."""
    os.environ.update({k: fleet.env[k] for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE")})
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from apps.clusters.models import Cluster
    from lab.benchkit import timed, user
    from lab.synthetic import generate
    from lab.synthetic_kpis import fill_kpis

    settings.ALLOWED_HOSTS = ["testserver"]
    mesh = generate(fleet.services)
    for cluster in Cluster.objects.all():
        fill_kpis(cluster, mesh)
    client = Client()
    client.force_login(user("fleet-viewer", "viewer"))

    def page() -> None:
        response = client.get("/?show=fleet")
        if response.status_code != 200 or b"fleet-01" not in response.content:
            sys.exit(f"the fleet view failed: {response.status_code}")

    page()
    return timed(page, runs)


def bench_fleet(clusters: int = 20, services: int = 200, workers: int = 3, intervals: int = 10) -> None:
    from lab.benchkit import fmt, p95

    with (
        tempfile.TemporaryDirectory() as tmp,
        Fleet(Path(tmp), clusters=clusters, services=services, workers=workers) as fleet,
    ):
        report = fleet.observe(intervals)
        statuses = Counter(r["status"] for r in fleet.runs())
        page = _fleet_page(fleet, 20)
    print(
        f"## fleet: {clusters} stand-ins (synthetic --services {services}), {workers} workers (prefork, 1 process "
        f"each, on the cluster and tick queues), beat; one PostgreSQL, one Redis; poll {fleet.poll_seconds} s, tick "
        f"{fleet.tick_seconds:g} s, {intervals} intervals after each cluster's first collection"
    )
    print(f"- started in {fleet.timings['start']:.1f} s (PostgreSQL, Redis, stand-ins, migrate, workers)")
    for line in report.lines():
        print(line)
    print(f"- run records in PostgreSQL, by status: {dict(sorted(statuses.items()))}")
    print(f"- fleet view (`/?show=fleet`, {clusters} clusters): {fmt(page)}, p95 {p95(page) * 1000:.0f} ms")
    verdict = "PASS" if report.ok and report.spread <= 0.2 else "FAIL"
    print(f"- {verdict}: every cluster every interval, never two at once, per-worker counts within ±20 %")
    if verdict == "FAIL":
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        worker_main(sys.argv[2])
    else:
        sys.exit("usage: python -m lab.bench_fleet worker NAME (the benchmark: python -m lab.bench fleet)")
