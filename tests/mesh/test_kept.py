"""What a process keeps per cluster and snapshot version (apps/mesh/kept.py), through its public surface."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from apps.mesh.kept import KeptPerSnapshot

CLUSTER = SimpleNamespace(pk=1)


def test_requests_that_miss_together_wait_for_one_derivation():
    """Every graph open on the wall refreshes after a metrics cycle at about the same moment: the value for the new
    version is derived once, and each request gets it."""
    kept: KeptPerSnapshot[bytes] = KeptPerSnapshot(1_000, len)
    started, release, calls = threading.Event(), threading.Event(), []

    def derive() -> bytes:
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        return b"graph v2"

    answers: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: answers.append(kept.get(CLUSTER, "graph", derive, version="v2")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    assert started.wait(5)
    release.set()
    for thread in threads:
        thread.join(5)
    assert (len(calls), answers) == (1, [b"graph v2"] * 4)
    assert kept.get(CLUSTER, "graph", lambda: b"graph v3", version="v3") == b"graph v3"


def test_the_least_recently_used_goes_first_above_the_budget_and_nothing_is_kept_without_a_version():
    kept: KeptPerSnapshot[bytes] = KeptPerSnapshot(10, len)
    kept.get(CLUSTER, "a", lambda: b"aaaa", version=1)
    kept.get(CLUSTER, "b", lambda: b"bbbb", version=1)
    assert kept.get(CLUSTER, "a", lambda: b"A", version=1) == b"aaaa"  # "a" used last
    kept.get(CLUSTER, "c", lambda: b"cccc", version=1)  # 12 bytes: "b" goes
    assert kept.get(CLUSTER, "b", lambda: b"b again", version=1) == b"b again"
    assert kept.get(CLUSTER, "x", lambda: b"x", version=None) == b"x"
    assert kept.get(CLUSTER, "x", lambda: b"x again", version=None) == b"x again"
