"""The fault suite: a production-like Meshboard (gunicorn's threaded workers, a worker per queue, beat, Redis, the
stand-in, a real Prometheus; lab/stack.py) while one part stalls or dies. For each fault: every page answers 200
within its deadline, the banner names the part and the action, and Meshboard recovers by itself once the part is
back, in a time this suite prints. `pytest -m faults` runs it alone."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from lab.stack import OPERATOR, OPERATOR_PASSWORD, POLL_SECONDS, Stack

pytestmark = pytest.mark.faults

PAGES = {  # path -> deadline in seconds
    "/": 1.5,
    "/splits/": 1.5,
    "/mesh/": 1.5,
    "/policies/": 1.5,
    "/graph/data": 1.5,
    "/services/bookstore/bookstore-v1/": 1.5,
    "/services/bookstore/bookstore-v1/series?window=15m": 2.5,  # the chart deadline (2 s), then the breaker
}
RECOVERED = []  # (fault, seconds), printed at the end of the module
DETECTED = []  # (banner, seconds after the fault began)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "MESHBOARD_KUBE_READ_TIMEOUT": "2",
        "MESHBOARD_PROMETHEUS_READ_TIMEOUT": "2",
        "MESHBOARD_HEARTBEAT_SECONDS": "2",
    }
    with Stack(Path(tmp_path_factory.mktemp("faults")), fault_control=True, env=env) as running:
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


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.5)
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
    """Both collections have data and no banner is up."""
    html = session.get(f"{base}/", timeout=10).text
    return 'class="banner' not in html and "not collected yet" not in html and html.count(" s old") >= 2


def _fault(stack: Stack, method: str, body: dict | None = None) -> None:
    request = urllib.request.Request(
        f"{stack.kubeapi_url}/_lab/faults",
        method=method,
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()


def _during(session: requests.Session, base: str, banner: str, timeout: float) -> None:
    """While the fault lasts: pages keep their deadlines, and the banner comes (how soon is printed at the end)."""

    def shows_banner() -> bool:
        return banner in _all_pages_in_time(session, base)

    DETECTED.append((banner, _wait(shows_banner, timeout, f"the banner {banner!r}")))


def test_it_starts_healthy(stack, operator):
    _wait(lambda: _healthy(operator, stack.url), 30, "a first collection of both kinds without a banner")
    _all_pages_in_time(operator, stack.url)


def test_it_serves_pages_and_says_so_while_prometheus_stalls(stack, operator):
    with stack.paused("prometheus"):
        _during(operator, stack.url, "Prometheus did not answer in time", 3 * POLL_SECONDS + 10)
    RECOVERED.append(("a stalled Prometheus", _wait(lambda: _healthy(operator, stack.url), 30, "recovery")))


def test_it_serves_pages_and_says_so_while_the_api_server_stalls(stack, operator):
    _fault(stack, "POST", {"path": ".*", "delay": 20})
    try:
        _during(operator, stack.url, "the API server did not answer in time", 3 * POLL_SECONDS + 10)
    finally:
        _fault(stack, "DELETE")
    RECOVERED.append(("a stalled API server", _wait(lambda: _healthy(operator, stack.url), 45, "recovery")))


def test_it_serves_pages_and_says_so_while_redis_stalls(stack, operator):
    with stack.paused("redis"):
        _during(operator, stack.url, "Redis, the broker, is unreachable", 10)
    RECOVERED.append(("a stalled Redis", _wait(lambda: _healthy(operator, stack.url), 30, "recovery")))


def test_it_says_when_the_worker_is_gone_and_recovers_when_one_is_back(stack, operator):
    stack.kill("worker")
    _during(operator, stack.url, "is not running. Start a worker for the queue", 20)
    stack.start_worker()
    RECOVERED.append(
        ("a killed worker (a new one started)", _wait(lambda: _healthy(operator, stack.url), 30, "recovery"))
    )
