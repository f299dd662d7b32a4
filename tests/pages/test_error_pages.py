"""Our own 403, 404 and 500 pages: what happened, where to go, and (403) the role a refused action needs; a 403 is
one line in the log, never a traceback."""

from __future__ import annotations

import logging
import re

import pytest
from django.test import RequestFactory
from django.views.defaults import server_error

from apps.canary.models import WeightChange
from tests.helpers import set_bookstore_backends

EDITOR = "/splits/bookstore/bookstore-split/"


@pytest.fixture
def split_at_v1(bookstore, kubeapi):
    from apps.mesh.services import collect_and_record

    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    from apps.mesh.models import TrafficSplit

    return TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")


def _weight_change(split) -> dict[str, str]:
    return {
        "resource_version": split.resource_version,
        "action": "apply",
        "backend_0": "bookstore-v1",
        "weight_0": "50",
        "backend_1": "bookstore-v2",
        "weight_1": "50",
    }


def test_it_names_the_operator_role_when_a_viewer_posts_a_weight_change(client, viewer, split_at_v1, caplog):
    client.force_login(viewer)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.post(EDITOR, _weight_change(split_at_v1))

    assert response.status_code == 403
    html = response.content.decode()
    assert 'data-role-needed="operator"' in html and "This needs the <strong>operator</strong> role" in html
    assert "vera (viewer) may not change weights" in html  # what happened, in the refusal's own words
    assert '<a href="/">the overview</a>' in html  # where to go
    assert '<html lang="en"' in html and "css/meshboard.css" in html  # the site's layout, not Django's bare page
    assert WeightChange.objects.get().result == "forbidden"  # still audited

    forbidden = [r for r in caplog.records if r.name == "django.request" and getattr(r, "status_code", 0) == 403]
    assert len(forbidden) == 1
    line = caplog.text.strip().splitlines()
    record = forbidden[0]
    assert record.exc_info is None and record.exc_text is None
    message = record.getMessage()
    assert "\n" not in message and "Traceback" not in caplog.text
    assert message.startswith("Forbidden: POST '/splits/bookstore/bookstore-split/' user='vera'")
    assert "only operators may" in message
    assert len([t for t in line if "Forbidden" in t]) == 1


def test_it_names_the_viewer_role_to_a_user_without_one(client, nobody, bookstore):
    client.force_login(nobody)
    response = client.get("/splits/")
    assert response.status_code == 403
    html = response.content.decode()
    assert 'data-role-needed="viewer"' in html and "you are signed in as nora" in html


def test_it_answers_an_unknown_url_with_its_own_404_page(client, viewer, bookstore):
    client.force_login(viewer)
    response = client.get("/no/such/<page>/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Not found" in html and "data-not-found" in html
    assert "<code>/no/such/%3Cpage%3E/</code>" in html and "<page>" not in html  # the path, quoted
    assert '<a href="/">the overview</a>' in html and 'href="/graph/"' in html
    assert "Resolver404" not in html and "Django" not in html
    assert 'aria-label="Main"' in html  # the navigation is there: one click back to any page


def test_it_says_which_service_is_missing_on_an_unknown_service(client, viewer, bookstore):
    client.force_login(viewer)
    response = client.get("/services/bookstore/no-such-service/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "No Service <strong>bookstore/no-such-service</strong> in the latest snapshot of cluster lab" in html
    assert 'aria-label="Breadcrumb"' in html


def test_it_renders_the_500_page_without_any_context(db):
    # Django's handler500 renders 500.html with no context processors and no request context: called as Django calls it.
    request = RequestFactory().get("/services/bookstore/bookstore/")
    response = server_error(request)
    assert response.status_code == 500
    html = response.content.decode()
    assert "Server error" in html and "data-server-error" in html
    assert "Nothing was changed by it" in html and '<a href="/">the overview</a>' in html
    assert "/static/css/meshboard.css?v=" in html and re.search(r"icons.svg\?v=[0-9a-f]{12}#triangle-alert", html)
