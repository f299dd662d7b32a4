"""The metrics task with a real Redis and a real Celery worker in this process: schedule, lock, retries."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.tasks import tick
from apps.core.locks import exclusive
from apps.metrics.models import ServiceKPI
from apps.metrics.tasks import collect_metrics
from lab.waiting import wait_for

from .faultproxy import FaultProxy

pytestmark = pytest.mark.django_db(transaction=True)


def _runs(cluster, **filters):
    return list(CollectionRun.objects.filter(cluster=cluster, kind="metrics", **filters).order_by("started_at"))


@pytest.fixture
def proxy(proms):
    p = FaultProxy(proms.byo.url)
    yield p
    p.close()


def test_it_collects_metrics_of_due_clusters_with_a_prometheus(proms, snapshot_cluster, celery_worker):
    with_prom = snapshot_cluster(proms.byo.url, name="with", poll_interval_seconds=60)
    without = snapshot_cluster("", name="without")
    Cluster.objects.filter(pk=without.pk).update(next_collect_at=timezone.now() + timezone.timedelta(minutes=5))
    Cluster.objects.filter(pk=with_prom.pk).update(next_collect_at=timezone.now() + timezone.timedelta(minutes=5))

    tick.delay()
    run = wait_for(lambda: _runs(with_prom, status__in=["ok", "partial", "failed"]))[0]
    assert run.status == "ok", run.error
    assert run.api_requests and run.counts["services"] >= 10
    assert ServiceKPI.objects.filter(cluster=with_prom, service="cart").exists()
    assert not _runs(without)
    with_prom.refresh_from_db()
    assert with_prom.next_metrics_at > timezone.now() + timezone.timedelta(seconds=50)
    assert tick() == []  # not due again: nothing more is enqueued
    assert len(_runs(with_prom)) == 1


def test_it_skips_a_run_while_another_holds_the_metrics_lock(proms, snapshot_cluster, celery_worker):
    cluster = snapshot_cluster(proms.byo.url)
    with exclusive(f"collect-metrics:{cluster.pk}", ttl_seconds=30) as held:
        assert held
        collect_metrics.delay(cluster.pk)
        skipped = wait_for(lambda: _runs(cluster, status="skipped"))
    assert "still running" in skipped[0].error


def test_it_retries_transient_prometheus_errors_with_backoff(proxy, snapshot_cluster, celery_worker, task_outcomes):
    cluster = snapshot_cluster(proxy.url)
    proxy.fail(r"/api/v1/status/buildinfo", status=503, times=1)
    task = collect_metrics.delay(cluster.pk)
    ok = wait_for(lambda: _runs(cluster, status="ok"))
    failed = _runs(cluster, status="failed")
    assert [r.attempt for r in failed] == [1] and ok[0].attempt == 2
    assert "503" in failed[0].error
    assert (ok[0].started_at - failed[0].finished_at).total_seconds() >= 1.5
    assert task_outcomes.first_end(task.id) == "RETRY" and len(task_outcomes.retries[task.id]) == 1


def test_it_does_not_retry_permanent_prometheus_errors(proxy, snapshot_cluster, celery_worker, task_outcomes):
    cluster = snapshot_cluster(proxy.url)
    proxy.fail(r".", status=401)
    task = collect_metrics.delay(cluster.pk)

    task_outcomes.assert_ended_without_retry(task.id)
    [run] = _runs(cluster)  # one attempt, recorded as failed
    assert (run.status, run.attempt) == ("failed", 1)
    assert "refused access (401)" in run.error
