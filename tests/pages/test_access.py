"""Every page asks for a login; a role decides what a logged-in user may see."""

from __future__ import annotations

import pytest

from tests.helpers import bookstore_split

PAGES = ["/", "/services/bookstore/bookstore/", "/splits/", "/mesh/"]
# Not pages of the menu, but behind the same login and role: the chart data, the change log, the weight editor.
ENDPOINTS = ["/services/bookstore/bookstore/series?window=1h", "/splits/audit/", "/splits/bookstore/bookstore-split/"]
EDITOR = "/splits/bookstore/bookstore-split/"


@pytest.mark.parametrize("path", PAGES + ENDPOINTS)
def test_it_sends_anonymous_users_to_login(client, bookstore, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", PAGES + ENDPOINTS)
def test_it_refuses_users_without_a_role(client, nobody, bookstore, path):
    client.force_login(nobody)
    assert client.get(path).status_code == 403


def test_it_changes_no_weights_for_anonymous_users_or_users_without_a_role(
    client, nobody, operator, bookstore, kubeapi
):
    before = bookstore_split(kubeapi)
    # What an operator would post to move half the traffic to bookstore-v2, at the split's current version.
    change = {
        "resource_version": before["metadata"]["resourceVersion"],
        "action": "apply",
        "backend_0": "bookstore-v1",
        "weight_0": "50",
        "backend_1": "bookstore-v2",
        "weight_1": "50",
    }

    anonymous = client.post(EDITOR, change)
    client.force_login(nobody)
    role_less = client.post(EDITOR, change)

    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/?next=")
    assert role_less.status_code == 403
    after = bookstore_split(kubeapi)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    # The same post from an operator changes the split: the refusals above were for the user, not for the data.
    client.force_login(operator)
    assert client.post(EDITOR, change).status_code == 302
    assert bookstore_split(kubeapi)["spec"]["backends"][1] == {"service": "bookstore-v2", "weight": 50}


@pytest.mark.parametrize("path", PAGES)
def test_it_shows_every_page_to_viewers_and_operators(client, viewer, operator, bookstore, path):
    for user in (viewer, operator):
        client.force_login(user)
        response = client.get(path)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response["Content-Security-Policy"]
        assert "unsafe-eval" not in response["Content-Security-Policy"]


def test_it_names_the_role_in_the_header(client, viewer, operator, bookstore):
    client.force_login(viewer)
    assert "vera · viewer" in client.get("/").content.decode()
    client.force_login(operator)
    assert "otto · operator" in client.get("/").content.decode()


def test_it_answers_404_for_a_service_not_in_the_snapshot(client, viewer, bookstore):
    client.force_login(viewer)
    assert client.get("/services/bookstore/nope/").status_code == 404
