"""The metrics task with a real Redis and a real Celery worker in this process: schedule, lock, backoff."""

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


def _after_failure(cluster, task_outcomes, task) -> tuple[CollectionRun, float]:
    """The run one task recorded and how long after it ended the next attempt is due (the cluster's due time)."""
    task_outcomes.assert_ended_without_retry(task.id)  # the backoff is the schedule's, not a Celery retry
    run = _runs(cluster)[-1]
    cluster.refresh_from_db()
    return run, (cluster.next_metrics_at - run.finished_at).total_seconds()


def test_it_backs_off_during_a_prometheus_outage_up_to_the_poll_interval(
    proxy, snapshot_cluster, celery_worker, task_outcomes, settings
):
    settings.MESHBOARD_RETRY_BASE_SECONDS = 2
    cluster = snapshot_cluster(proxy.url, poll_interval_seconds=10)
    proxy.fail(r"/api/v1/status/buildinfo", status=503)

    waits = []
    for expected_attempt in range(1, 6):
        run, wait = _after_failure(cluster, task_outcomes, collect_metrics.delay(cluster.pk))
        assert (run.status, run.attempt) == ("failed", expected_attempt) and "503" in run.error
        waits.append(round(wait))
    assert waits == [2, 4, 8, 10, 10]
    # The metrics backoff is the metrics collection's own: the cluster collection stays due on its own schedule.
    cluster.refresh_from_db()
    assert cluster.next_collect_at is None

    proxy.fail(r"^$", status=503, times=0)  # Prometheus is back
    task = collect_metrics.delay(cluster.pk)
    task_outcomes.assert_ended_without_retry(task.id)
    assert _runs(cluster)[-1].status == "ok" and _runs(cluster)[-1].attempt == 6


def test_it_does_not_retry_permanent_prometheus_errors_before_the_poll_interval(
    proxy, snapshot_cluster, celery_worker, task_outcomes
):
    cluster = snapshot_cluster(proxy.url, poll_interval_seconds=30)
    proxy.fail(r".", status=401)

    run, wait = _after_failure(cluster, task_outcomes, collect_metrics.delay(cluster.pk))
    assert (run.status, run.attempt) == ("failed", 1)
    assert "refused access (401)" in run.error
    assert round(wait) == 30
