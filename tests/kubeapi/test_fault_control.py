"""Faults added over HTTP on /_lab/faults (servers started with fault control), with the official client as victim."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, config

from lab.kubeapi import KubeAPIServer
from lab.kubeapi.__main__ import FAULT_CONTROL_ENV, _parser

from .conftest import assert_status_like, load_recorded, make_seed, raw

G, V = "split.smi-spec.io", "v1alpha2"
SPLIT_PATH = r"/trafficsplits/web-split$"
BACKENDS_50 = {"spec": {"backends": [{"service": "web-v1", "weight": 50}]}}


@pytest.fixture
def lab(kubeapi_factory: Callable[..., KubeAPIServer]) -> KubeAPIServer:
    return kubeapi_factory(make_seed(), fault_control=True)


@pytest.fixture
def victim(lab: KubeAPIServer) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(lab.kubeconfig)))


def add_fault(server: KubeAPIServer, **spec: object) -> dict:
    reply = raw(server, "POST", "/_lab/faults", spec)
    assert reply.status == 201, reply.body
    return reply.body


def _split(custom: client.CustomObjectsApi) -> dict:
    return custom.get_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split")


def _patch(custom: client.CustomObjectsApi, **kw: object) -> dict:
    return custom.patch_namespaced_custom_object(
        G, V, "demo", "trafficsplits", "web-split", BACKENDS_50, field_manager="meshboard", **kw
    )


def _weight(obj: dict) -> float:
    return obj["spec"]["backends"][0]["weight"]


# ---- the fault kinds ---------------------------------------------------------------------------------------------
def test_a_delay_after_storing_times_the_client_out_but_the_write_is_stored(lab, victim):
    add_fault(lab, path=SPLIT_PATH, verb="patch", delay=3, when="after", times=1)
    before = _split(victim)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        _patch(victim, _request_timeout=1)
    assert time.monotonic() - started < 2.5
    after = _split(victim)
    assert _weight(after) == 50
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert after["metadata"]["managedFields"][0]["manager"] == "meshboard"


def test_a_500_after_storing_reaches_the_client_and_the_object_changed(lab, victim):
    add_fault(lab, path=SPLIT_PATH, verb="patch", status=500, when="after", message="etcd leader changed")
    rv = _split(victim)["metadata"]["resourceVersion"]
    with pytest.raises(client.ApiException) as caught:
        _patch(victim)
    assert caught.value.status == 500
    body = json.loads(caught.value.body)
    assert (body["reason"], body["message"]) == ("InternalError", "Internal error occurred: etcd leader changed")
    after = _split(victim)
    assert _weight(after) == 50 and after["metadata"]["resourceVersion"] != rv


def test_a_500_before_storing_leaves_the_object_unchanged(lab, victim):
    add_fault(lab, path=SPLIT_PATH, verb="patch", status=500)  # when="before" is the default
    before = _split(victim)
    with pytest.raises(client.ApiException) as caught:
        _patch(victim)
    assert caught.value.status == 500
    assert _split(victim) == before


def test_a_drop_after_storing_cuts_the_connection_and_the_object_changed(lab, victim):
    add_fault(lab, path=SPLIT_PATH, verb="patch", drop=True, when="after", times=1)
    rv = _split(victim)["metadata"]["resourceVersion"]
    with pytest.raises(urllib3.exceptions.ProtocolError) as caught:
        _patch(victim)
    assert "without response" in str(caught.value)
    after = _split(victim)
    assert _weight(after) == 50 and after["metadata"]["resourceVersion"] != rv
    [patch] = [r for r in lab.requests.entries if r.verb == "patch"]
    assert patch.status == 0  # the log says no answer was sent


def test_a_drop_before_storing_cuts_the_connection_and_stores_nothing(lab, victim):
    add_fault(lab, path=SPLIT_PATH, verb="patch", drop=True, times=1)
    before = _split(victim)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        _patch(victim)
    assert _split(victim) == before


def test_a_delay_alone_after_storing_answers_late_but_normally(lab, victim):
    add_fault(lab, path=SPLIT_PATH, verb="patch", delay=0.5, when="after", times=1)
    started = time.monotonic()
    assert _weight(_patch(victim)) == 50
    assert time.monotonic() - started >= 0.5


def test_times_is_honoured_and_spent_faults_leave_the_list(lab, victim):
    fault = add_fault(lab, path=SPLIT_PATH, verb="patch", status=503, times=2)
    assert (fault["times"], fault["remaining"]) == (2, 2)
    with pytest.raises(client.ApiException) as caught:
        _patch(victim)
    assert caught.value.status == 503
    assert [f["remaining"] for f in raw(lab, "GET", "/_lab/faults").body["items"]] == [1]
    with pytest.raises(client.ApiException):
        _patch(victim)
    assert raw(lab, "GET", "/_lab/faults").body["items"] == []
    assert _weight(_patch(victim)) == 50


def test_skip_lets_the_first_matches_through(lab, victim):
    add_fault(lab, path=SPLIT_PATH, verb="patch", status=500, when="after", skip=1, times=1)
    dry = _patch(victim, dry_run="All")  # a dry run is a patch too: the one let through
    assert _weight(dry) == 50 and _weight(_split(victim)) == 100
    with pytest.raises(client.ApiException) as caught:
        _patch(victim)
    assert caught.value.status == 500 and _weight(_split(victim)) == 50
    assert raw(lab, "GET", "/_lab/faults").body["items"] == []


def test_the_fault_matches_only_its_verb_and_path(lab, victim):
    add_fault(lab, path=SPLIT_PATH, verb="patch", status=500)
    assert _split(victim)["metadata"]["name"] == "web-split"  # a get is not a patch
    core = client.CoreV1Api(config.new_client_from_config(str(lab.kubeconfig)))
    core.patch_namespaced_service("web", "demo", {"metadata": {"labels": {"x": "1"}}})


# ---- the control API ---------------------------------------------------------------------------------------------
def test_the_control_api_adds_lists_and_removes_faults(lab):
    first = add_fault(lab, path="/services", status=403)
    second = add_fault(lab, path="/pods", delay=0.1, verb="list", when="after")
    assert second == {
        "id": second["id"],
        "path": "/pods",
        "verb": "list",
        "status": None,
        "delay": 0.1,
        "when": "after",
        "drop": False,
        "times": None,
        "remaining": None,
        "skip": 0,
        "skip_remaining": 0,
        "message": None,
        "user": "system:serviceaccount:meshboard:meshboard",
    }
    assert first["id"] != second["id"]
    listed = raw(lab, "GET", "/_lab/faults")
    assert (listed.status, [f["id"] for f in listed.body["items"]]) == (200, [second["id"], first["id"]])
    assert raw(lab, "GET", "/api/v1/namespaces/demo/services").status == 403

    removed = raw(lab, "DELETE", f"/_lab/faults/{first['id']}")
    assert (removed.status, removed.body["id"]) == (200, first["id"])
    assert raw(lab, "GET", "/api/v1/namespaces/demo/services").status == 200
    missing = raw(lab, "DELETE", f"/_lab/faults/{first['id']}")
    assert (missing.status, missing.body["kind"], missing.body["reason"]) == (404, "Status", "NotFound")

    cleared = raw(lab, "DELETE", "/_lab/faults")
    assert (cleared.status, [f["id"] for f in cleared.body["items"]]) == (200, [second["id"]])
    assert raw(lab, "GET", "/_lab/faults").body["items"] == []
    assert lab.faults.snapshot() == []  # the one mechanism: HTTP and in-process are the same rules


def test_in_process_faults_show_up_over_http(lab):
    fault = lab.faults.add(r"/endpoints", 500, when="after", times=3)
    assert raw(lab, "GET", "/_lab/faults").body["items"] == [fault.as_json()]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "not JSON"),
        ([], "JSON object"),
        ({"status": 500}, '"path"'),
        ({"path": "/x", "status": 500, "colour": "red"}, "unknown fields ['colour']"),
        ({"path": "/x", "status": "500"}, "status: expected int or null"),
        ({"path": "/x", "drop": 1}, "drop: expected bool"),
        ({"path": "/x"}, "needs a status, a delay"),
        ({"path": "/x", "status": 500, "drop": True}, "not both"),
        ({"path": "/x", "status": 500, "when": "during"}, "when must be"),
        ({"path": "/x", "status": 500, "times": 0}, "times must be >= 1"),
        ({"path": "(", "status": 500}, "not a regular expression"),
        ({"path": "/x", "status": 500, "skip": -1}, "skip must be >= 0"),
    ],
)
def test_a_bad_fault_is_refused_with_400(lab, body, complaint):
    reply = raw(lab, "POST", "/_lab/faults", body)
    assert reply.status == 400
    assert reply.body["reason"] == "BadRequest" and complaint in reply.body["message"]
    assert lab.faults.snapshot() == []


def test_control_paths_answer_405_and_404_like_the_rest_of_the_server(lab):
    assert raw(lab, "PUT", "/_lab/faults", {}).status == 405
    assert raw(lab, "GET", "/_lab/faults/1").status == 405
    assert raw(lab, "GET", "/_lab/other").status == 404


def test_control_requests_are_logged_with_no_verb_and_never_faulted(lab):
    add_fault(lab, path=".*", status=500)  # even a fault on every path leaves the control path reachable
    assert raw(lab, "GET", "/_lab/faults").status == 200
    assert raw(lab, "GET", "/version").status == 500
    control = [r for r in lab.requests.entries if r.path.startswith("/_lab/")]
    assert [(r.method, r.verb, r.status) for r in control] == [("POST", "", 201), ("GET", "", 200)]
    assert [r.status for r in lab.requests.entries if r.path == "/version"] == [500]


# ---- without the flag --------------------------------------------------------------------------------------------
def test_without_fault_control_the_path_does_not_exist(server, custom):
    recorded = load_recorded("not_found_resource")
    for method, path, body in (
        ("GET", "/_lab/faults", None),
        ("POST", "/_lab/faults", {"path": "/trafficsplits/", "status": 500}),
        ("DELETE", "/_lab/faults", None),
    ):
        reply = raw(server, method, path, body)
        assert reply.status == recorded["code"]
        assert_status_like(reply.body, recorded["response"])
    assert server.fault_control_url is None
    assert server.faults.snapshot() == []
    assert _weight(_patch(custom)) == 50


@pytest.mark.kubeapi_options(fault_control=True)
def test_the_kubeapi_fixture_takes_server_options_from_a_marker(kubeapi):
    assert raw(kubeapi, "GET", "/_lab/faults").status == 200
    assert kubeapi.fault_control_url == f"{kubeapi.url}/_lab/faults"


def test_the_command_line_flag_turns_it_on(tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.kubeapi", "--seed", "bookstore", "--fault-control", "--kubeconfig-out", kubeconfig],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[2].startswith("fault control: http://127.0.0.1:")
        url = lines[2].split(": ", 1)[1].strip()
        http = urllib3.PoolManager()
        reply = http.request("POST", url, body=json.dumps({"path": "/services", "status": 503, "times": 1}))
        assert reply.status == 201
        core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        with pytest.raises(client.ApiException) as caught:
            core.list_service_for_all_namespaces()
        assert caught.value.status == 503
        assert core.list_service_for_all_namespaces().items
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


@pytest.mark.parametrize(("argv", "env", "on"), [([], "", False), (["--fault-control"], "", True), ([], "1", True)])
def test_fault_control_is_off_unless_the_flag_or_the_environment_asks(monkeypatch, argv, env, on):
    monkeypatch.setenv(FAULT_CONTROL_ENV, env)
    assert _parser().parse_args(["--seed", "bookstore", *argv]).fault_control is on
