"""The colour scheme toggle over HTTP: kept per user, written on <html> by the server, safe with what it is sent."""

from __future__ import annotations

import json


def test_it_keeps_the_choice_for_the_user_and_draws_every_page_in_it(client, viewer, operator, bookstore):
    client.force_login(viewer)
    assert '<html lang="en">' in client.get("/splits/").content.decode()  # never chosen: the system's scheme

    answer = client.post("/theme", {"theme": "dark", "next": "/splits/?window=1h"})

    assert (answer.status_code, answer["Location"]) == (302, "/splits/?window=1h")
    assert '<html lang="en" data-theme="dark">' in client.get("/").content.decode()
    page = client.get("/policies/").content.decode()
    assert 'value="dark" aria-pressed="true"' in page and 'value="light" aria-pressed="false"' in page
    client.force_login(operator)  # another user: still the system's
    assert '<html lang="en">' in client.get("/").content.decode()


def test_it_answers_htmx_with_an_event_and_no_page(client, viewer, bookstore):
    client.force_login(viewer)
    answer = client.post("/theme", {"theme": "light"}, headers={"HX-Request": "true"})
    assert answer.status_code == 204 and answer.content == b""
    assert json.loads(answer["HX-Trigger"]) == {"mb:theme": {"theme": "light"}}
    assert 'data-theme="light"' in client.get("/").content.decode()


def test_it_refuses_unknown_schemes_and_redirects_only_to_this_site(client, viewer, bookstore):
    client.force_login(viewer)
    assert client.post("/theme", {"theme": "<script>"}).status_code == 400
    assert client.post("/theme", {"theme": "dark", "next": "https://evil.example/"})["Location"] == "/"
    assert client.post("/theme", {"theme": "dark", "next": "//evil.example/"})["Location"] == "/"
    assert client.get("/theme").status_code == 405


def test_it_asks_anonymous_users_to_log_in_and_shows_them_the_systems_scheme(client, bookstore):
    assert client.post("/theme", {"theme": "dark"})["Location"].startswith("/accounts/login/")
    assert '<html lang="en">' in client.get("/accounts/login/").content.decode()
