"""OSM's regexes against Istio's string forms: the `pathRegex` and header rows of the mapping, exact, narrower and
manual, and where Python's `re` stands in for RE2."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.policies.regex import (
    BROADER,
    EXACT,
    HEADER,
    MANUAL,
    NARROWER,
    PATH,
    full_match,
    istio_match,
    outside,
    re2_problem,
    samples,
    translate,
    worst,
)


@pytest.mark.parametrize(
    ("regex", "values", "not_values"),
    [
        ("/books-bought", ("/books-bought",), ()),
        ("^/books-bought$", ("/books-bought",), ()),
        ("/books\\.json", ("/books.json",), ()),
        ("(/a|/b)", ("/a", "/b"), ()),
        ("/v[12]/items", ("/v1/items", "/v2/items"), ()),
        ("/api/.*", ("/api/*",), ()),
        ("^/api/v[12]/.*$", ("/api/v1/*", "/api/v2/*"), ()),
        (".*/info", ("*/info",), ()),
        ("/a.+", ("/a*",), ("/a",)),
    ],
)
def test_it_translates_literal_prefix_and_suffix_paths_exactly(regex, values, not_values):
    t = translate(regex, PATH)
    assert (t.level, t.values, t.not_values) == (EXACT, values, not_values)
    assert t.example is None


@pytest.mark.parametrize("regex", ["", ".*", ".+", "/a|.*"])
def test_it_leaves_paths_out_for_a_regex_matching_every_path(regex):
    t = translate(regex, PATH)
    assert t.any and t.level == EXACT


def test_it_takes_the_nearest_narrower_form_for_the_demo_regex_and_says_so():
    t = translate(".*a-book.*new", PATH)
    assert t.level == NARROWER
    assert t.values == ("*a-book/new",)
    assert full_match(".*a-book.*new", t.example) and not t.istio_matches(t.example)
    assert "`*new`" in t.reason  # the broader alternative is named, not taken
    assert t.istio_matches("/buy-a-book/new")  # what the demo's bookbuyer calls


@pytest.mark.parametrize(
    ("regex", "form", "broader"),
    [
        ("/books/[0-9]+", "/books/0", "/books/*"),
        ("/api/.*/items", "/api/x/items", "/api/*"),
        ("(?i)/abc", "/abc", "any value"),
    ],
)
def test_it_never_guesses_a_regex_istio_cannot_say(regex, form, broader):
    t = translate(regex, PATH)
    assert t.level == NARROWER
    assert t.values == (form,)
    assert f"`{broader}`" in t.reason
    assert t.example is not None and full_match(regex, t.example) and not t.istio_matches(t.example)
    # narrower: every value Istio matches, OSM matches too
    assert all(full_match(regex, v) for v in samples(regex) if t.istio_matches(v))


@pytest.mark.parametrize(
    ("regex", "why"),
    [
        ("(?=/a)/a", "RE2 refuses"),
        ("/(a)\\1", "RE2 refuses"),
        ("/a++", "RE2 refuses"),
        ("/x{2000}", "RE2 refuses"),
        ("[[:alpha:]]+", "Python's re does not"),
        ("/\\pL+", "Python's re does not"),
        ("/[", "not a valid regular expression"),
    ],
)
def test_it_calls_what_re2_and_python_read_differently_manual(regex, why):
    t = translate(regex, PATH)
    assert t.level == MANUAL and t.matches_nothing
    assert why in t.reason
    assert why in re2_problem(regex)


def test_it_generates_nothing_for_a_path_regex_no_request_path_matches():
    t = translate("books", PATH)  # no leading slash: Envoy's full match never matches a path
    assert t.level == EXACT and t.matches_nothing


@pytest.mark.parametrize(
    ("regex", "values", "level"),
    [
        ("bookbuyer", ("bookbuyer",), EXACT),
        ("v[0-9]", tuple(f"v{i}" for i in range(10)), EXACT),
        ("Go-.*", ("Go-*",), EXACT),
        (".*-client", ("*-client",), EXACT),
        (".+", ("*",), EXACT),
        (".*", ("*",), NARROWER),  # OSM also matches a present, empty value; Istio's presence match does not
        (".*-http-client/*.*", ("*-http-client",), NARROWER),
    ],
)
def test_it_translates_header_values(regex, values, level):
    t = translate(regex, HEADER)
    assert (t.values, t.level) == (values, level)


def test_it_gives_an_example_header_value_treated_differently():
    t = translate(".*-http-client/*.*", HEADER)
    assert t.example == "x-http-client/x"
    assert full_match(".*-http-client/*.*", "Go-http-client/1.1") and not t.istio_matches("Go-http-client/1.1")


def test_it_matches_like_re2_on_ascii_classes_and_whole_values():
    assert full_match("\\d+", "123") and not full_match("\\d+", "\u0663")  # RE2's \d is ASCII
    assert not full_match("/a", "/a/b")  # whole value, not a search
    assert not full_match("/a", None)  # a missing header never matches


@pytest.mark.parametrize(
    ("form", "value", "expected"),
    [
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("abc*", "abc", True),
        ("abc*", "abcd", True),
        ("*abc", "xabc", True),
        ("*abc", "abcx", False),
        ("*", "x", True),
        ("*", "", False),
        ("*", None, False),
    ],
)
def test_it_matches_istio_string_forms(form, value, expected):
    # Istio's Rule: "Exact match: abc will match on value abc. Prefix match: abc* will match on value abc and abcd.
    # Suffix match: *abc will match on value abc and xabc. Presence match: * will match when value is not empty."
    assert istio_match(form, value) is expected


def test_it_samples_inside_and_just_outside_a_regex():
    regex = "/books/[0-9]+"
    assert samples(regex) and all(full_match(regex, v) and v.startswith("/") for v in samples(regex))
    assert outside(regex) and not any(full_match(regex, v) for v in outside(regex))


def test_it_orders_levels_and_calls_narrower_with_broader_manual():
    assert worst([EXACT, NARROWER]) == NARROWER
    assert worst([EXACT, BROADER]) == BROADER
    assert worst([NARROWER, BROADER]) == MANUAL
    assert worst([]) == EXACT


@given(st.text(alphabet="abcxyz019-_./~", min_size=0, max_size=12))
def test_it_translates_any_literal_path_exactly(text):
    path = "/" + text
    t = translate(re.escape(path), PATH)
    assert t.level == EXACT
    assert t.values == (path,)
    assert t.istio_matches(path) and not t.istio_matches(path + "x")
