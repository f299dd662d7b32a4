"""Faults on demand and the request log, as the official client sees them."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client


def test_it_answers_injected_401_403_and_500_as_api_exceptions(server, core):
    server.faults.add(r"/services$", 401)
    with pytest.raises(client.ApiException) as caught:
        core.list_namespaced_service("demo")
    assert caught.value.status == 401 and json.loads(caught.value.body)["reason"] == "Unauthorized"
    server.faults.clear()

    server.faults.add(r"^/api/v1/pods$", 403, verb="list")
    with pytest.raises(client.ApiException) as caught:
        core.list_pod_for_all_namespaces()
    body = json.loads(caught.value.body)
    assert caught.value.status == 403 and body["reason"] == "Forbidden"
    assert body["message"].endswith('cannot list resource "pods" in API group "" at the cluster scope')
    assert body["details"] == {"kind": "pods"}
    assert core.list_namespaced_pod("demo").items  # other paths are unaffected
    server.faults.clear()

    server.faults.add(r"/namespaces/demo/services/web$", 403, verb="get")
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_service("web", "demo")
    assert json.loads(caught.value.body)["message"].startswith('services "web" is forbidden')
    server.faults.clear()

    server.faults.add(r"/services", 500, times=1)
    with pytest.raises(client.ApiException) as caught:
        core.list_namespaced_service("demo")
    assert caught.value.status == 500 and json.loads(caught.value.body)["reason"] == "InternalError"
    assert core.list_namespaced_service("demo").items  # `times=1` spent


def test_it_delays_matching_requests(server, core):
    server.faults.add(r"/services$", delay=0.4, verb="GET")
    started = time.monotonic()
    core.list_namespaced_service("demo")
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    core.list_namespaced_pod("demo")
    assert time.monotonic() - started < 0.3


def test_it_lets_a_slow_server_trip_the_client_timeout(server, core):
    server.faults.add(r"/services$", delay=1.0)
    with pytest.raises(Exception) as caught:
        core.list_namespaced_service("demo", _request_timeout=0.2)
    assert "timed out" in str(caught.value).lower()


def test_it_logs_and_counts_requests(server, core, custom):
    server.requests.reset()
    core.list_service_for_all_namespaces()
    core.list_pod_for_all_namespaces(label_selector="app=web")
    custom.list_namespaced_custom_object("split.smi-spec.io", "v1alpha2", "demo", "trafficsplits")
    with pytest.raises(client.ApiException):
        core.read_namespaced_service("nope", "demo")
    assert len(server.requests) == 4
    assert server.requests.count(verb="list") == 3
    assert server.requests.count(method="GET", path=r"^/api/v1/pods$") == 1
    entries = server.requests.entries
    assert entries[1].query == "labelSelector=app%3Dweb"
    assert entries[3].status == 404 and entries[3].verb == "get"
    server.requests.reset()
    assert len(server.requests) == 0


def test_an_after_fault_answers_its_status_once_the_write_is_stored(server, custom):
    fault = server.faults.add(r"/trafficsplits/web-split$", 500, verb="patch", when="after", times=1)
    assert (fault.when, fault.drop, fault.remaining) == ("after", False, 1)
    with pytest.raises(client.ApiException) as caught:
        custom.patch_namespaced_custom_object(
            "split.smi-spec.io", "v1alpha2", "demo", "trafficsplits", "web-split", {"metadata": {"labels": {"a": "b"}}}
        )
    assert caught.value.status == 500
    split = custom.get_namespaced_custom_object("split.smi-spec.io", "v1alpha2", "demo", "trafficsplits", "web-split")
    assert split["metadata"]["labels"] == {"a": "b"}


def test_an_after_fault_replaces_an_error_answer_too(server, core):
    server.faults.add(r"/services/nope$", 503, when="after")
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_service("nope", "demo")
    assert caught.value.status == 503


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({}, "needs a status, a delay"),
        ({"status": 500, "drop": True}, "not both"),
        ({"status": 500, "when": "later"}, "when must be"),
        ({"delay": -1}, "delay must be"),
        ({"status": 99}, "not an HTTP status"),
        ({"status": 500, "skip": -1}, "skip must be"),
    ],
)
def test_a_fault_that_cannot_be_is_refused(server, kwargs, complaint):
    with pytest.raises(ValueError, match=complaint):
        server.faults.add(r"/services", **kwargs)


def test_a_skipping_rule_lets_its_first_matches_reach_older_rules(server, core):
    server.faults.add(r"/services$", 503, verb="list")
    newest = server.faults.add(r"/services$", 500, verb="list", skip=2)
    codes = []
    for _ in range(3):
        with pytest.raises(client.ApiException) as caught:
            core.list_namespaced_service("demo")
        codes.append(caught.value.status)
    assert codes == [503, 503, 500]
    assert (newest.skip, newest.skip_remaining) == (2, 0)
