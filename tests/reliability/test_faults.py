"""The fault suite: a production-like Meshboard (gunicorn's threaded workers, a worker per collection queue as in
docker-compose.yml, beat, Redis, the stand-in, a real Prometheus; lab/stack.py) while one part stalls, hangs or dies.
For each fault: every page answers 200 within its deadline, from the fault's start until HOLD_SECONDS after its banner
came; the banner names the part and the action; and Meshboard recovers by itself once the part is back (the overview
fresh without a banner, and a chart with every series), in a time this suite prints. `pytest -m faults` runs it alone.

The stack runs with shortened timeouts (ENV), so the banner times printed here are not those of the defaults."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import requests

from lab.stack import OPERATOR, OPERATOR_PASSWORD, POLL_SECONDS, Stack
from lab.waiting import wait_for

pytestmark = pytest.mark.faults

CHART = "/services/bookstore/bookstore-v1/series?window=15m"
PAGES = {  # path -> deadline in seconds
    "/": 1.5,
    "/splits/": 1.5,
    "/mesh/": 1.5,
    "/policies/": 1.5,
    "/graph/data": 1.5,
    "/services/bookstore/bookstore-v1/": 1.5,
    CHART: 2.5,  # the chart deadline (2 s in total), then the breaker
}
ENV = {
    # A fault shows within a poll interval (5 s) instead of after the default 20 s read timeouts.
    "MESHBOARD_KUBE_READ_TIMEOUT": "2",
    "MESHBOARD_PROMETHEUS_READ_TIMEOUT": "2",
    "MESHBOARD_HEARTBEAT_SECONDS": "2",
    # The charts' breaker opens for 3 s instead of 30, so recovery (a chart with every series) is measurable and each
    # hold below sees it close and open again.
    "MESHBOARD_CHART_BREAKER_SECONDS": "3",
}
HOLD_SECONDS = 6.0  # pages keep their deadlines this long after the banner: twice the charts' breaker period
RECOVERED = []  # (fault, seconds), printed at the end of the module
DETECTED = []  # (banner, seconds after the fault began)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(Path(tmp_path_factory.mktemp("faults")), fault_control=True, env=ENV) as running:
        yield running
    for banner, seconds in DETECTED:
        print(f"banner {banner!r} after {seconds:.1f} s")
    for fault, seconds in RECOVERED:
        print(f"recovered from {fault} in {seconds:.1f} s")


@pytest.fixture(scope="module")
def operator(stack: Stack) -> requests.Session:
    session = requests.Session()
    session.get(f"{stack.url}/accounts/login/", timeout=10)
    session.post(
        f"{stack.url}/accounts/login/",
        data={"username": OPERATOR, "password": OPERATOR_PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{stack.url}/accounts/login/"},
        timeout=10,
    )
    return session


def _seconds_until(predicate: Callable[[], object], timeout: float) -> float:
    started = time.monotonic()
    wait_for(predicate, timeout, interval=0.5)
    return time.monotonic() - started


def _all_pages_in_time(session: requests.Session, base: str) -> str:
    """Every page once: each must answer 200 within its deadline. Returns the overview's HTML."""
    overview = ""
    for path, deadline in PAGES.items():
        started = time.monotonic()
        response = session.get(base + path, timeout=30)
        took = time.monotonic() - started
        assert response.status_code == 200, (path, response.status_code)
        assert took <= deadline, f"{path} took {took:.2f} s (deadline {deadline} s)"
        if path == "/":
            overview = response.text
    return overview


def _healthy(session: requests.Session, base: str) -> bool:
    """Both collections have data, no banner is up, and a chart has every series (its breaker closed)."""
    html = session.get(f"{base}/", timeout=10).text
    if 'class="banner' in html or "not collected yet" in html or html.count(" s old") < 2:
        return False
    return session.get(base + CHART, timeout=10).json()["unavailable"] == {}


def _kubernetes_age(base: str) -> float:
    """Seconds since the last successful Kubernetes collection, as /readyz reports it."""
    [cluster] = requests.get(f"{base}/readyz", timeout=5).json()["clusters"]
    return cluster["cluster"]["age_seconds"]


