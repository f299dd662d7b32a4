"""Empty states on the service page: what is unknown says "no data" and why, never zero; charts only where there can
be data (none without a sidecar, TCP only on TCP ports); table rows only for pairs that talk, unless asked for all."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.clusters.models import Cluster
from apps.metrics.models import EdgeKPI, ServiceKPI
from apps.metrics.services import collect_and_record as collect_metrics
from tests.browser_fixtures import login, screenshot
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def _text(response) -> str:
    assert response.status_code == 200
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def _charts(response) -> list[str]:
    return re.findall(r'data-chart="(\w+)"', response.content.decode())


def _edge(cluster: Cluster, source: str, **kpis) -> EdgeKPI:
    return EdgeKPI.objects.create(
        cluster=cluster,
        source_namespace=source,
        source_service=source,
        source_workload_kind="Deployment",
        source_workload_name=source,
        destination_namespace="bookstore",
        destination_service="bookstore-v1",
        collected_at=timezone.now(),
        **kpis,
    )


def _prometheus_down(cluster: Cluster) -> None:
    """Nothing listens at the cluster's Prometheus URL; one failed metrics run is recorded, no KPI row exists."""
    ServiceKPI.objects.filter(cluster=cluster).delete()
    cluster.prometheus_url = f"http://127.0.0.1:{free_port()}"
    cluster.save()
    _run, error = collect_metrics(cluster)
    assert error is not None


def test_a_tcp_service_gets_the_tcp_chart_only_and_says_why(client, viewer, bookstore):
    client.force_login(viewer)
    response = client.get("/services/bookwarehouse/mysql/")  # port 3306, appProtocol: tcp

    assert _charts(response) == ["tcp"]
    text = _text(response)
    assert "TCP only: every port has appProtocol tcp" in text

    assert _charts(client.get("/services/bookstore/bookstore-v1/")) == ["requests", "success", "latency", "tcp"]


def test_a_service_without_sidecars_gets_no_charts(client, viewer, bookstore):
    from apps.mesh.models import Service

    Service.objects.filter(cluster=bookstore, namespace="bookstore", name="bookstore-v1").update(pods_meshed=0)
    client.force_login(viewer)
    response = client.get("/services/bookstore/bookstore-v1/")

    assert _charts(response) == []
    assert "No charts: none of its pods has a sidecar, so no Envoy measures its traffic." in _text(response)


def test_pairs_that_do_not_talk_are_listed_only_when_asked(client, viewer, bookstore):
    _edge(bookstore, "bookbuyer", request_rate=5.0, success_rate=1.0)
    _edge(bookstore, "bookthief", tls_handshake_rate=0.2)  # a connection pool's handshakes, no request
    _edge(bookstore, "bookwarehouse", request_rate=0.0, tcp_bytes_sent_rate=0.0)
    client.force_login(viewer)

    default = client.get("/services/bookstore/bookstore-v1/").content.decode()
    inbound = default.split('id="inbound"')[1].split('id="outbound"')[0]
    assert 'data-source="bookbuyer/bookbuyer"' in inbound
    assert "bookthief" not in inbound and 'data-source="bookwarehouse' not in inbound
    assert "2 pairs that do not talk now (no requests, bytes or denials measured) are not listed." in (
        html_lib.unescape(inbound)
    )

    everything = client.get("/services/bookstore/bookstore-v1/?pairs=all").content.decode()
    inbound = everything.split('id="inbound"')[1].split('id="outbound"')[0]
    for source in ("bookbuyer", "bookthief", "bookwarehouse"):
        assert f'data-source="{source}/{source}"' in inbound
    assert "Hide pairs without traffic" in inbound


def test_a_denied_pair_talks(client, viewer, bookstore):
    _edge(bookstore, "bookthief", denied_rate=2.0)
    client.force_login(viewer)
    page = client.get("/services/bookstore/bookstore-v1/").content.decode()
    assert 'data-source="bookthief/bookthief"' in page.split('id="inbound"')[1]


def test_with_prometheus_down_nothing_reads_as_zero(client, viewer, bookstore):
    _prometheus_down(bookstore)
    client.force_login(viewer)
    text = _text(client.get("/services/bookstore/bookstore-v1/"))

    assert "No data for bookstore-v1: Prometheus: cannot reach Prometheus." in text
    assert "No data: Prometheus: cannot reach Prometheus." in text  # the inbound and outbound tables
    assert "No inbound traffic observed" not in text
    assert " 0 req/s" not in text and "0%" not in text


def test_charts_say_no_data_instead_of_drawing_an_empty_axis(page, live_server, viewer, bookstore):
    _prometheus_down(bookstore)
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/services/bookstore/bookstore-v1/")

    charts = page.locator(".chart")
    expect(charts).to_have_count(4)
    for chart in charts.all():
        expect(chart).to_have_attribute("data-points", "0")
        expect(chart.locator(".no-data")).to_contain_text("No data: Prometheus is not answering")
    assert page.locator(".chart .main-svg").count() == 0  # no axis drawn for what is unknown
    screenshot(page, "service-prometheus-down")

    page.goto(f"{live_server.url}/services/bookwarehouse/mysql/")
    expect(page.locator(".chart")).to_have_count(1)
    expect(page.locator(".chart")).to_have_attribute("data-chart", "tcp")
