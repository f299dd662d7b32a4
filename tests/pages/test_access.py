"""Every page asks for a login; a role decides what a logged-in user may see."""

from __future__ import annotations

import pytest

PAGES = ["/", "/services/bookstore/bookstore/", "/splits/", "/mesh/"]


@pytest.mark.parametrize("path", PAGES)
def test_it_sends_anonymous_users_to_login(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("path", PAGES)
def test_it_refuses_users_without_a_role(client, nobody, bookstore, path):
    client.force_login(nobody)
    assert client.get(path).status_code == 403


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