def _fault(stack: Stack, method: str, body: dict | None = None) -> None:
    request = urllib.request.Request(
        f"{stack.kubeapi_url}/_lab/faults",
        method=method,
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()


def _during(
    session: requests.Session, base: str, banner: str, timeout: float, check: Callable[[], None] = lambda: None
) -> None:
    """While the fault lasts: the banner comes (how soon is printed at the end), and every page keeps its deadline
    (and `check()` holds) until then and for HOLD_SECONDS after."""

    def sweep() -> str:
        html = _all_pages_in_time(session, base)
        check()
        return html

    DETECTED.append((banner, _seconds_until(lambda: banner in sweep(), timeout)))
    held = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < held:
        assert banner in sweep(), f"the banner {banner!r} went while the fault lasted"


def _recovers(stack: Stack, session: requests.Session, fault: str, timeout: float = 30) -> None:
    RECOVERED.append((fault, _seconds_until(lambda: _healthy(session, stack.url), timeout)))


def test_it_starts_healthy(stack, operator):
    wait_for(lambda: _healthy(operator, stack.url), 40, interval=0.5)
    _all_pages_in_time(operator, stack.url)


def test_it_serves_pages_and_says_so_while_prometheus_stalls_and_kubernetes_data_stays_fresh(stack, operator):
    ages = []

    def kubernetes_fresh() -> None:
        ages.append(_kubernetes_age(stack.url))
        assert ages[-1] <= 2 * POLL_SECONDS, f"Kubernetes data {ages[-1]} s old while Prometheus stalls"

    with stack.paused("prometheus"):
        _during(operator, stack.url, "Prometheus did not answer in time", 3 * POLL_SECONDS + 10, kubernetes_fresh)
    assert any(later < earlier for earlier, later in pairwise(ages)), ages  # a collection during the stall
    _recovers(stack, operator, "a stalled Prometheus")


def test_it_serves_pages_and_says_so_while_the_api_server_stalls(stack, operator):
    _fault(stack, "POST", {"path": ".*", "delay": 20})
    try:
        _during(operator, stack.url, "the API server did not answer in time", 3 * POLL_SECONDS + 10)
    finally:
        _fault(stack, "DELETE")
    _recovers(stack, operator, "a stalled API server", 45)


def test_it_serves_pages_and_says_so_while_redis_stalls(stack, operator):
    with stack.paused("redis"):
        _during(operator, stack.url, "Redis, the broker, is unreachable", 10)
    _recovers(stack, operator, "a stalled Redis")


def test_it_says_collections_are_not_finishing_while_a_worker_hangs(stack, operator):
    """The cluster worker's pool processes stopped (SIGSTOP): its heartbeat goes on, its collections never end."""
    with stack.hung("worker-cluster"):
        _during(operator, stack.url, "Collections are not finishing", 3 * POLL_SECONDS + 15)
    _recovers(stack, operator, "a hung worker (its pool resumed)")


def _collection_locks(stack: Stack) -> list[bytes]:
    """The Kubernetes collection locks held now (a run of that kind is in progress, or was killed holding it)."""
    import redis

    return list(redis.Redis.from_url(stack.env["REDIS_URL"]).scan_iter("meshboard:lock:collect-cluster:*"))


def test_a_collection_whose_process_dies_is_recorded_failed_and_the_cluster_collected_again_at_once(stack, operator):
    """The cluster worker's pool processes killed (as by the kernel's OOM killer) in the middle of a collection: the
    worker's main process lives on with its heartbeat, so only it can say the run is gone. Its record says so, and
    its lock (TTL 150 s) is freed: the next collection runs at the cluster's next due time."""
    _fault(stack, "POST", {"path": ".*", "delay": 1.5})  # slowed below the read timeout, so that one surely runs
    try:
        wait_for(lambda: _collection_locks(stack), 30, interval=0.1)
        stack.kill_pool("worker-cluster")
        killed = time.time()
    finally:
        _fault(stack, "DELETE")

    def cluster_runs() -> list[dict]:
        return [r for r in stack.runs() if r["kind"] == "cluster"]

    [lost] = wait_for(
        lambda: [r for r in cluster_runs() if r["status"] == "failed" and r["finished"] and r["finished"] >= killed],
        10,
        interval=0.5,
    )
    assert lost["error"].startswith("stopped: the worker process running it ended"), lost["error"]
    assert "SIGKILL" in lost["error"], lost["error"]
    assert lost["finished"] - killed < 5, "the lost run was recorded late"
    assert not [r for r in cluster_runs() if r["status"] == "running" and r["started"] < killed]
    # Collected again within its next poll interval or so, not after the lock's TTL.
    again = wait_for(
        lambda: [r for r in cluster_runs() if r["status"] == "ok" and r["started"] > killed], 3 * POLL_SECONDS, 0.5
    )
    assert again[0]["started"] - killed < 2 * POLL_SECONDS + 2, again[0]
    # The page says why the last run failed, as for any failed run, until the next one succeeds.
    _recovers(stack, operator, "a collection whose process was killed")


def test_it_says_when_the_worker_is_gone_and_recovers_when_one_is_back(stack, operator):
    # Killed in the middle of a collection (the API server slowed, below the read timeout, so one surely runs): the
    # run's lock, whose TTL is the time limit + 30 s (150 s), must not keep the next worker from collecting.
    _fault(stack, "POST", {"path": ".*", "delay": 1.5})
    try:
        wait_for(lambda: _collection_locks(stack), 30, interval=0.1)
        stack.kill("worker-cluster")
    finally:
        _fault(stack, "DELETE")
    assert _collection_locks(stack), "the killed run's lock is left behind"
    _during(operator, stack.url, "is not running. Start a worker for the queue cluster", 20)
    stack.start_worker("cluster")
    _recovers(stack, operator, "a killed worker (a new one started)")
