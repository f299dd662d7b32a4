"""Who may see the graph: viewer and operator yes, a user without a role no, anonymous to the login page."""

from __future__ import annotations

import re

import pytest

PAGE, DATA = "/graph/", "/graph/data"


@pytest.mark.parametrize("persona", ["viewer", "operator"])
def test_it_shows_the_page_and_data_to_viewers_and_operators(client, mesh, persona, request):
    client.force_login(request.getfixturevalue(persona))
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="graph-config"' in html
    assert re.search(r'<script src="/static/vendor/cytoscape/cytoscape.min.js\?v=[0-9a-f]{12}" defer></script>', html)
    assert 'aria-current="page">Graph</a>' in html
    assert client.get(DATA).status_code == 200


def test_it_refuses_a_user_without_a_role(client, mesh, nobody):
    client.force_login(nobody)
    assert client.get(PAGE).status_code == 403
    assert client.get(DATA).status_code == 403


def test_it_sends_anonymous_users_to_log_in(client, mesh):
    for url in (PAGE, DATA):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_it_keeps_filters_in_the_form_and_cluster_data_out_of_inline_script(client, viewer, mesh):
    client.force_login(viewer)
    html = client.get(PAGE, {"ns": ["bookstore"], "find": '"><script>x</script>', "hide": "!mtls"}).content.decode()
    assert '<option value="bookstore" selected>' in html
    assert 'value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in html
    assert "<script>x</script>" not in html
    assert html.count("<script>") == 0  # only src= scripts and the json_script block
    assert '<script id="graph-config" type="application/json">' in html
