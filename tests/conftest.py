"""Shared fixtures: real servers started per session (Redis) or per test (the Kubernetes API stand-in)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.waiting import free_port  # also imported from here by tests (`from tests.conftest import free_port`)

pytest_plugins = [
    "lab.kubeapi.pytest_plugin",
    "lab.prometheus_fixtures",
    "lab.mesh.pytest_plugin",
    "tests.browser_fixtures",
    "tests.personas",
]


def _find_redis() -> str:
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("redis-server is not installed; `make test` installs it (Debian package redis-server)")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port, private to this test session."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            _find_redis(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis(redis_url: str, settings: object) -> Iterator[object]:
    """Points Meshboard (settings, Celery broker) at the session's Redis and empties it before the test."""
    import redis as redis_lib

    from meshboard.celery import app

    settings.REDIS_URL = redis_url
    settings.CELERY_BROKER_URL = redis_url
    app.conf.broker_url = redis_url
    client = redis_lib.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def celery_worker(redis: object, transactional_db: None) -> Iterator[object]:
    """A real Celery worker, in this process, consuming every queue a task is routed to from the real Redis (not
    eager mode); it writes its heartbeats as a deployed worker does."""
    from celery.contrib.testing.worker import start_worker

    from apps.clusters.status import routed_queues
    from meshboard.celery import app

    with start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING", queues=routed_queues()
    ) as worker:
        yield worker


class TaskOutcomes:
    """What the worker did with each task id, as Celery's own signals say: the state each execution ended in
    (SUCCESS, FAILURE, or RETRY when the task asked to run again) and the retries it asked for, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.states: dict[str, list[str]] = defaultdict(list)
        self.retries: dict[str, list[str]] = defaultdict(list)

    def ended(self, task_id: str | None = None, state: str | None = None, **_kwargs: object) -> None:
        with self._lock:
            self.states[task_id].append(state)

    def retried(self, request: object = None, reason: object = None, **_kwargs: object) -> None:
        with self._lock:
            self.retries[request.id].append(str(reason))

    def first_end(self, task_id: str, timeout: float = 20.0) -> str:
        """The state the task's first execution ended in (waiting for it)."""
        from lab.waiting import wait_for

        return wait_for(lambda: list(self.states.get(task_id, ())), timeout)[0]

    def assert_ended_without_retry(self, task_id: str) -> None:
        """The task's first execution returned, without asking Celery to run it again."""
        assert self.first_end(task_id) == "SUCCESS"
        assert task_id not in self.retries


@pytest.fixture
def task_outcomes() -> Iterator[TaskOutcomes]:
    """Records, through `task_postrun` and `task_retry`, how each task run by the in-process worker ended."""
    from celery.signals import task_postrun, task_retry

    outcomes = TaskOutcomes()
    task_postrun.connect(outcomes.ended, weak=False)
    task_retry.connect(outcomes.retried, weak=False)
    yield outcomes
    task_postrun.disconnect(outcomes.ended)
    task_retry.disconnect(outcomes.retried)
