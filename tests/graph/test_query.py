"""The find/hide language: terms, combinations, unknown values, and errors a person can act on."""

from __future__ import annotations

import pytest

from apps.graph.query import QueryError, parse

NODE = {
    "group": "nodes",
    "kind": "service",
    "namespace": "bookstore",
    "name": "bookstore-v2",
    "split": "backend",
    "sidecars": "all",
    "health": "failing",
    "rps": 10.0,
    "error": 0.2,
    "success": 0.8,
    "p99_ms": 60.0,
}
EDGE = {
    "group": "edges",
    "kind": "traffic",
    "lock": "plain",
    "source_namespace": "legacy",
    "source_name": "loadgen",
    "source_kind": "workload",
    "target_namespace": "bookstore",
    "target_name": "bookstore",
    "target_kind": "service",
    "rps": 2.0,
    "error": 0.0,
    "p99_ms": None,
    "denied_rps": 0.5,
}
BLANK = {"group": "nodes", "kind": "unknown", "namespace": "x", "name": "y", "rps": None, "error": None}


@pytest.mark.parametrize(
    ("expression", "node", "edge"),
    [
        ("rps>10", False, False),
        ("rps>=10", True, False),
        ("rps<5", False, True),
        ("error>1%", True, False),
        ("error>1", True, False),
        ("error>=0%", True, True),
        ("success<90%", True, False),
        ("p99>50ms", True, False),
        ("latency<=60", True, False),
        ("mtls", True, False),
        ("!mtls", False, True),
        ("not mtls", False, True),
        ("unmeshed", False, True),
        ("ns=bookstore", True, True),  # an edge matches on either end
        ("ns=legacy", False, True),
        ("ns!=bookstore", False, False),
        ("NS=Book*", True, True),
        ("name=bookstore-v?", True, False),
        ("health=failing", True, False),
        ("failing", True, False),
        ("backend", True, False),
        ("root", False, False),
        ("workload", False, False),
        ("denied", False, True),
        ("unknown", False, False),
        ("kind=traffic", False, True),
        ("rps>1 error>1%", True, False),
        ("rps>1 and error>1%", True, False),
        ("rps>1, !mtls", False, True),
        ("rps>1 && !mtls", False, True),
        ("error>1% or !mtls", True, True),
        ("error>1% || denied", True, True),
        ("!(ns=bookstore or ns=legacy)", False, False),
        ("(rps>5 or denied) ns=bookstore", True, True),
        ("not (rps>5 and mtls)", False, True),
    ],
)
def test_it_matches_nodes_and_edges(expression, node, edge):
    predicate = parse(expression)
    assert predicate(NODE) is node
    assert predicate(EDGE) is edge


def test_it_never_matches_unknown_values_in_comparisons():
    for expression in ("rps<1", "rps>=0", "error<1%", "p99<1000"):
        assert parse(expression)(BLANK) is False
    assert parse("unknown")(BLANK) is True
    assert parse("!(rps>=0)")(BLANK) is True


def test_it_treats_a_blank_expression_as_nothing():
    assert parse("") is None
    assert parse("   ") is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rps>", "needs a value after >"),
        ("rps", "rps at character 1 needs a comparison, e.g. rps>10"),
        ("rps>ten", "rps needs a number at character 1, not 'ten'"),
        ("error>1%%", "error needs a number"),
        ("cpu>1", "unknown field 'cpu' at character 1"),
        ("mtsl", "unknown word 'mtsl' at character 1"),
        ("ns>bookstore", "ns at character 1 takes = or !=, not >"),
        ("(rps>1", "missing ')' for the '(' at character 1"),
        ("rps>1)", "unexpected ')' at character 6"),
        ("rps>1 or", "ends too early"),
        ("!", "ends too early"),
        ("or rps>1", "unexpected 'or' at character 1"),
        ("rps>1 @ error>1", "cannot read '@ error>1' at character 7"),
        ("<script>", "cannot read '<script>' at character 1"),
        ("x" * 501, "longer than 500 characters"),
    ],
)
def test_it_explains_what_is_wrong_with_a_bad_expression(expression, message):
    with pytest.raises(QueryError) as caught:
        parse(expression)
    assert message in str(caught.value)
