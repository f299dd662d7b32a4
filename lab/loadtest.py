"""A bounded load test on loopback: N viewers for T seconds against Meshboard served as in production (gunicorn
with threaded workers, a Celery worker per collection queue, beat, Redis; lab/stack.py), with a real Prometheus
healthy and then stalled (SIGSTOP).

    python -m lab.loadtest                       # 20 viewers, 60 s per phase (the figures in RELIABILITY.md)
    python -m lab.loadtest --viewers 5 --seconds 8

Each viewer logs in and loops over what people open: the overview, the graph's data, the splits page and the chart
series of a service page (the one request that reaches Prometheus). It prints, per phase, the latency percentiles and
status counts per endpoint, how many range queries Prometheus received per second, and, while healthy and while
stalled, per kind of collection the runs, the skipped ones (refused by the lock: another run of the kind was still
going), the doubled ones (two runs of one kind overlapping, or starting less than half a poll interval apart) and the
gaps (starts more than two poll intervals apart: a run lost).
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import requests

from lab.benchkit import machine
from lab.stack import PASSWORD, POLL_SECONDS, USER, Stack, range_queries

SERVICES = ["bookstore/bookstore", "bookstore/bookstore-v1", "bookstore/bookstore-v2", "bookwarehouse/bookwarehouse"]


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    errors: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    range_queries: int = 0

    def p(self, endpoint: str, q: float) -> float:
        values = sorted(self.latencies[endpoint])
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _login(base: str) -> requests.Session:
    """A session of the load test's viewer; RuntimeError when the login is refused (every page would be a 302)."""
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=10)
    response = session.post(
        f"{base}/accounts/login/",
        data={"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies.get("csrftoken", "")},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=10,
        allow_redirects=False,
    )
    if response.status_code != 302 or "/accounts/login/" in response.headers.get("Location", ""):
        raise RuntimeError(f"{USER} could not log in: {response.status_code}")
    return session


def _viewer(base: str, session: requests.Session, phase: Phase, until: float, rng: random.Random) -> None:
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
            except requests.RequestException as e:
                status = 0  # no answer at all
                phase.errors[endpoint][type(e).__name__] += 1
            phase.latencies[endpoint].append(time.monotonic() - started)
            phase.statuses[endpoint][status] += 1
            if time.monotonic() >= until:
                break


def run_phase(stack: Stack, name: str, viewers: int, seconds: float) -> Phase:
    phase = Phase(name, seconds)
    base = stack.url
    healthy = name.startswith("healthy")
    # Logged in one after another before the clock starts, as people arrive: that many logins of one user from one
    # address at the same instant are what the login throttle refuses (it counts each attempt before checking it).
    sessions = [_login(base) for _ in range(viewers)]
    for session in sessions:
        # Each viewer starts on a connection of its own, as a person arriving does: the logins' connections have
        # waited up to gunicorn's keep-alive (2 s) while the others logged in, and one the server closes just as
        # it is reused fails with no answer, which would count against the server.
        session.close()
    before = range_queries(stack.prometheus.url) if healthy else 0
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_viewer, args=(base, session, phase, until, random.Random(i)), daemon=True)
        for i, session in enumerate(sessions)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    if healthy:
        phase.range_queries = range_queries(stack.prometheus.url) - before
    return phase


def collection_report(runs: list[dict], started: float, until: float = math.inf) -> dict[str, dict[str, int]]:
    """Per kind, over the runs started from `started` until `until`: `runs` (not skipped); `skipped`, runs the lock
    refused because another of the kind was still going; `doubled`, pairs of runs overlapping or starting less than
    half a poll interval apart (unless the first failed: the backoff's retry may come sooner, by design); and `gaps`,
    starts more than two poll intervals apart."""
    report = {}
    for kind in sorted({r["kind"] for r in runs}):
        mine = [r for r in runs if r["kind"] == kind and started <= r["started"] < until]
        ran = [r for r in mine if r["status"] != "skipped"]
        doubled = 0
        for a, b in pairwise(ran):
            overlapping = a["finished"] is None or b["started"] < a["finished"]
            too_soon = a["status"] != "failed" and b["started"] - a["started"] < POLL_SECONDS / 2
            doubled += overlapping or too_soon
        gaps = sum(1 for a, b in pairwise(ran) if b["started"] - a["started"] > 2 * POLL_SECONDS + 1)
        report[kind] = {"runs": len(ran), "skipped": len(mine) - len(ran), "doubled": doubled, "gaps": gaps}
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
            stalled = time.time()
            with stack.paused("prometheus"):
                phases.append(run_phase(stack, "Prometheus stalled (SIGSTOP)", args.viewers, args.seconds))
            runs = stack.runs()
            collections = {
                "healthy": collection_report(runs, started, stalled),
                "Prometheus stalled": collection_report(runs, stalled),
            }
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
                "errors": dict(phase.errors[endpoint]),
            }
        qps = phase.range_queries / phase.seconds if phase.name.startswith("healthy") else None
        result["phases"].append({"name": phase.name, "endpoints": rows, "range_queries_per_s": qps})
        print(f"\n### {phase.name} ({phase.seconds:g} s)" + (f"; Prometheus range queries {qps:.2f}/s" if qps else ""))
        print("| endpoint | requests | p50 ms | p95 ms | max ms | statuses |\n|---|---|---|---|---|---|")
        for endpoint, row in rows.items():
            print(
                f"| {endpoint} | {row['requests']} | {row['p50_ms']} | {row['p95_ms']} | {row['max_ms']} | "
                f"{row['statuses']}{' ' + str(row['errors']) if row['errors'] else ''} |"
            )
    for span, report in collections.items():
        print(f"\ncollections while {span} (poll {POLL_SECONDS} s): {report}")
    return result


if __name__ == "__main__":
    main()
