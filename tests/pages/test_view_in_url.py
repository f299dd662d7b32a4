"""The view a page shows (time range, cluster) lives in its URL: links carry it, a copied URL opens it again in a
fresh browser, a custom start/end range (what a chart zoom gives) is shown as such, and a bad one is refused aloud."""

from __future__ import annotations

import html as html_lib
import re
import time

import pytest
from django.utils import timezone

from apps.clusters.models import CollectionRun
from tests.browser_fixtures import login

pytestmark = pytest.mark.django_db


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return html_lib.unescape(response.content.decode())


def _series_urls(page: str) -> set[str]:
    return set(re.findall(r'data-series-url="([^"]+)"', page))


def _metrics_for(cluster, minutes: int) -> None:
    """Metrics collected every 4 minutes (no pause long enough to break the stretch) for the last `minutes`."""
    now = timezone.now()
    for ago in range(minutes, -1, -4):
        started = now - timezone.timedelta(minutes=ago)
        CollectionRun.objects.create(
            cluster=cluster, kind=CollectionRun.Kind.METRICS, status=CollectionRun.Status.OK, started_at=started,
            finished_at=started,
        )  # fmt: skip


def test_the_default_is_15_minutes_while_the_metrics_stretch_is_younger_than_an_hour(client, viewer, bookstore):
    client.force_login(viewer)
    page = _page(client, "/services/bookstore/bookstore-v1/")
    assert _series_urls(page) == {"/services/bookstore/bookstore-v1/series?window=15m"}
    assert 'data-view-query="window=15m"' in page

    _metrics_for(bookstore, 40)  # a stretch younger than an hour (a demo just started): still 15 minutes
    page = _page(client, "/services/bookstore/bookstore-v1/")
    assert _series_urls(page) == {"/services/bookstore/bookstore-v1/series?window=15m"}

    CollectionRun.objects.filter(cluster=bookstore).delete()
    _metrics_for(bookstore, 70)
    page = _page(client, "/services/bookstore/bookstore-v1/")
    assert _series_urls(page) == {"/services/bookstore/bookstore-v1/series?window=1h"}


def test_links_carry_the_window_chosen(client, viewer, bookstore):
    client.force_login(viewer)
    page = _page(client, "/services/bookstore/bookstore-v1/?window=6h")

    assert _series_urls(page) == {"/services/bookstore/bookstore-v1/series?window=6h"}
    for path in ("/", "/graph/", "/splits/", "/policies/", "/mesh/"):
        assert f'href="{path}?window=6h"' in page, path
    assert re.search(r'<option value="6h" selected>', page)


def test_a_custom_range_is_shown_as_such(client, viewer, bookstore):
    client.force_login(viewer)
    end = int(time.time()) - 600
    page = _page(client, f"/services/bookstore/bookstore-v1/?start={end - 1800}&end={end}")

    assert _series_urls(page) == {f"/services/bookstore/bookstore-v1/series?start={end - 1800}&end={end}"}
    assert "30 min ending " in page
    assert f'href="/graph/?start={end - 1800}&end={end}"' in page


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("start=100&end=50", "a range must span at least 60 s (start must be before end)"),
        ("start=yesterday&end=1700000000", "'yesterday' is not a time"),
        ("start=1700000000", "a custom range needs both start and end"),
        ("window=3d", "unknown window '3d'"),
    ],
)
def test_a_range_that_cannot_be_shown_is_refused_aloud(client, viewer, bookstore, query, why):
    client.force_login(viewer)
    page = _page(client, f"/services/bookstore/bookstore-v1/?{query}")
    assert f"The time range in the URL was not used: {why}" in page
    assert _series_urls(page) == {"/services/bookstore/bookstore-v1/series?window=15m"}


def test_a_copied_url_opens_the_same_window_in_a_fresh_browser(browser, live_server, viewer, bookstore):
    first = browser.new_context()
    page = first.new_page()
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/services/bookstore/bookstore-v1/")
    page.select_option("select[name=window]", "6h")
    page.wait_for_url(re.compile(r"window=6h"))
    page.click("nav >> text=Graph")
    page.wait_for_url(re.compile(r"/graph/\?window=6h"))
    page.go_back()
    copied = page.url
    first.close()

    fresh = browser.new_context()
    other = fresh.new_page()
    login(other, live_server.url, "vera", "a-long-viewer-pass")
    other.goto(copied)
    assert other.locator("select[name=window]").input_value() == "6h"
    assert other.locator(".chart").first.get_attribute("data-series-url").endswith("?window=6h")
    fresh.close()


def test_a_url_without_a_range_gets_it_written_in(page, live_server, viewer, bookstore):
    login(page, live_server.url, "vera", "a-long-viewer-pass")
    page.goto(f"{live_server.url}/services/bookstore/bookstore-v1/?pairs=all")
    page.wait_for_url(re.compile(r"\?pairs=all&window=15m$"))


def test_the_compare_pages_own_windows_are_not_refused_as_the_headers(client, viewer, bookstore):
    # The compare page offers 1m and 5m, which the header's picker does not: its ?window= is its own.
    client.force_login(viewer)
    page = _page(client, "/splits/bookstore/bookstore-split/compare/?window=5m")
    assert "was not used" not in page
    assert 'data-view-query="window=15m"' in page  # the header keeps the pages' range
