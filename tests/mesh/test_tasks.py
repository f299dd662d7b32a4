"""The schedule, the lock and the backoff, with a real Redis and a real Celery worker in this process."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.tasks import tick
from apps.core.locks import exclusive
from apps.mesh.models import Service
from apps.mesh.tasks import collect_cluster
from lab.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _runs(cluster, **filters):
    return list(CollectionRun.objects.filter(cluster=cluster, kind="cluster", **filters).order_by("started_at"))


def test_it_collects_each_due_cluster_once_per_interval(kubeapi, cluster_for, celery_worker):
    due = cluster_for(kubeapi, name="due", poll_interval_seconds=60)
    cluster_for(kubeapi, name="off", enabled=False)
    later = cluster_for(kubeapi, name="later")
    Cluster.objects.filter(pk=later.pk).update(next_collect_at=timezone.now() + timezone.timedelta(minutes=5))

    tick.delay()
    wait_for(lambda: _runs(due, status="ok"))

    assert Service.objects.filter(cluster=due, name="bookstore").exists()
    assert not CollectionRun.objects.filter(cluster__name__in=["off", "later"]).exists()
    due.refresh_from_db()
    assert due.next_collect_at > timezone.now() + timezone.timedelta(seconds=50)

    # Not due again for a minute: another tick enqueues nothing.
    assert tick() == []


def test_it_skips_a_run_while_another_holds_the_cluster_lock(kubeapi, cluster_for, celery_worker):
    cluster = cluster_for(kubeapi)
    with exclusive(f"collect-cluster:{cluster.pk}", ttl_seconds=30) as held:
        assert held
        collect_cluster.delay(cluster.pk)
        skipped = wait_for(lambda: _runs(cluster, status="skipped"))
    assert "still running" in skipped[0].error
    assert not _runs(cluster, status="ok")

    collect_cluster.delay(cluster.pk)
    wait_for(lambda: _runs(cluster, status="ok"))


def test_the_tick_sends_nothing_for_a_cluster_whose_collection_still_runs(kubeapi, cluster_for, redis):
    # A stalled source can hold a run past the poll interval: that run covers the slot, and a second message would
    # only be refused by the lock (a "skipped" run for nothing).
    cluster = cluster_for(kubeapi, poll_interval_seconds=60)
    with exclusive(f"collect-cluster:{cluster.pk}", ttl_seconds=30) as held:
        assert held
        assert tick() == []
    assert not _runs(cluster)
    cluster.refresh_from_db()
    assert cluster.next_collect_at > timezone.now()  # the slot was taken by the run in progress

    Cluster.objects.filter(pk=cluster.pk).update(next_collect_at=None)
    assert tick() == [("mesh.collect_cluster", cluster.pk)]  # the lock released: the next slot is sent


def test_the_tick_frees_the_lock_of_a_worker_that_is_gone_and_keeps_a_live_ones(kubeapi, cluster_for, redis, settings):
    # A worker killed in the middle of a collection leaves its lock until the TTL (the time limit + 30 s). Its holder
    # ("name boot", as runs.lock_holder writes it) tells the tick whether that start of that worker still beats.
    from apps.core import heartbeats

    settings.MESHBOARD_HEARTBEAT_SECONDS = 1  # a heartbeat older than 3 s is a dead worker's
    alive, restarted, vanished = (cluster_for(kubeapi, name=n, poll_interval_seconds=60) for n in ("a", "b", "c"))
    heartbeats.write_worker("cluster@one", ["cluster"], "100.1")
    heartbeats.write_worker("cluster@two", ["cluster"], "200.1")
    locks = {}
    for cluster, holder in (
        (alive, "cluster@one 100.1"),
        (restarted, "cluster@two 200.1"),
        (vanished, "cluster@three 300.1"),
    ):
        locks[cluster.pk] = exclusive(f"collect-cluster:{cluster.pk}", ttl_seconds=150, holder=holder)
        assert locks[cluster.pk].__enter__()  # never left: the holder was killed
    heartbeats.write_worker("cluster@two", ["cluster"], "200.2")  # started again under the same name

    assert sorted(tick()) == sorted([("mesh.collect_cluster", restarted.pk), ("mesh.collect_cluster", vanished.pk)])
    assert tick() == []  # the live worker's run still covers its slot (and the two others were sent)

    def due_then_tick() -> list:
        Cluster.objects.filter(pk=alive.pk).update(next_collect_at=None)
        return tick()

    assert due_then_tick() == []  # still running: nothing sent, however due
    # Its heartbeat stops (nothing writes it again): once older than 3 s, the lock is freed and the cluster sent.
    assert wait_for(due_then_tick, 10, interval=0.5) == [("mesh.collect_cluster", alive.pk)]
    for held in locks.values():
        held.__exit__(None, None, None)  # a broken lock is not the old holder's to release: nothing happens


def test_a_lost_run_frees_only_its_own_workers_lock_and_fails_the_runs_it_held(kubeapi, cluster_for, redis):
    """What a worker's main process does when a collection's pool process dies (apps/clusters/lost.py; the fault suite
    kills one for real): free the lock its worker holds and fail the cluster's runs still "running"; never another
    holder's lock or runs, and nothing once the lock is no longer this worker's (the next run's)."""
    from apps.clusters.lost import record_lost_run
    from apps.core import heartbeats
    from apps.core.locks import holders

    mine, theirs = cluster_for(kubeapi, name="mine"), cluster_for(kubeapi, name="theirs")
    heartbeats.write_worker("cluster@one", ["cluster"], "100.1")
    heartbeats.write_worker("cluster@two", ["cluster"], "200.1")
    held = [  # never left, as by a process killed holding them (kept referenced: a collected one would release)
        exclusive(f"collect-cluster:{mine.pk}", ttl_seconds=150, holder="cluster@one 100.1"),
        exclusive(f"collect-cluster:{theirs.pk}", ttl_seconds=150, holder="cluster@two 200.1"),
    ]
    assert all(lock.__enter__() for lock in held)
    lost = CollectionRun.objects.create(cluster=mine, kind="cluster")
    others = CollectionRun.objects.create(cluster=theirs, kind="cluster")
    why = "stopped: the worker process running it ended (Worker exited prematurely: signal 9 (SIGKILL))"

    assert not record_lost_run("cluster@one", "cluster", theirs.pk, why)  # another worker's lock
    assert not record_lost_run("cluster@one", "metrics", mine.pk, why)  # no such lock
    assert holders([f"collect-cluster:{theirs.pk}"]) == ["cluster@two 200.1"]
    others.refresh_from_db()
    assert others.status == "running"

    assert record_lost_run("cluster@one", "cluster", mine.pk, why)
    assert holders([f"collect-cluster:{mine.pk}"]) == [None]
    lost.refresh_from_db()
    assert (lost.status, lost.error) == ("failed", why) and lost.finished_at and lost.duration_ms is not None
    later = CollectionRun.objects.create(cluster=mine, kind="cluster")  # the next run, after the lock was freed
    assert not record_lost_run("cluster@one", "cluster", mine.pk, why)  # the lock is no longer this worker's
    later.refresh_from_db()
    assert later.status == "running"
    for lock in held:
        lock.__exit__(None, None, None)


def test_a_worker_keeps_its_boot_when_its_consumer_reconnects_and_forgets_it_at_shutdown(redis):
    # Celery stops and starts the consumer's steps when the broker connection drops, while tasks run on: a running
    # collection's lock names the boot, so the boot must outlive the reconnection.
    from types import SimpleNamespace

    from apps.core import heartbeats

    step = heartbeats.WorkerHeartbeat(SimpleNamespace())
    consumer = SimpleNamespace(hostname="cluster@reconnects", task_consumer=None)
    step.start(consumer)
    boot = heartbeats.worker_boot("cluster@reconnects")  # written before the consumer takes a task
    assert boot
    step.stop(consumer)
    step.start(consumer)
    assert heartbeats.worker_boot("cluster@reconnects") == boot
    step.shutdown(consumer)
    assert heartbeats.worker_boot("cluster@reconnects") == ""


def _after_failure(cluster, task_outcomes, task) -> tuple[CollectionRun, float]:
    """The run one task recorded and how long after it ended the next attempt is due (the cluster's due time)."""
    task_outcomes.assert_ended_without_retry(task.id)  # the backoff is the schedule's, not a Celery retry
    run = _runs(cluster)[-1]
    cluster.refresh_from_db()
    return run, (cluster.next_collect_at - run.finished_at).total_seconds()


def test_it_backs_off_after_consecutive_transient_failures_up_to_the_poll_interval(
    kubeapi, cluster_for, celery_worker, task_outcomes, settings
):
    settings.MESHBOARD_RETRY_BASE_SECONDS = 2
    cluster = cluster_for(kubeapi, poll_interval_seconds=20)
    kubeapi.faults.add(r"^/api/v1/services$", status=503)  # until removed

    waits = []
    for expected_attempt in range(1, 8):
        run, wait = _after_failure(cluster, task_outcomes, collect_cluster.delay(cluster.pk))
        assert (run.status, run.attempt) == ("failed", expected_attempt) and "503" in run.error
        waits.append(round(wait))
    assert waits == [2, 4, 8, 16, 20, 20, 20]  # 2^(n-1) x 2 s, capped at the poll interval
    assert tick() == []  # not due yet: the tick does not start a fresh run early

    kubeapi.faults.clear()
    task = collect_cluster.delay(cluster.pk)
    task_outcomes.assert_ended_without_retry(task.id)
    assert _runs(cluster)[-1].status == "ok"

    # The streak ended with the success: the next failure starts over at the base.
    kubeapi.faults.add(r"^/api/v1/services$", status=503)
    run, wait = _after_failure(cluster, task_outcomes, collect_cluster.delay(cluster.pk))
    assert run.attempt == 1 and round(wait) == 2


def test_the_tick_starts_the_next_attempt_when_it_is_due(kubeapi, cluster_for, celery_worker, task_outcomes, settings):
    settings.MESHBOARD_RETRY_BASE_SECONDS = 2
    cluster = cluster_for(kubeapi, poll_interval_seconds=60)
    kubeapi.faults.add(r"^/api/v1/services$", status=503, times=1)

    assert tick() == [("mesh.collect_cluster", cluster.pk)]
    failed = wait_for(lambda: _runs(cluster, status="failed"))[0]
    # The run is recorded failed before the task moves the due time: read it once the task has ended.
    assert wait_for(lambda: [s for states in list(task_outcomes.states.values()) for s in states]) == ["SUCCESS"]
    cluster.refresh_from_db()
    due = cluster.next_collect_at
    assert round((due - failed.finished_at).total_seconds()) == 2
    assert tick() == []

    assert wait_for(tick, timeout=10) == [("mesh.collect_cluster", cluster.pk)]
    assert timezone.now() >= due
    ok = wait_for(lambda: _runs(cluster, status="ok"))[0]
    assert ok.attempt == 2 and ok.started_at >= due


def test_a_permanent_error_waits_a_full_poll_interval(kubeapi, cluster_for, celery_worker, task_outcomes):
    cluster = cluster_for(kubeapi, poll_interval_seconds=45)
    kubeapi.faults.add(r".", status=403)

    for expected_attempt in (1, 2):
        run, wait = _after_failure(cluster, task_outcomes, collect_cluster.delay(cluster.pk))
        assert (run.status, run.attempt) == ("failed", expected_attempt)
        assert "403" in run.error
        assert round(wait) == 45
