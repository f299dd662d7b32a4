"""HTTP hygiene over raw sockets: keep-alive framing, drained bodies, 413, bad input, bytes that are not HTTP."""

from __future__ import annotations

import http.client
import socket

from .conftest import raw

SVC = "/api/v1/namespaces/demo/services"


def _connection(server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def test_it_answers_garbage_bytes_like_go_and_keeps_serving(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00garbage that is not http\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Content-Type: text/plain; charset=utf-8" in answer
    assert b"Connection: close" in answer
    assert answer.endswith(b"\r\n\r\n400 Bad Request")
    assert raw(server, "GET", SVC).status == 200


def test_it_drains_the_body_of_a_failing_request_so_keep_alive_stays_framed(server):
    conn = _connection(server)
    first = raw(server, "POST", "/api/v1/namespaces/demo/widgets", {"metadata": {"name": "dry"}}, conn=conn)
    second = raw(server, "POST", f"{SVC}/web", {"metadata": {"name": "dry"}}, conn=conn)
    third = raw(server, "GET", SVC, conn=conn)
    conn.close()
    assert (first.status, second.status, third.status) == (404, 405, 200)
    assert second.body["reason"] == "MethodNotAllowed"
    assert third.body["kind"] == "ServiceList"


def test_it_refuses_bodies_over_3_mib_with_413_and_keeps_the_connection_usable(server):
    conn = _connection(server)
    big = b'{"metadata": {"name": "big", "annotations": {"a": "' + b"x" * (3 * 1024 * 1024) + b'"}}}'
    reply = raw(server, "POST", SVC, big, conn=conn)
    assert reply.status == 413
    assert reply.body["reason"] == "RequestEntityTooLarge" and reply.body["code"] == 413
    assert raw(server, "GET", SVC, conn=conn).status == 200
    conn.close()


def test_it_answers_malformed_json_and_wrong_content_types_with_status_objects(server):
    bad_json = raw(server, "POST", SVC, b'{"metadata": ', "application/json")
    assert (bad_json.status, bad_json.body["reason"]) == (400, "BadRequest")
    wrong_type = raw(server, "POST", SVC, b"name=web", "application/x-www-form-urlencoded")
    assert (wrong_type.status, wrong_type.body["reason"]) == (415, "UnsupportedMediaType")
    wrong_patch = raw(server, "PATCH", f"{SVC}/web", {"spec": {}}, "text/plain")
    assert (wrong_patch.status, wrong_patch.body["reason"]) == (415, "UnsupportedMediaType")
    json_patch_as_object = raw(server, "PATCH", f"{SVC}/web", {"op": "add"}, "application/json-patch+json")
    assert json_patch_as_object.status == 400
    yaml_body = raw(server, "POST", SVC, b"metadata:\n  name: from-yaml\n", "application/yaml")
    assert yaml_body.status == 201


def test_it_answers_405_to_verbs_the_resource_does_not_allow(server):
    assert raw(server, "PUT", SVC, {}).status == 405
    assert raw(server, "PATCH", SVC, {}, "application/merge-patch+json").status == 405
    assert raw(server, "POST", "/api/v1/services", {"metadata": {"name": "x"}}).status == 405
    assert raw(server, "POST", "/version", {}).status == 405


def test_it_answers_400_when_body_and_url_names_differ(server):
    reply = raw(server, "PUT", f"{SVC}/web", {"metadata": {"name": "db"}})
    assert reply.status == 400
    assert "does not match the name on the URL" in reply.body["message"]


def test_it_always_answers_json_with_a_content_length(server):
    reply = raw(server, "GET", "/apis")
    assert reply.headers["Content-Type"] == "application/json"
    assert int(reply.headers["Content-Length"]) == len(reply.raw)
    assert reply.body["kind"] == "APIGroupList"


def test_it_pages_lists_with_limit_and_continue(server):
    first = raw(server, "GET", f"{SVC}?limit=2").body
    assert len(first["items"]) == 2 and first["metadata"]["remainingItemCount"] == 1
    rest = raw(server, "GET", f"{SVC}?limit=2&continue={first['metadata']['continue']}").body
    assert [i["metadata"]["name"] for i in rest["items"]] == ["web-v1"]
    assert "continue" not in rest["metadata"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert "continue" not in raw(server, "GET", SVC).body["metadata"]
