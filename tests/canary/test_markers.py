"""Weight-change markers on the service charts and the compare charts: Meshboard's writes from its audit, every other
writer's from the configuration history with its managedFields manager, Flagger's as its steps; and the weight steps
the compare charts draw. Against the stand-in (each write a real PATCH, each collection a real one) and, in the
browser, a real Prometheus so the charts draw."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.canary.markers import service_markers, weight_steps
from apps.mesh.models import TrafficSplit
from apps.mesh.services import collect_and_record
from tests.browser_fixtures import at_path, login, screenshot
from tests.canary.flagger_objects import bookstore_openmetrics, put_canary
from tests.helpers import BOOKSTORE_SPLIT, change_bookstore_weights, custom_api, set_bookstore_backends


def _backends(v1: int, v2: int) -> list[dict]:
    return [{"service": "bookstore-v1", "weight": v1}, {"service": "bookstore-v2", "weight": v2}]


def _patch_as(kubeapi: object, manager: str, v1: int, v2: int) -> None:
    """Another client's write, as `kubectl edit` or Flagger make it: a merge patch under its own field manager."""
    custom_api(kubeapi).patch_namespaced_custom_object(
        *BOOKSTORE_SPLIT, {"spec": {"backends": _backends(v1, v2)}}, field_manager=manager
    )


def _tick() -> None:
    time.sleep(1.1)  # managedFields times have whole seconds: each write gets its own


@pytest.fixture
def changed_thrice(bookstore, kubeapi, operator):
    """From 100/0: Meshboard sets 90/10, kubectl-edit 60/40, then Flagger (its Canary drives the split) 50/50, each
    write followed by a collection. Returns the time before the first."""
    put_canary(kubeapi)
    set_bookstore_backends(kubeapi, _backends(100, 0))
    collect_and_record(bookstore)
    since = timezone.now()
    _tick()
    assert change_bookstore_weights(bookstore, operator, 90, 10).applied
    collect_and_record(bookstore)
    _tick()
    _patch_as(kubeapi, "kubectl-edit", 60, 40)
    collect_and_record(bookstore)
    _tick()
    _patch_as(kubeapi, "flagger", 50, 50)
    collect_and_record(bookstore)
    return since


def test_a_service_marks_each_writer_of_the_splits_naming_it(bookstore, changed_thrice):
    for service in ("bookstore-v1", "bookstore"):  # a backend, and the split's root
        markers = service_markers(bookstore, "bookstore", service, changed_thrice)
        assert [(m["text"], m["outside"]) for m in markers] == [
            ("bookstore-split: otto set bookstore-v1 90, bookstore-v2 10 in Meshboard", False),
            ("bookstore-split: changed outside Meshboard by kubectl-edit: bookstore-v1 60, bookstore-v2 40", True),
            ("bookstore-split: Flagger step (Canary bookstore): bookstore-v1 50, bookstore-v2 50", True),
        ]
        assert [m["manager"] for m in markers] == ["meshboard", "kubectl-edit", "flagger"]
    assert service_markers(bookstore, "bookwarehouse", "bookwarehouse", changed_thrice) == []
    # Only the window asked for.
    assert service_markers(bookstore, "bookstore", "bookstore-v1", timezone.now()) == []


def test_the_weight_steps_follow_every_writer(bookstore, changed_thrice):
    split = TrafficSplit.objects.get(cluster=bookstore, namespace="bookstore", name="bookstore-split")
    points = weight_steps(split, changed_thrice, timezone.now())
    assert [p["percents"]["bookstore-v2"] for p in points] == [0.0, 10.0, 40.0, 50.0, 50.0]
    assert points[0]["at"] == changed_thrice.timestamp()


def test_the_compare_series_carries_the_markers_and_the_canary_share_as_steps(client, viewer, changed_thrice):
    client.force_login(viewer)
    data = client.get("/splits/bookstore/bookstore-split/compare/series?cluster=lab&window=15m").json()
    # The first marker is the fixture's own 100/0 (made less than 15 minutes ago, by the client's default manager).
    assert [m["manager"] for m in data["markers"]] == ["OpenAPI-Generator", "meshboard", "kubectl-edit", "flagger"]
    assert data["steps"]["show"] == ["bookstore-v2"]  # every backend but the baseline (the first of equals)
    shares = [p["percents"].get("bookstore-v2") for p in data["steps"]["points"]]
    assert shares == [None, 0.0, 10.0, 40.0, 50.0, 50.0]  # the seed had v1 alone, 15 minutes ago


# ---------------------------------------------------------------------------------------------------------------
# In the browser


@pytest.fixture
def charted(bookstore, prometheus_factory):
    """The bookstore with a real Prometheus holding the last 50 minutes of its traffic, so its charts draw."""
    bookstore.prometheus_url = prometheus_factory(bookstore_openmetrics(), name="markers").url
    bookstore.save()
    return bookstore


def test_an_editor_change_and_an_outside_one_are_marked_on_the_service_chart(page, live_server, charted, kubeapi):
    from django.core.management import call_command

    call_command("create_user", "olga", role="operator", password="a-long-operator-pass")
    # The seed's split has bookstore-v1 alone: v2 joins at 0 first (a change the charts mark too, as "setup").
    _patch_as(kubeapi, "setup", 100, 0)
    collect_and_record(charted)
    _tick()
    login(page, live_server.url, "olga", "a-long-operator-pass")

    # In the editor: 90/10, previewed and applied.
    page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
    weights = page.locator(".weight-row input[type=number]")
    weights.nth(0).fill("90")
    weights.nth(1).fill("10")
    page.click('button[name="action"][value="preview"]')
    page.click('button[name="action"][value="apply"]')
    page.wait_for_url(at_path("/splits/#split-bookstore-bookstore-split"))
    _tick()
    # Directly against the stand-in, as `kubectl edit` would; the next collection sees it.
    _patch_as(kubeapi, "kubectl-edit", 60, 40)
    collect_and_record(charted)

    page.goto(f"{live_server.url}/services/bookstore/bookstore-v1/")
    chart = page.locator('.chart[data-chart="requests"]')
    expect(chart).to_have_attribute("data-markers", "3", timeout=15_000)
    dashes = chart.evaluate("el => el.layout.shapes.map(s => s.line.dash)")
    assert dashes == ["dot", "solid", "dot"]  # the setup, Meshboard's write, then the one made outside it
    hover = chart.evaluate("el => el.data[el.data.length - 1].text")
    assert hover == [
        "bookstore-split: changed outside Meshboard by setup: bookstore-v1 100, bookstore-v2 0",
        "bookstore-split: olga set bookstore-v1 90, bookstore-v2 10 in Meshboard",
        "bookstore-split: changed outside Meshboard by kubectl-edit: bookstore-v1 60, bookstore-v2 40",
    ]
    for other in ("success", "latency", "tcp"):  # every chart of the page marks them
        expect(page.locator(f'.chart[data-chart="{other}"]')).to_have_attribute("data-markers", "3")
    screenshot(page, "service-weight-markers")

    series = json.loads(
        page.evaluate(f"fetch({json.dumps(chart.get_attribute('data-series-url'))}).then(r => r.text())")
    )
    assert [m["outside"] for m in series["markers"]] == [True, False, True]
    now = datetime.now(UTC).timestamp()
    assert all(series["start"] <= m["at"] <= now for m in series["markers"])
    assert not page.errors, page.errors
