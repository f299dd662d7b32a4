"""Paged lists (`limit` + `continue`) and `resourceVersion=0`, against the shapes the API concepts page documents
("Retrieving large results sets in chunks", "Resource versions") and recorded/*.json: every chunk reads the revision
of the first, a compacted revision gives 410 Expired with a token to go on inconsistently, the watch cache (rv=0)
ignores `limit`."""

from __future__ import annotations

from urllib.parse import quote

from .conftest import assert_loosely_same_message, load_recorded, raw

SVC = "/api/v1/namespaces/demo/services"
TS = "/apis/split.smi-spec.io/v1alpha2/namespaces/demo/trafficsplits"


def _names(body: dict) -> list[str]:
    return [i["metadata"]["name"] for i in body["items"]]


def _new_service(server, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 81}]}}
    assert raw(server, "POST", SVC, body).status == 201


def test_it_answers_chunks_in_the_recorded_shape(server):
    first_want = load_recorded("list_builtin_first_chunk")["response"]
    last_want = load_recorded("list_builtin_last_chunk")["response"]

    first = raw(server, "GET", f"{SVC}?limit=2").body
    last = raw(server, "GET", f"{SVC}?limit=2&continue={quote(first['metadata']['continue'])}").body

    assert set(first["metadata"]) == set(first_want["metadata"])
    assert first["metadata"]["remainingItemCount"] == 1 and len(first["items"]) == 2
    assert set(last["metadata"]) == set(last_want["metadata"])  # no continue, no remainingItemCount
    assert last["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert _names(first) + _names(last) == ["db", "web", "web-v1"]


def test_it_serves_every_chunk_from_the_revision_of_the_first(server):
    first = raw(server, "GET", f"{SVC}?limit=1").body
    _new_service(server, "zz-new")
    raw(server, "DELETE", f"{SVC}/web-v1")

    rest, token = [], first["metadata"]["continue"]
    while token:
        page = raw(server, "GET", f"{SVC}?limit=1&continue={quote(token)}").body
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        rest += _names(page)
        token = page["metadata"].get("continue")

    assert _names(first) + rest == ["db", "web", "web-v1"]  # not zz-new; web-v1 as it was
    assert _names(raw(server, "GET", SVC).body) == ["db", "web", "zz-new"]


def test_it_answers_410_expired_with_an_inconsistent_token_once_the_revision_is_compacted(server):
    want = load_recorded("expired_continue")
    first = raw(server, "GET", f"{SVC}?limit=1").body
    _new_service(server, "zz-new")
    server.store.compact()

    reply = raw(server, "GET", f"{SVC}?limit=1&continue={quote(first['metadata']['continue'])}")

    assert reply.status == want["code"] == 410
    body, recorded = reply.body, want["response"]
    assert set(body) == set(recorded)
    for key in ("kind", "apiVersion", "status", "reason", "code"):
        assert body[key] == recorded[key], key
    assert set(body["metadata"]) == {"continue"} and body["metadata"]["continue"]
    assert_loosely_same_message(body["message"], recorded["message"])
    # The token it gives goes on after the last item served, from the current state: zz-new shows up.
    rest = raw(server, "GET", f"{SVC}?limit=10&continue={quote(body['metadata']['continue'])}").body
    assert _names(rest) == ["web", "web-v1", "zz-new"]


def test_it_serves_resource_version_0_whole_from_the_watch_cache_whatever_the_limit(server):
    body = raw(server, "GET", f"{SVC}?limit=1&resourceVersion=0").body
    assert _names(body) == ["db", "web", "web-v1"]
    assert set(body["metadata"]) == {"resourceVersion"}


def test_it_leaves_remaining_item_count_unset_with_a_selector(server):
    body = raw(server, "GET", f"{SVC}?limit=1&labelSelector=app%3Dweb").body
    assert _names(body) == ["web"] and body["metadata"]["continue"]
    assert "remainingItemCount" not in body["metadata"]


def test_it_refuses_a_resource_version_with_a_continue_token_and_a_token_it_did_not_make(server):
    token = raw(server, "GET", f"{SVC}?limit=1").body["metadata"]["continue"]
    both = raw(server, "GET", f"{SVC}?limit=1&resourceVersion=0&continue={quote(token)}")
    assert (both.status, both.body["reason"]) == (400, "BadRequest")
    assert "resource version is not allowed when using continue" in both.body["message"]
    forged = raw(server, "GET", f"{SVC}?limit=1&continue=not-a-token")
    assert (forged.status, forged.body["reason"]) == (400, "BadRequest")
    bad_limit = raw(server, "GET", f"{SVC}?limit=many")
    assert bad_limit.status == 400


def test_it_pages_custom_resources_with_an_empty_continue_on_the_last_chunk(server):
    body = raw(server, "GET", f"{TS}?limit=1").body
    assert body["metadata"]["continue"] == ""  # one split: nothing more, and CR lists always carry the key


def test_it_pages_through_the_official_client(core):
    first = core.list_namespaced_service("demo", limit=2)
    rest = core.list_namespaced_service("demo", limit=2, _continue=first.metadata.var_continue)
    assert first.metadata.remaining_item_count == 1
    assert [s.metadata.name for s in first.items + rest.items] == ["db", "web", "web-v1"]
    assert rest.metadata.var_continue is None
    cached = core.list_namespaced_service("demo", limit=1, resource_version="0")
    assert len(cached.items) == 3
