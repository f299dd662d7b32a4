"""Kubernetes' naming rules (apps.mesh.names) and the links built only from names that follow them."""

from __future__ import annotations

import pytest
from django.template import Context, Template, TemplateSyntaxError
from hypothesis import given
from hypothesis import strategies as st

from apps.mesh.names import is_dns_label, is_dns_subdomain, name_problem, object_url

LABELS = ["a", "bookstore", "bookstore-v1", "1abc", "a" * 63, "0"]
NOT_LABELS = ["", "A", "Bookstore", "a.b", "a/b", "-a", "a-", "a_b", "..", ".", "a" * 64, "é", " a", "a\n", None, 7]
# As IsDNS1123Subdomain: 253 characters in all, and no limit on one label's length (a 64-character name passes).
SUBDOMAINS = ["a", "a.b", "bookstore-split", "a-1.b-2.c", "a" * 64, "a" * 253, ".".join(["a" * 63] * 3) + ".b"]
NOT_SUBDOMAINS = ["", "a..b", ".a", "a.", "a/b", "A.b", "a" * 254, ".".join(["a" * 63] * 4), "a_b", None]


@pytest.mark.parametrize("value", LABELS)
def test_it_accepts_dns_labels(value):
    assert is_dns_label(value) and is_dns_subdomain(value)


@pytest.mark.parametrize("value", NOT_LABELS)
def test_it_refuses_what_is_no_dns_label(value):
    assert not is_dns_label(value)


@pytest.mark.parametrize("value", SUBDOMAINS)
def test_it_accepts_dns_subdomains(value):
    assert is_dns_subdomain(value)


@pytest.mark.parametrize("value", NOT_SUBDOMAINS)
def test_it_refuses_what_is_no_dns_subdomain(value):
    assert not is_dns_subdomain(value)


@given(st.text(max_size=80))
def test_it_never_lets_a_path_character_through(value):
    """Whatever passes a rule is safe in a path segment: no '/', no '..', no '%', nothing to escape."""
    if is_dns_subdomain(value):
        assert value and ".." not in value and set(value) <= set("abcdefghijklmnopqrstuvwxyz0123456789-.")
        assert not value.startswith(".") and not value.endswith(".")


def test_it_names_the_rule_that_failed():
    assert name_problem("Service", "bookstore", "bookstore-v1") == ""
    assert name_problem("Service", "bookstore", "a/b") == "not a valid Service name"
    assert name_problem("Service", "Book/Store", "bookstore") == "not a valid namespace name"
    assert name_problem("TrafficSplit", "bookstore", "bookstore.split") == ""
    assert name_problem("Service", "bookstore", "bookstore.split") == "not a valid Service name"
    assert name_problem("Pod", "bookstore", "bookstore") == "not a valid Pod name"  # a kind with no page


def test_it_builds_urls_only_from_valid_names():
    assert object_url("overview:detail", "Service", "bookstore", "bookstore-v1") == "/services/bookstore/bookstore-v1/"
    assert object_url("canary:edit", "TrafficSplit", "bookstore", "a.b") == "/splits/bookstore/a.b/"
    for namespace, name in (("bookstore", "a/b"), ("bookstore", ""), ("bookstore", ".."), ("", "bookstore")):
        assert object_url("overview:detail", "Service", namespace, name) == ""


def _render(source: str, **context: object) -> str:
    return Template("{% load object_links %}" + source).render(Context(context))


def test_it_links_a_valid_name():
    html = _render(
        '{% object_link "overview:detail" "Service" ns name %}{{ name }}{% endobject_link %}',
        ns="bookstore",
        name="bookstore-v1",
    )
    assert html == '<a href="/services/bookstore/bookstore-v1/">bookstore-v1</a>'


def test_it_shows_an_invalid_name_as_escaped_text_with_a_note():
    html = _render(
        '{% object_link "overview:detail" "Service" ns name note="OSM cannot route to it" %}{{ name }}'
        "{% endobject_link %}",
        ns="bookstore",
        name="<b>a/b</b>",
    )
    assert html == (
        '<span class="inert">&lt;b&gt;a/b&lt;/b&gt;</span> '
        '<small class="inert-note">not a valid Service name: OSM cannot route to it</small>'
    )
    assert "no page" in _render('{% object_link "overview:detail" "Service" "bookstore" "" %}x{% endobject_link %}')


def test_it_gives_an_empty_url_for_an_invalid_name():
    source = '{% object_url "overview:series" "Service" ns name as url %}[{{ url }}]'
    assert _render(source, ns="bookstore", name="bookstore") == "[/services/bookstore/bookstore/series]"
    assert _render(source, ns="bookstore", name="..") == "[]"


def test_it_refuses_a_link_tag_without_its_four_arguments():
    with pytest.raises(TemplateSyntaxError):
        _render('{% object_link "overview:detail" "Service" ns %}x{% endobject_link %}')
    with pytest.raises(TemplateSyntaxError):
        _render('{% object_link "overview:detail" "Service" ns name title="x" %}x{% endobject_link %}')
