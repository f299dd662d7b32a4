"""The stand-in against real-apiserver shapes recorded by hand in recorded/*.json (never generated from the stand-in).

Each case provokes the same situation over raw HTTP and through the official client, then compares code, reason,
details and structure, and message text only loosely.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

import pytest
from kubernetes import client

from .conftest import assert_status_like, load_recorded, raw

TS = "/apis/split.smi-spec.io/v1alpha2/namespaces/demo/trafficsplits"


def _ts_rv(server) -> str:
    return raw(server, "GET", f"{TS}/web-split").body["metadata"]["resourceVersion"]


def _not_found_object(server):
    return raw(server, "GET", "/api/v1/namespaces/demo/services/nope")


def _not_found_custom_resource(server):
    return raw(server, "GET", f"{TS}/nope")


def _not_found_resource(server):
    return raw(server, "GET", "/api/v1/namespaces/demo/widgets")


def _already_exists(server):
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 1}]}}
    return raw(server, "POST", "/api/v1/namespaces/demo/services", body)


def _conflict(server):
    patch = {"metadata": {"resourceVersion": "1"}, "spec": {"service": "web"}}
    return raw(server, "PATCH", f"{TS}/web-split", patch, "application/merge-patch+json")


def _invalid_put_without_rv(server):
    obj = raw(server, "GET", f"{TS}/web-split").body
    del obj["metadata"]["resourceVersion"]
    return raw(server, "PUT", f"{TS}/web-split", obj)


def _unsupported_media_type(server):
    return raw(server, "PATCH", f"{TS}/web-split", {"spec": {}}, "application/strategic-merge-patch+json")


def _namespace_mismatch(server):
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "other"}}
    return raw(server, "POST", "/api/v1/namespaces/demo/services", body)


def _forbidden(server):
    server.faults.add(r"^/api/v1/namespaces/demo/services$", 403, verb="list", user="system:serviceaccount:ns:sa")
    return raw(server, "GET", "/api/v1/namespaces/demo/services")


def _unauthorized(server):
    server.faults.add(r"/services", 401)
    return raw(server, "GET", "/api/v1/namespaces/demo/services")


def _delete_success(server):
    # Endpoints, like ConfigMaps in the recording, have no ReturnDeletedObject.
    return raw(server, "DELETE", "/api/v1/namespaces/demo/endpoints/web")


STATUS_CASES: dict[str, Callable] = {
    "not_found_object": _not_found_object,
    "not_found_custom_resource": _not_found_custom_resource,
    "not_found_resource": _not_found_resource,
    "already_exists": _already_exists,
    "conflict": _conflict,
    "invalid_custom_resource_put_without_rv": _invalid_put_without_rv,
    "unsupported_media_type_custom_resource": _unsupported_media_type,
    "bad_request_namespace_mismatch": _namespace_mismatch,
    "forbidden": _forbidden,
    "unauthorized": _unauthorized,
}


@pytest.mark.parametrize("name", sorted(STATUS_CASES))
def test_it_answers_with_the_recorded_status_shape(server, name):
    recorded = load_recorded(name)
    reply = STATUS_CASES[name](server)
    assert reply.status == recorded["code"]
    assert reply.headers["Content-Type"] == "application/json"
    assert_status_like(reply.body, recorded["response"])


def test_it_answers_a_delete_without_returned_object_with_the_recorded_success_status(server):
    recorded = load_recorded("delete_success")["response"]
    reply = _delete_success(server)
    assert reply.status == 200
    assert set(reply.body) == set(recorded)
    assert reply.body["status"] == "Success"
    assert set(reply.body["details"]) == set(recorded["details"])
    assert reply.body["details"]["kind"] == "endpoints"


CLIENT_CASES = {
    "not_found_object": lambda c: c["core"].read_namespaced_service("nope", "demo"),
    "not_found_custom_resource": lambda c: c["custom"].get_namespaced_custom_object(
        "split.smi-spec.io", "v1alpha2", "demo", "trafficsplits", "nope"
    ),
    "already_exists": lambda c: c["core"].create_namespaced_service(
        "demo", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 1}]}}
    ),
    "conflict": lambda c: c["custom"].patch_namespaced_custom_object(
        "split.smi-spec.io", "v1alpha2", "demo", "trafficsplits", "web-split", {"metadata": {"resourceVersion": "1"}}
    ),
    "invalid_custom_resource_put_without_rv": lambda c: c["custom"].replace_namespaced_custom_object(
        "split.smi-spec.io",
        "v1alpha2",
        "demo",
        "trafficsplits",
        "web-split",
        {
            "apiVersion": "split.smi-spec.io/v1alpha2",
            "kind": "TrafficSplit",
            "metadata": {"name": "web-split"},
            "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": 100}]},
        },
    ),
    "unsupported_media_type_custom_resource": lambda c: c["custom"].patch_namespaced_custom_object(
        "split.smi-spec.io",
        "v1alpha2",
        "demo",
        "trafficsplits",
        "web-split",
        {"spec": {}},
        _content_type="application/strategic-merge-patch+json",
    ),
    "bad_request_namespace_mismatch": lambda c: c["core"].create_namespaced_service(
        "demo", {"metadata": {"name": "x", "namespace": "other"}}
    ),
}


@pytest.mark.parametrize("name", sorted(CLIENT_CASES))
def test_it_raises_the_recorded_status_through_the_official_client(core, custom, name):
    recorded = load_recorded(name)
    with pytest.raises(client.ApiException) as caught:
        CLIENT_CASES[name]({"core": core, "custom": custom})
    assert caught.value.status == recorded["code"]
    assert_status_like(json.loads(caught.value.body), recorded["response"])


def test_it_lists_built_ins_in_the_recorded_shape(server):
    recorded = load_recorded("list_builtin")["response"]
    body = raw(server, "GET", "/api/v1/namespaces/demo/services").body
    assert set(body) == set(recorded)
    assert (body["kind"], body["apiVersion"]) == (recorded["kind"], recorded["apiVersion"])
    assert set(body["metadata"]) == set(recorded["metadata"])
    assert int(body["metadata"]["resourceVersion"]) > 0
    for item in body["items"]:
        assert "kind" not in item and "apiVersion" not in item
        assert set(recorded["items"][0]["metadata"]) <= set(item["metadata"])


def test_it_lists_custom_resources_in_the_recorded_shape(server):
    recorded = load_recorded("list_custom_resource")["response"]
    body = raw(server, "GET", TS).body
    assert set(body) == set(recorded)
    assert (body["kind"], body["apiVersion"]) == (recorded["kind"], recorded["apiVersion"])
    assert body["metadata"]["continue"] == ""
    assert set(body["metadata"]) == set(recorded["metadata"])
    item, want = body["items"][0], recorded["items"][0]
    assert (item["kind"], item["apiVersion"]) == (want["kind"], want["apiVersion"])
    assert set(want["metadata"]) <= set(item["metadata"])
    assert item["metadata"]["creationTimestamp"].endswith("Z")


def _open_watch(server, query: str, path: str = "/api/v1/namespaces/demo/services"):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", f"{path}?watch=true&{query}")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    return conn, response


def test_it_streams_modified_events_in_the_recorded_shape(server):
    recorded = load_recorded("watch_event_modified")["response"]
    rv = raw(server, "GET", "/api/v1/namespaces/demo/services").body["metadata"]["resourceVersion"]
    conn, response = _open_watch(server, f"resourceVersion={rv}&timeoutSeconds=5")
    raw(
        server,
        "PATCH",
        "/api/v1/namespaces/demo/services/web",
        {"metadata": {"labels": {"x": "1"}}},
        "application/merge-patch+json",
    )
    event = json.loads(response.readline())
    conn.close()
    assert set(event) == set(recorded)
    assert event["type"] == "MODIFIED"
    assert (event["object"]["kind"], event["object"]["apiVersion"]) == ("Service", "v1")
    assert set(recorded["object"]["metadata"]) <= set(event["object"]["metadata"])


def test_it_sends_bookmarks_in_the_recorded_shape(server):
    recorded = load_recorded("watch_bookmark")["response"]
    rv = raw(server, "GET", "/api/v1/namespaces/demo/services").body["metadata"]["resourceVersion"]
    conn, response = _open_watch(server, f"resourceVersion={rv}&timeoutSeconds=1&allowWatchBookmarks=true")
    event = json.loads(response.readline())
    conn.close()
    assert event["type"] == "BOOKMARK"
    assert set(event["object"]) == set(recorded["object"])
    assert set(event["object"]["metadata"]) == {"resourceVersion"}
    assert event["object"]["kind"] == "Service"


def test_it_sends_the_recorded_expired_event_for_a_compacted_resource_version(server):
    recorded = load_recorded("expired_watch_event")["response"]
    rv = raw(server, "GET", "/api/v1/namespaces/demo/services").body["metadata"]["resourceVersion"]
    raw(
        server,
        "PATCH",
        "/api/v1/namespaces/demo/services/web",
        {"metadata": {"labels": {"x": "1"}}},
        "application/merge-patch+json",
    )
    server.store.compact()
    conn, response = _open_watch(server, f"resourceVersion={rv}&timeoutSeconds=5")
    event = json.loads(response.readline())
    assert response.readline() == b""  # and the stream ends
    conn.close()
    assert event["type"] == "ERROR"
    assert_status_like(event["object"], recorded["object"])
