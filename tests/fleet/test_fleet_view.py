"""The fleet view (`/?show=fleet`: a row per cluster with its services' health, its freshness and its worst services)
and the cluster switcher once there are many clusters (a filtering text field instead of a long select)."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.picker import SELECT_UP_TO
from apps.mesh.models import Service
from apps.metrics.models import ServiceKPI
from tests.browser_fixtures import login

pytestmark = pytest.mark.django_db


def _cluster(name: str, services: dict[str, tuple[int, int, float | None, float]], *, collected: bool = True):
    """A cluster whose snapshot holds `services`: name -> (pods total, pods ready, req/s or None, 5xx req/s)."""
    cluster = Cluster.objects.create(name=name, kubeconfig_path="unused", poll_interval_seconds=15)
    now = timezone.now()
    for service, (total, ready, rps, five) in services.items():
        Service.objects.create(cluster=cluster, namespace="shop", name=service, pods_total=total, pods_ready=ready)
        if rps is not None:
            ServiceKPI.objects.create(
                cluster=cluster, namespace="shop", service=service, collected_at=now, request_rate=rps,
                rate_2xx=rps - five, rate_4xx=0.0, rate_5xx=five,
            )  # fmt: skip
    if collected:
        done = now - timezone.timedelta(seconds=7)
        CollectionRun.objects.create(cluster=cluster, kind="cluster", status="ok", started_at=done, finished_at=done)
    return cluster


def _fleet_rows(page: str) -> list[str]:
    return re.findall(r'<tr data-cluster="([^"]+)"', page)


def _row(page: str, cluster: str) -> str:
    return page.split(f'<tr data-cluster="{cluster}"')[1].split("</tr>")[0]


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return html_lib.unescape(response.content.decode())


def test_each_cluster_is_a_row_worst_first_with_health_freshness_and_worst_services(client, viewer):
    _cluster("calm", {"cart": (2, 2, 10.0, 0.0), "web": (1, 1, 5.0, 0.0)})
    burning = {"cart": (2, 2, 10.0, 5.0), "pay": (3, 1, 4.0, 0.0), "web": (1, 1, 5.0, 0.2), "ok": (1, 1, 1.0, 0.0)}
    _cluster("burning", burning)
    _cluster("wobbly", {"cart": (2, 1, 10.0, 0.0)})
    _cluster("empty", {}, collected=False)
    client.force_login(viewer)

    page = _page(client, "/?show=fleet&window=6h")

    assert _fleet_rows(page) == ["burning", "wobbly", "calm", "empty"]
    burning = _row(page, "burning")
    assert '<span class="health failing">failing</span>' in burning
    assert "1 failing · 2 degraded · 1 healthy" in burning
    # Its worst services, the worst first, each linked in that cluster and the page's time range, with the reason.
    worst = re.findall(r'<a href="(/services/[^"]+)">([^<]+)</a>', burning)
    assert worst == [
        ("/services/shop/cart/?cluster=burning&window=6h", "shop/cart"),
        ("/services/shop/web/?cluster=burning&window=6h", "shop/web"),
        ("/services/shop/pay/?cluster=burning&window=6h", "shop/pay"),
    ]
    assert "5xx 50% of 10 req/s ≥ 10%" in burning and "2 of 3 pods not ready" in burning
    assert 'href="/?cluster=burning&window=6h">burning</a>' in burning
    assert re.search(r"Kubernetes objects: [78] s old", burning)
    assert "none degraded or failing" in _row(page, "calm")
    assert "Kubernetes objects: not collected yet" in _row(page, "empty")


def test_a_failing_collection_says_why_in_words_for_everyone_never_the_raw_reason(client, viewer):
    stale = _cluster("stale", {"cart": (1, 1, 1.0, 0.0)})
    old = timezone.now() - timezone.timedelta(minutes=10)
    CollectionRun.objects.filter(cluster=stale).update(started_at=old, finished_at=old)
    CollectionRun.objects.create(
        cluster=stale, kind="cluster", status="failed", finished_at=timezone.now(),
        error="cannot reach https://10.1.2.3:6443 (connection refused)",
    )  # fmt: skip
    _cluster("fine", {})
    client.force_login(viewer)

    row = _row(_page(client, "/?show=fleet"), "stale")

    assert "stale</span>" in row and "last attempt failed" in row
    assert "cannot reach the API server" in row
    assert "10.1.2.3" not in row


def test_the_fleet_costs_the_same_queries_for_3_clusters_as_for_12(client, viewer):
    client.force_login(viewer)
    counts = []
    for first, last in ((0, 3), (3, 12)):
        for i in range(first, last):
            _cluster(f"c{i:02d}", {"cart": (2, 2, 10.0, float(i % 3)), "web": (1, 0, None, 0.0)})
        _page(client, "/?show=fleet")  # the first visit also writes the session
        with CaptureQueriesContext(connection) as queries:
            page = _page(client, "/?show=fleet")
        assert len(_fleet_rows(page)) == last
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_fleet_filters_by_cluster_name_and_refreshes_as_a_partial(client, viewer):
    for name in ("prod-eu", "prod-us", "staging"):
        _cluster(name, {"cart": (1, 1, 1.0, 0.0)})
    client.force_login(viewer)

    assert _fleet_rows(_page(client, "/?show=fleet&q=PROD")) == ["prod-eu", "prod-us"]
    partial = client.get("/?show=fleet&q=prod", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="overview"') and "<html" not in partial
    assert _fleet_rows(partial) == ["prod-eu", "prod-us"]
    assert "No cluster matches." in _page(client, "/?show=fleet&q=nowhere")


def test_the_fleet_tab_appears_once_there_are_two_clusters(client, viewer):
    client.force_login(viewer)
    _cluster("only", {})
    assert 'href="?show=fleet"' not in _page(client, "/")
    _cluster("second", {})
    assert 'href="?show=fleet">Fleet</a>' in _page(client, "/")
    assert '<strong aria-current="page">Fleet</strong>' in _page(client, "/?show=fleet")


def test_a_few_clusters_get_a_select_and_many_a_field_that_filters(client, viewer):
    client.force_login(viewer)
    for i in range(SELECT_UP_TO):
        _cluster(f"c{i:02d}", {})
    page = _page(client, "/?cluster=c03")
    assert '<select name="cluster">' in page and 'list="cluster-names"' not in page
    assert "js/switcher.js" not in page

    for i in range(SELECT_UP_TO, 50):
        _cluster(f"c{i:02d}", {})
    page = _page(client, "/?cluster=c42&window=6h")
    assert '<select name="cluster">' not in page
    field = re.search(r'<input type="search" name="cluster" list="cluster-names" value="([^"]*)"', page)
    assert field and field.group(1) == "c42"
    assert re.findall(r'<option value="(c\d\d)"></option>', page) == [f"c{i:02d}" for i in range(50)]
    assert 'href="/?show=fleet&window=6h"' in page and "50 clusters" in page
    assert "js/switcher.js" in page
    assert "<h1>Services <small>in c42</small>" in page


def test_a_cluster_name_that_is_not_one_is_refused_aloud_and_the_session_cluster_stays(client, viewer):
    for name in ("alpha", "beta", "gamma"):
        _cluster(name, {})
    client.force_login(viewer)
    _page(client, "/?cluster=gamma")

    page = _page(client, "/?cluster=gama&window=1h")

    assert "No cluster is named 'gama'. Showing gamma." in page
    assert "<h1>Services <small>in gamma</small>" in page
    assert 'data-view-query="cluster=gamma&window=1h"' in page


def test_the_switcher_switches_on_a_pick_from_the_list_and_on_enter(page, live_server, viewer):
    for name in ["fleet-1", *(f"fleet-{i:02d}" for i in range(20))]:
        _cluster(name, {"cart": (1, 1, 1.0, 0.0)})
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/?cluster=fleet-03&window=6h")
    field = page.locator("input[data-switch-cluster]")

    # Focused, it empties so the list offers every cluster; the current one stays as the placeholder.
    field.focus()
    assert field.input_value() == "" and field.get_attribute("placeholder") == "fleet-03"
    # Typing a name that begins others (fleet-1, fleet-12) switches nothing until Enter.
    field.press_sequentially("fleet-1")
    page.wait_for_timeout(300)
    assert "cluster=fleet-03" in page.url
    field.fill("fleet-12")
    field.press("Enter")
    page.wait_for_url(re.compile(r"[?&]cluster=fleet-12&window=6h$"))
    assert page.locator("h1 small").inner_text() == "in fleet-12"

    # A pick from the list (the browser replaces the whole text, without typing) switches at once.
    field = page.locator("input[data-switch-cluster]")
    field.evaluate(
        "f => { f.focus(); f.value = 'fleet-17';"
        " f.dispatchEvent(new InputEvent('input', {bubbles: true, inputType: 'insertReplacementText'})); }"
    )
    page.wait_for_url(re.compile(r"[?&]cluster=fleet-17&window=6h$"))
    # Left empty, the field gets the current cluster back, so the window select still carries it.
    page.locator("input[data-switch-cluster]").focus()
    page.select_option("select[name=window]", "1h")
    page.wait_for_url(re.compile(r"[?&]cluster=fleet-17&window=1h$"))
