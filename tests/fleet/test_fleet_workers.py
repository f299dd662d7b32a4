"""Many clusters on many workers, CI-sized: 6 stand-ins (synthetic, 50 services each), 2 worker processes and beat
against one PostgreSQL (started here, as .ci/run starts one) and one Redis, for 3 poll intervals of 5 s. Every cluster
is collected in every interval, never by two workers at once, and both workers share the work. About 40 s, most of it
the intervals themselves; `python -m lab.bench fleet` is the 20-cluster, 3-worker, 10-interval version."""

from __future__ import annotations

import time

from lab.bench_fleet import Fleet


def test_each_cluster_is_collected_once_every_interval_by_whichever_worker_is_free(tmp_path):
    began = time.monotonic()
    with Fleet(tmp_path, clusters=6, services=50, workers=2, poll_seconds=5, tick_seconds=1) as fleet:
        report = fleet.observe(intervals=3)
        statuses = {r["status"] for r in fleet.runs()}
    print("\n".join(report.lines()), f"\n- took {time.monotonic() - began:.1f} s")

    assert report.missed == [], report.lines()
    assert report.doubled == [], report.lines()
    assert report.overlaps == [] and report.results["skipped"] == 0, report.lines()
    assert statuses == {"ok"}
    assert report.collected == 6 * 3
    # Both workers took part; the ±20 % target is the bench's, over 200 collections (18 here leave room for luck).
    assert set(report.per_worker) == set(fleet.workers) and len(fleet.workers) == 2
    assert min(report.per_worker.values()) >= 6, report.per_worker
