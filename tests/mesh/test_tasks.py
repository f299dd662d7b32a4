"""The schedule, the lock and the retries, with a real Redis and a real Celery worker in this process."""

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


def test_it_retries_transient_errors_with_backoff(kubeapi, cluster_for, celery_worker, task_outcomes):
    cluster = cluster_for(kubeapi)
    kubeapi.faults.add(r"^/api/v1/services$", status=503, times=1)

    task = collect_cluster.delay(cluster.pk)
    ok = wait_for(lambda: _runs(cluster, status="ok"))

    failed = _runs(cluster, status="failed")
    assert [r.attempt for r in failed] == [1] and ok[0].attempt == 2
    assert "503" in failed[0].error
    assert (ok[0].started_at - failed[0].finished_at).total_seconds() >= 1.5
    assert task_outcomes.first_end(task.id) == "RETRY" and len(task_outcomes.retries[task.id]) == 1


def test_it_does_not_retry_permanent_errors(kubeapi, cluster_for, celery_worker, task_outcomes):
    cluster = cluster_for(kubeapi)
    kubeapi.faults.add(r".", status=403)

    task = collect_cluster.delay(cluster.pk)

    task_outcomes.assert_ended_without_retry(task.id)
    [run] = _runs(cluster)  # one attempt, recorded as failed
    assert (run.status, run.attempt) == ("failed", 1)
    assert "403" in run.error
