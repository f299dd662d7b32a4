"""The overview through HTTP: what a person reads in the table."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.clusters.models import Cluster
from apps.mesh.models import Service
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-service="([^"]+)">', html)


def _row(html: str, service: str) -> str:
    start = html.index(f'<tr data-service="{service}">')
    return html[start : html.index("</tr>", start)]


def test_it_lists_every_service_with_kpis_health_and_sidecars(client, viewer, bookstore):
    client.force_login(viewer)
    html = client.get("/").content.decode()

    assert {r for r in _rows(html) if r.split("/")[0].startswith("book")} == {
        "bookstore/bookstore",
        "bookstore/bookstore-v1",
        "bookstore/bookstore-v2",
        "bookwarehouse/bookwarehouse",
        "bookwarehouse/mysql",
    }
    assert len(_rows(html)) == Service.objects.filter(cluster=bookstore).count()
    v2 = _row(html, "bookstore/bookstore-v2")
    assert "20 ms" in v2 and "45 ms" in v2 and "60 ms" in v2 and "80%" in v2
    assert 'class="lock on"' in v2 and "1/1" in v2
    root = _row(html, "bookstore/bookstore")
    assert 'title="TrafficSplit root"' in root
    assert "split" not in _row(html, "bookstore/bookstore-v1").split("</td>")[0]


def test_it_says_which_health_rule_fired_and_the_ratio(client, viewer, bookstore):
    client.force_login(viewer)
    html = client.get("/").content.decode()

    v2 = _row(html, "bookstore/bookstore-v2")
    assert 'class="health failing"' in v2
    assert "5xx 20% of 10 req/s ≥ 10%" in v2
    warehouse = _row(html, "bookwarehouse/bookwarehouse")
    assert 'class="health degraded"' in warehouse and "4xx 10% of 5 req/s (≥ 10%)" in warehouse
    v1 = _row(html, "bookstore/bookstore-v1")
    assert 'class="health healthy"' in v1 and "1/1 pods ready, no errors" in v1
    mysql = _row(html, "bookwarehouse/mysql")
    assert "–" in mysql  # no HTTP requests measured: unknown, not 0


def test_it_filters_searches_sorts_and_pages(client, viewer, bookstore, settings):
    client.force_login(viewer)

    assert set(_rows(client.get("/?namespace=bookwarehouse").content.decode())) == {
        "bookwarehouse/bookwarehouse",
        "bookwarehouse/mysql",
    }
    assert _rows(client.get("/?q=V2").content.decode()) == ["bookstore/bookstore-v2"]
    by_p99 = _rows(client.get("/?sort=-p99").content.decode())
    assert by_p99[:3] == ["bookstore/bookstore-v2", "bookstore/bookstore", "bookstore/bookstore-v1"]
    by_health = _rows(client.get("/?sort=-health&namespace=bookstore").content.decode())
    assert by_health[0] in {"bookstore/bookstore", "bookstore/bookstore-v2"}

    settings.MESHBOARD_PAGE_SIZE = 2
    page2 = client.get("/?namespace=bookstore&sort=name&page=2").content.decode()
    assert _rows(page2) == ["bookstore/bookstore-v2"]
    assert "page 2 of 2 · 3 services" in page2


def test_it_returns_only_the_table_to_htmx_refreshes(client, viewer, bookstore):
    client.force_login(viewer)
    response = client.get("/?namespace=bookstore", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div id="overview"')
    assert "HX-Request" in response["Vary"]


def test_it_shows_freshness_and_why_data_is_stale(client, viewer, bookstore, kubeapi):
    client.force_login(viewer)
    assert "Kubernetes objects:" in client.get("/").content.decode()

    kubeapi.stop()
    collect_and_record(bookstore)
    html = client.get("/").content.decode()
    assert "Kubernetes objects stale since" in html and "cannot reach the API server" in html
    assert "bookstore/bookstore-v2" in html  # the last good snapshot is still shown


def test_it_makes_the_same_number_of_queries_whatever_the_mesh_size(client, viewer, kubeapi_factory):
    client.force_login(viewer)
    counts = []
    for index, services in enumerate((10, 120)):
        cluster = Cluster.objects.create(
            name=f"c{index}", kubeconfig_path=str(kubeapi_factory(load_seed("synthetic", services=services)).kubeconfig)
        )
        collect_and_record(cluster)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/?cluster={cluster.name}")
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("sort", ["name", "-rps", "success", "-p95", "tcp", "-coverage", "bogus"])
def test_it_accepts_any_sort_without_error(client, viewer, bookstore, sort):
    client.force_login(viewer)
    response = client.get(f"/?sort={sort}")
    assert response.status_code == 200
    # Sorting reorders, never drops: services without a value sort last rather than vanish.
    assert len(_rows(response.content.decode())) == Service.objects.filter(cluster=bookstore).count()


def test_it_says_why_a_snapshot_is_partial(client, viewer, bookstore, kubeapi):
    kubeapi.faults.add(r"^/api/v1/pods$", status=403, verb="list")
    collect_and_record(bookstore)
    client.force_login(viewer)

    html = client.get("/").content.decode()
    anchor = f"warnings-{bookstore.pk}-cluster"
    assert "(partial: 1 warning)" in html and f'href="/mesh/#{anchor}"' in html
    mesh = client.get("/mesh/").content.decode()
    assert "forbidden by RBAC" in mesh and mesh.count(f'id="{anchor}"') == 1
