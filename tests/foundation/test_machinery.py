"""The collection machinery: each collection on its own queue, and the heartbeats beat and the workers write to the
real Redis (beat as a real `celery beat` process, a worker as a real Celery worker in this process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.clusters.models import Cluster
from apps.clusters.status import routed_queues
from apps.clusters.tasks import tick
from apps.core import heartbeats
from lab.waiting import wait_for
from meshboard.celery import app

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _queued(redis, queue: str) -> list[dict]:
    """The messages waiting in one queue, as kombu's Redis transport stores them (a list named after the queue)."""
    return [json.loads(raw) for raw in redis.lrange(queue, 0, -1)]


def test_it_routes_each_collection_to_its_own_queue(redis):
    cluster = Cluster.objects.create(name="lab", kubeconfig_path="unused", prometheus_url="http://127.0.0.1:9/")

    assert sorted(tick()) == [("mesh.collect_cluster", cluster.pk), ("metrics.collect_metrics", cluster.pk)]
    tick.delay()

    by_queue = {queue: _queued(redis, queue) for queue in ("cluster", "metrics", "tick", "celery")}
    assert [m["headers"]["task"] for m in by_queue["cluster"]] == ["mesh.collect_cluster"]
    assert [m["headers"]["task"] for m in by_queue["metrics"]] == ["metrics.collect_metrics"]
    assert [m["headers"]["task"] for m in by_queue["tick"]] == ["clusters.tick"]
    assert by_queue["celery"] == []
    # A collection nobody takes within a poll interval expires, so a worker that was down finds no pile.
    assert all(m["headers"]["expires"] for m in by_queue["cluster"] + by_queue["metrics"])


def test_a_worker_writes_a_heartbeat_for_each_queue_it_consumes_and_removes_it_when_it_stops(redis, settings):
    settings.MESHBOARD_HEARTBEAT_SECONDS = 1
    queues = routed_queues()

    def alive():
        beats = heartbeats.read(queues, timeout=1)
        return beats if beats.queue_alive("metrics") else None

    with start_worker(
        app, pool="solo", perform_ping_check=False, loglevel="WARNING", queues=["metrics", "tick"], hostname="m@test"
    ):
        beats = wait_for(alive, timeout=10)
        assert set(beats.workers["metrics"]) == {"m@test"} and set(beats.workers["tick"]) == {"m@test"}
        assert beats.workers["cluster"] == {}  # this worker does not consume the cluster queue
        assert 0 < redis.pttl("meshboard:heartbeat:queue:metrics") <= 3000  # a TTL of three periods
        call_command("check_heartbeat", "worker", "m@test", "metrics")  # the compose healthcheck passes
        with pytest.raises(CommandError, match="no heartbeat of m@test on the queue cluster"):
            call_command("check_heartbeat", "worker", "m@test", "cluster")
        first = beats.workers["metrics"]["m@test"]
        # It keeps reporting while it runs (the next write has a later time).
        wait_for(lambda: heartbeats.read(queues, timeout=1).workers["metrics"].get("m@test", 0) > first, timeout=10)

    assert not heartbeats.read(queues, timeout=1).queue_alive("metrics")  # a stopped worker says so at once
    with pytest.raises(CommandError):
        call_command("check_heartbeat", "worker", "m@test", "metrics")


def test_beat_writes_its_heartbeat_from_its_own_process(redis, redis_url, tmp_path):
    with pytest.raises(CommandError, match="no beat heartbeat"):
        call_command("check_heartbeat", "beat")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "meshboard.test_settings",
        "REDIS_URL": redis_url,
        "MESHBOARD_HEARTBEAT_SECONDS": "1",
        "MESHBOARD_TICK_SECONDS": "120",  # beat would sleep 120 s: its loop must still wake for the heartbeat
    }
    log = (tmp_path / "beat.log").open("wb")
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "meshboard", "beat", "--schedule", str(tmp_path / "schedule")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        first = float(wait_for(lambda: redis.get(heartbeats.BEAT_KEY), timeout=30))
        assert 0 < redis.pttl(heartbeats.BEAT_KEY) <= 3000
        later = wait_for(lambda: (v := redis.get(heartbeats.BEAT_KEY)) and float(v) > first and float(v), timeout=10)
        assert later > first
        call_command("check_heartbeat", "beat")
    finally:
        beat.send_signal(signal.SIGTERM)
        beat.wait(timeout=20)
        log.close()
    assert beat.returncode == 0 and redis.get(heartbeats.BEAT_KEY) is None, (tmp_path / "beat.log").read_text()
