"""`python -m lab.bench collect-scale`: the collection cycle at 1,000 and 5,000 services against its floor, and the
worker's peak memory during a 5,000-service cycle (issue 25 item 2).

The stand-in serves the synthetic seed as a real cluster would (managedFields, last-applied annotations, statuses:
`lab.seeds.payloads`), in its own process. For each size: a first collection (fills the tables and gives the counts
that decide which kinds are paged), then `runs` rounds alternating

- the cycle: `collect_and_record` (lists, decoding, the SQLite write of what changed), as the worker runs it;
- its floor: the same requests (the same paths, `limit`/`continue` pages or `resourceVersion=0`, four in flight as
  the collector has them) over raw HTTP with urllib3, each body through `json.loads` with the GC paused, nothing
  else.

Then one steady cycle in a fresh process, as a worker would run it, whose peak RSS (VmHWM) is checked against
`RSS_BOUND_MIB` at 5,000 services: over it, the bench exits non-zero.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.benchkit import machine, setup_django, standin

TARGET_RATIO = 1.3
# The worker's peak RSS during one 5,000-service cycle, fresh process (Django, the client, the lists, the rows).
RSS_BOUND_MIB = 512


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def _floor(host: str, token: str, plan: list[tuple[str, int]], extra: list[str]) -> float:
    """The cycle's requests over raw HTTP plus json.loads: `plan` is (path, page size or 0 for rv=0). urllib3, the
    client's own transport, with the body read whole (as the gateway's `_preload_content=False` + `.data` does)."""
    import urllib3

    from apps.core.gc import gc_paused

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    pool = urllib3.PoolManager(maxsize=4)

    def get(path: str, params: dict | None = None) -> dict:
        response = pool.request("GET", host + path, fields=params, headers=headers, timeout=60)
        return json.loads(response.data)

    def one_list(path: str, page_size: int) -> int:
        items, token_ = 0, ""
        while True:
            if page_size:
                params = {"limit": str(page_size), **({"continue": token_} if token_ else {})}
            else:
                params = {"resourceVersion": "0"}
            body = get(path, params)
            items += len(body["items"])
            token_ = body["metadata"].get("continue") if page_size else ""
            if not token_:
                return items

    started = time.perf_counter()
    with gc_paused():
        for path in extra[:2]:  # discovery, before the lists as in the cycle
            get(path)
        with ThreadPoolExecutor(max_workers=4) as threads:
            list(threads.map(lambda p: one_list(*p), plan))
        for path in extra[2:]:
            get(path)
    pool.clear()
    return time.perf_counter() - started


def _plan(counts: dict[str, int]) -> list[tuple[str, int]]:
    """The lists the collector makes for these counts on a cluster serving every kind (the synthetic seed), in its
    order: (path, page size, 0 for one resourceVersion=0 request)."""
    from apps.mesh import collector as c

    kinds = [*c.BUILTIN, *c.SMI, *c.OPTIONAL, c.MESH_ROOT_CERTIFICATES]
    kinds += [c.Resource("meshconfigs", c.MESHCONFIG_GROUP, c.MESHCONFIG_VERSIONS[0], "meshconfigs")]
    kinds.sort(key=lambda r: (not c.page_size_for(r, counts), -counts.get(c.COUNTED_AS.get(r.key, r.key), 0)))
    return [
        (f"/apis/{r.group}/{r.version}/{r.plural}" if r.group else f"/api/v1/{r.plural}", c.page_size_for(r, counts))
        for r in kinds
    ]


def _worker_cycle(tmp: str, cluster_name: str) -> None:
    """Child process: one steady cycle, as a worker runs it; prints JSON with its RSS before and at peak."""
    setup_django(tmp)
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record

    before = _rss_kib("VmRSS")
    started = time.perf_counter()
    run, error = collect_and_record(Cluster.objects.get(name=cluster_name))
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "error": error.reason if error else None,
                "wall": wall,
                "rss_before_kib": before,
                "peak_kib": _rss_kib("VmHWM"),
                "counts": run.counts,
            }
        )
    )


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def bench_collect_scale(sizes: tuple[int, ...], runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from apps.clusters.kube import KubeGateway, KubeTarget
        from apps.clusters.models import Cluster
        from apps.mesh.services import collect_and_record, last_counts

        failures = []
        for services in sizes:
            work = Path(tmp) / f"s{services}"
            work.mkdir()
            print(f"## collect-scale: synthetic --services {services}, {runs} rounds; load {_load()}", flush=True)
            started = time.perf_counter()
            with standin(services, work) as kubeconfig:
                print(f"- stand-in up in {time.perf_counter() - started:.0f} s", flush=True)
                cluster = Cluster.objects.create(name=f"bench-{services}", kubeconfig_path=str(kubeconfig))
                gateway = KubeGateway(KubeTarget(kubeconfig_path=str(kubeconfig)))
                host = gateway.host
                token = str(gateway._api_client.configuration.api_key.get("BearerToken") or "").removeprefix("Bearer ")
                gateway.close()
                first_wall = time.perf_counter()
                first, error = collect_and_record(cluster)
                first_wall = time.perf_counter() - first_wall
                if error is not None:
                    print(f"- the first collection failed: {error.reason}", flush=True)
                    sys.exit(1)
                counts = last_counts(cluster)
                plan = _plan(counts)
                extra = ["/version", "/apis", "/api/v1/namespaces/default/endpoints/kubernetes"]
                cycles, floors, runs_seen = [], [], []
                for _ in range(runs):
                    t = time.perf_counter()
                    run, error = collect_and_record(cluster)
                    cycles.append(time.perf_counter() - t)
                    if error is not None:
                        print(f"- a collection failed: {error.reason}", flush=True)
                        sys.exit(1)
                    runs_seen.append(run)
                    floors.append(_floor(host, token, plan, extra))
                child = subprocess.run(
                    [sys.executable, "-m", "lab.bench_collect", "--worker-cycle", tmp, cluster.name],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
                )
            if child.returncode:
                sys.exit(f"the worker cycle failed: {child.stderr[-2000:]}")
            worker = json.loads(child.stdout.strip().splitlines()[-1])
            cycle, floor = statistics.median(cycles), statistics.median(floors)
            last = runs_seen[-1]
            requests_total = last.api_requests
            paged = sorted(p.rsplit("/", 1)[-1] for p, size in plan if size)
            print(f"- objects listed: {sum(counts.values())} rows; kinds in pages of 500: {', '.join(paged)}")
            print(f"- API requests per cycle: {requests_total} (floor: the same {len(plan)} lists' pages + 3)")
            print(
                f"- first cycle (empty tables): {first_wall * 1000:.0f} ms (fetch {first.timings['fetch'] * 1000:.0f},"
                f" decode {first.timings['decode'] * 1000:.0f}, write {first.timings['write'] * 1000:.0f})"
            )
            med = {k: statistics.median(r.timings[k] for r in runs_seen) * 1000 for k in ("fetch", "decode", "write")}
            print(
                f"- (a) steady cycle: median {cycle * 1000:.0f} ms (min {min(cycles) * 1000:.0f}, max "
                f"{max(cycles) * 1000:.0f}); fetch {med['fetch']:.0f}, decode {med['decode']:.0f}, "
                f"write {med['write']:.0f}"
            )
            print(
                f"- (b) floor (raw HTTP + json.loads): median {floor * 1000:.0f} ms (min {min(floors) * 1000:.0f}, "
                f"max {max(floors) * 1000:.0f})"
            )
            ratio = cycle / floor
            verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
            print(f"- (a)/(b) = {ratio:.2f} (target ≤ {TARGET_RATIO}: {verdict})")
            peak_mib, before_mib = worker["peak_kib"] / 1024, worker["rss_before_kib"] / 1024
            print(
                f"- worker process, one steady cycle: {worker['wall'] * 1000:.0f} ms; RSS {before_mib:.0f} MiB before,"
                f" peak {peak_mib:.0f} MiB (bound {RSS_BOUND_MIB} MiB at 5,000 services); load {_load()}",
                flush=True,
            )
            if services >= 5000 and peak_mib > RSS_BOUND_MIB:
                failures.append(f"peak RSS {peak_mib:.0f} MiB over the bound of {RSS_BOUND_MIB} MiB")
        if failures:
            sys.exit("collect-scale: " + "; ".join(failures))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker-cycle":
        _worker_cycle(sys.argv[2], sys.argv[3])
        return
    print(f"machine: {machine()}; date: {time.strftime('%Y-%m-%d')}")
    bench_collect_scale((1000, 5000), 5)


if __name__ == "__main__":
    main()
