"""Find anything: the header's search box finds services, workloads, splits, policies and namespaces by part of their
name, as one types (htmx) or as a plain GET page, within the namespaces the user may see."""

from __future__ import annotations

import re

from django.test import Client
from playwright.sync_api import expect

from apps.clusters.models import Access
from tests.browser_fixtures import at_path, login, screenshot

HOSTILE = "<img src=x onerror=\"document.body.dataset.pwned='1'\">"


def _client(username: str, password: str) -> Client:
    client = Client()
    assert client.login(username=username, password=password)
    return client


def _hits(html: str) -> list[str]:
    return re.findall(r'data-hit="([^"]*)"', html)


def test_it_finds_each_kind_by_part_of_its_name_grouped_and_linked(viewer, bookstore):
    html = _client("vera", "a-long-viewer-pass").get("/search/", {"q": "WAREH"}).content.decode()
    hits = _hits(html)
    assert "Service:bookwarehouse/bookwarehouse" in hits
    assert "Deployment:bookwarehouse/bookwarehouse" in hits
    assert "TrafficTarget:bookwarehouse/bookstore-access-bookwarehouse" in hits or any(
        h.startswith("TrafficTarget:") and h.endswith("/bookstore-access-bookwarehouse") for h in hits
    )
    assert any(h.startswith("HTTPRouteGroup:") and h.endswith("/bookwarehouse-service-routes") for h in hits)
    assert "Namespace:/bookwarehouse" in hits
    groups = re.findall(r'data-group="([^"]*)"', html)
    assert groups == ["Services", "Workloads", "Policies", "Namespaces"]
    assert 'href="/services/bookwarehouse/bookwarehouse/"' in html
    assert 'href="/workloads/bookwarehouse/deployment/bookwarehouse/"' in html


def test_it_bounds_each_group_and_says_how_many_matched(viewer, bookstore):
    from apps.mesh.models import Service

    Service.objects.bulk_create(
        Service(cluster=bookstore, namespace="bookstore", name=f"many-{i:02d}") for i in range(14)
    )
    html = _client("vera", "a-long-viewer-pass").get("/search/", {"q": "many-"}).content.decode()
    assert len(_hits(html)) == 10
    assert 'data-count="14"' in html and "first 10 shown" in html


def test_it_never_finds_what_a_namespace_limited_viewer_may_not_see(viewer, bookstore):
    Access.objects.update_or_create(user=viewer, defaults={"namespaces": ["bookbuyer"], "operate_namespaces": []})
    client = _client("vera", "a-long-viewer-pass")
    for query in ("book", "store", "warehouse", "mysql", "split"):
        for headers in ({}, {"HX-Request": "true"}):
            html = client.get("/search/", {"q": query}, headers=headers).content.decode()
            namespaces = {h.split(":", 1)[1].split("/", 1)[0] for h in _hits(html)}
            names = {h.rsplit("/", 1)[1] for h in _hits(html) if h.startswith("Namespace:")}
            assert namespaces <= {"bookbuyer", ""}, (query, _hits(html))
            assert names <= {"bookbuyer"}, (query, _hits(html))
            for hidden in ("bookstore-v1", "bookwarehouse", "bookthief", "mysql"):
                if hidden != query:  # the page says what was asked
                    assert hidden not in html, (query, hidden)
    assert "Deployment:bookbuyer/bookbuyer" in _hits(client.get("/search/", {"q": "buy"}).content.decode())


def test_an_emptied_header_box_gets_an_empty_list_and_the_page_its_help(viewer, bookstore):
    client = _client("vera", "a-long-viewer-pass")
    assert client.get("/search/", {"q": "  "}, headers={"HX-Request": "true"}).content == b""
    assert "Type part of a name" in client.get("/search/", {"q": ""}).content.decode()


def test_it_shows_a_hostile_name_as_text(viewer, bookstore):
    from apps.mesh.models import Service

    Service.objects.create(cluster=bookstore, namespace="bookstore", name=HOSTILE)
    html = _client("vera", "a-long-viewer-pass").get("/search/", {"q": "onerror"}).content.decode()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=" in html


def test_it_finds_as_one_types_in_the_header_and_opens_the_result(page, live_server, viewer, bookstore):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.keyboard.press("/")
    expect(page.locator("#global-search")).to_be_focused()
    page.keyboard.type("wareh")
    hits = page.locator("#search-hits")
    expect(hits.locator('[data-group="Services"] a')).to_have_text(["bookwarehouse/bookwarehouse"])
    expect(hits.locator('[data-group="Workloads"] li')).to_contain_text(["bookwarehouse/bookwarehouse Deployment"])
    expect(hits.locator('[data-group="Policies"] li').first).to_be_visible()
    assert "bookstore-access-bookwarehouse" in hits.locator('[data-group="Policies"]').inner_text()
    screenshot(page, "search-results")

    # Down walks the results, Up back to the box; Escape closes them.
    page.keyboard.press("ArrowDown")
    expect(hits.locator("a").first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(hits.locator("a").nth(1)).to_be_focused()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(page.locator("#global-search")).to_be_focused()
    page.keyboard.press("Escape")
    expect(hits.locator("li")).to_have_count(0)
    page.fill("#global-search", "bookstore-v")
    expect(hits.locator('[data-group="Services"] li')).to_have_count(2)
    hits.locator('[data-group="Services"]').get_by_role("link", name="bookstore/bookstore-v2").click()
    page.wait_for_url(at_path("/services/bookstore/bookstore-v2/"))
    assert page.locator("h1").inner_text().startswith("bookstore-v2")

    # Without htmx's help (Enter submits the form), the same results as a page of their own.
    page.fill("#global-search", "bookthief")
    page.press("#global-search", "Enter")
    page.wait_for_url(re.compile(r"/search/\?q=bookthief"))
    expect(page.locator('main [data-group="Workloads"] a')).to_have_text(["bookthief/bookthief"])
    assert not [e for e in page.errors if "Content Security Policy" in e or "Refused" in e], page.errors
