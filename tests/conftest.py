"""Shared fixtures: real servers started per session (Redis) or per test (the Kubernetes API stand-in)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "lab.kubeapi.pytest_plugin",
    "lab.prometheus_fixtures",
    "lab.mesh.pytest_plugin",
    "tests.browser_fixtures",
    "tests.personas",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """A real Celery worker, in this process, consuming from the real Redis (not eager mode)."""
    from celery.contrib.testing.worker import start_worker

    from meshboard.celery import app

    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING") as worker:
        yield worker
