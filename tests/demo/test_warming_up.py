"""While a cluster's metrics are younger than one rate window, pages say "Metrics warming up" instead of showing low
rates as real (issue #14 item 5). The signal is the run records': the latest unbroken stretch of successful metrics
runs began less than one window (the collector's long window) before the latest run."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.clusters.freshness import rate_window_seconds
from apps.clusters.models import Cluster, CollectionRun
from apps.metrics import catalog

pytestmark = pytest.mark.django_db


def _metrics_runs(cluster: Cluster, *ages: float, status: str = CollectionRun.Status.OK) -> None:
    """Metrics runs that started `ages` seconds ago (each took a second)."""
    now = timezone.now()
    for age in ages:
        started = now - timedelta(seconds=age)
        CollectionRun.objects.create(
            cluster=cluster,
            kind=CollectionRun.Kind.METRICS,
            status=status,
            started_at=started,
            finished_at=started + timedelta(seconds=1),
        )


def _warming(client) -> str:
    page = client.get("/").content.decode()
    found = re.search(r'<span class="warming"[^>]*>([^<]*)</span>', page)
    return html.unescape(found.group(1)) if found else ""


@pytest.fixture
def lab_cluster(bookstore):
    Cluster.objects.filter(pk=bookstore.pk).update(prometheus_url="http://127.0.0.1:9/")
    bookstore.refresh_from_db()
    return bookstore


def test_it_matches_the_collectors_long_window():
    for scrape in (0.5, 1, 15, 30, 60, 75, 120, 600):
        assert rate_window_seconds(scrape) == catalog.windows(scrape).long
    assert rate_window_seconds(None) == 300


def test_it_says_metrics_are_warming_up_while_they_cover_less_than_a_window(client, viewer, lab_cluster, redis):
    _metrics_runs(lab_cluster, 40, 25, 10)
    first = CollectionRun.objects.filter(kind="metrics").earliest("started_at").started_at
    client.force_login(viewer)

    note = _warming(client)

    until = timezone.localtime(first + timedelta(seconds=300)).strftime("%H:%M:%S")
    assert note == f"Metrics warming up: rates cover only the last 30 s until {until}"


def test_it_says_nothing_once_a_whole_window_is_covered(client, viewer, lab_cluster, redis):
    _metrics_runs(lab_cluster, *range(330, 0, -15))
    client.force_login(viewer)
    assert _warming(client) == ""


def test_it_starts_again_after_a_pause_longer_than_a_window(client, viewer, lab_cluster, redis):
    """A demo started again hours later, or metrics back after a long outage: Prometheus's window holds only what came
    since (a previous stretch does not count)."""
    _metrics_runs(lab_cluster, *range(3600, 3000, -15))
    _metrics_runs(lab_cluster, 61, 46, 31, 16, 1)
    client.force_login(viewer)
    assert _warming(client).startswith("Metrics warming up: rates cover only the last 60 s until ")


def test_it_keeps_the_stretch_through_a_short_outage(client, viewer, lab_cluster, redis):
    """Prometheus restarted within a minute (its data kept): the window still holds minutes of data."""
    _metrics_runs(lab_cluster, *range(400, 90, -15))
    _metrics_runs(lab_cluster, 75, 60, status=CollectionRun.Status.FAILED)
    _metrics_runs(lab_cluster, 30, 15)
    client.force_login(viewer)
    assert _warming(client) == ""


def test_it_says_nothing_without_metrics(client, viewer, lab_cluster, redis):
    client.force_login(viewer)
    assert _warming(client) == ""
    _metrics_runs(lab_cluster, 5, status=CollectionRun.Status.FAILED)
    assert _warming(client) == ""
