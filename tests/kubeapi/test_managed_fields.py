"""metadata.managedFields as the official client v37 and raw HTTP writers see them."""

from __future__ import annotations

import itertools
import json
import re
import urllib.parse

import pytest
from kubernetes import client

from lab.kubeapi import store as store_module
from lab.kubeapi.managedfields import decode_fields, encode_fields, manager_from_user_agent

from .conftest import assert_status_like, load_recorded, raw

G, V = "split.smi-spec.io", "v1alpha2"
TS = f"/apis/{G}/{V}/namespaces/demo/trafficsplits"
MERGE = "application/merge-patch+json"
KUBECTL = "kubectl/v1.31.0 (linux/amd64) kubernetes/abc"
ENTRY_KEYS = ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]
RFC3339_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BACKENDS_50 = {"spec": {"backends": [{"service": "web-v1", "weight": 50}]}}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """The store's clock, one second later at each reading, so entry times tell writes apart."""
    ticks = itertools.count()
    monkeypatch.setattr(store_module, "now", lambda: f"2025-01-01T00:00:{next(ticks):02d}Z")


def _split(custom) -> dict:
    return custom.get_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split")


def _patch_split(custom, body, **kw) -> dict:
    return custom.patch_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split", body, **kw)


def _kubectl_patch(server, body: dict, path: str = f"{TS}/web-split", query: str = ""):
    return raw(server, "PATCH", path + query, body, MERGE, headers={"User-Agent": KUBECTL})


def _entries(obj: dict) -> dict[str, dict]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields", [])}


def test_seeded_objects_carry_no_managed_fields_until_written(server, custom, core):
    assert "managedFields" not in _split(custom)["metadata"]
    assert core.read_namespaced_service("web", "demo").metadata.managed_fields is None


def test_a_patch_with_field_manager_records_an_update_entry_for_the_fields_written(server, custom):
    patched = _patch_split(custom, BACKENDS_50, field_manager="meshboard")
    [entry] = patched["metadata"]["managedFields"]
    assert list(entry) == ENTRY_KEYS
    assert entry["manager"] == "meshboard"
    assert entry["operation"] == "Update"
    assert entry["apiVersion"] == "split.smi-spec.io/v1alpha2"
    assert RFC3339_SECONDS.match(entry["time"])
    assert entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"] == {"f:spec": {"f:backends": {}}}
    # GET and LIST return them as stored
    assert _split(custom)["metadata"]["managedFields"] == [entry]
    listed = custom.list_namespaced_custom_object(G, V, "demo", "trafficsplits")["items"]
    assert listed[0]["metadata"]["managedFields"] == [entry]


def test_without_field_manager_the_user_agent_product_is_the_manager(server, custom, core):
    created = core.create_namespaced_service(
        "demo", {"metadata": {"name": "api", "labels": {"app": "api"}}, "spec": {"ports": [{"port": 80}]}}
    )
    [entry] = created.metadata.managed_fields
    assert (entry.manager, entry.operation, entry.api_version) == ("OpenAPI-Generator", "Update", "v1")
    assert entry.fields_v1["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert "f:ports" in entry.fields_v1["f:spec"]
    assert "f:status" not in entry.fields_v1 and "f:apiVersion" not in entry.fields_v1

    reply = _kubectl_patch(server, {"metadata": {"labels": {"team": "a"}}})
    assert reply.status == 200
    assert _entries(reply.body)["kubectl"]["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:team": {}}}}


def test_a_create_is_recorded_as_update_with_every_field_it_set(server, custom):
    body = {
        "apiVersion": f"{G}/{V}",
        "kind": "TrafficSplit",
        "metadata": {"name": "api-split", "labels": {"app": "api"}},
        "spec": {"service": "api", "backends": [{"service": "api-v1", "weight": 100}]},
    }
    created = custom.create_namespaced_custom_object(G, V, "demo", "trafficsplits", body, field_manager="meshboard")
    [entry] = created["metadata"]["managedFields"]
    assert entry["operation"] == "Update"
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {".": {}, "f:backends": {}, "f:service": {}},
    }


def test_entries_have_the_recorded_shape_for_built_ins_and_custom_resources(server):
    recorded = load_recorded("managed_fields_builtin_entry")["response"]
    labels = {"app.kubernetes.io/name": "api"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "labels": labels, "annotations": {"meta.helm.sh/release-name": "api"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }
    reply = raw(
        server, "POST", "/apis/apps/v1/namespaces/demo/deployments", deployment, headers={"User-Agent": KUBECTL}
    )
    [entry] = reply.body["metadata"]["managedFields"]
    assert list(entry) == list(recorded)
    fields, want = entry["fieldsV1"], recorded["fieldsV1"]
    assert fields["f:metadata"]["f:labels"]["."] == want["f:metadata"]["f:labels"]["."] == {}
    assert fields["f:metadata"]["f:annotations"]["."] == {}
    assert "." not in fields["f:spec"] and "." not in want["f:spec"]  # a built-in's spec struct always exists
    assert {"f:replicas", "f:selector"} <= set(fields["f:spec"]) & set(want["f:spec"])

    recorded = load_recorded("managed_fields_custom_resource_entry")["response"]
    split = {
        "apiVersion": f"{G}/{V}",
        "kind": "TrafficSplit",
        "metadata": {"name": "api-split"},
        "spec": {"service": "api", "backends": [{"service": "api-v1", "weight": 100}]},
    }
    [entry] = raw(server, "POST", TS, split).body["metadata"]["managedFields"]
    assert [k for k in entry if k in recorded] == list(recorded)
    assert entry["fieldsV1"]["f:spec"]["."] == recorded["fieldsV1"]["f:spec"]["."] == {}  # a CR's spec is new


def test_a_later_write_by_the_same_manager_replaces_its_entry(server, custom, clock):
    first = _patch_split(custom, BACKENDS_50, field_manager="meshboard")["metadata"]["managedFields"]
    second = _patch_split(
        custom,
        {"metadata": {"labels": {"app": "web"}}, "spec": {"backends": [{"service": "web-v1", "weight": 60}]}},
        field_manager="meshboard",
    )["metadata"]["managedFields"]
    assert len(second) == 1
    assert second[0]["time"] > first[0]["time"]
    assert second[0]["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:backends": {}},
    }


def test_fields_another_manager_changes_move_to_it(server, custom, clock):
    _patch_split(custom, {**BACKENDS_50, "metadata": {"labels": {"app": "web"}}}, field_manager="meshboard")
    reply = _kubectl_patch(server, {"spec": {"backends": [{"service": "web-v1", "weight": 70}]}})
    entries = _entries(reply.body)
    assert entries["kubectl"]["fieldsV1"] == {"f:spec": {"f:backends": {}}}
    assert entries["meshboard"]["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
    assert [e["manager"] for e in reply.body["metadata"]["managedFields"]] == ["meshboard", "kubectl"]  # by time

    # kubectl changes the label too; meshboard keeps the labels map it created, as the apiserver's sets do.
    reply = _kubectl_patch(server, {"metadata": {"labels": {"app": "web-2"}}})
    entries = _entries(_split(custom))
    assert entries["meshboard"]["fieldsV1"] == {"f:metadata": {"f:labels": {}}}
    assert entries["kubectl"]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:backends": {}}}


def test_an_entry_left_with_no_fields_is_dropped(server, custom, clock):
    _patch_split(custom, BACKENDS_50, field_manager="meshboard")
    reply = _kubectl_patch(server, {"spec": {"backends": [{"service": "web-v1", "weight": 70}]}})
    assert [e["manager"] for e in reply.body["metadata"]["managedFields"]] == ["kubectl"]
    assert _split(custom)["metadata"]["managedFields"] == reply.body["metadata"]["managedFields"]


def test_a_write_that_only_removes_fields_takes_them_from_their_owner_and_records_no_entry(server, custom, clock):
    _patch_split(custom, {**BACKENDS_50, "metadata": {"labels": {"app": "web"}}}, field_manager="meshboard")
    before = _entries(_split(custom))["meshboard"]
    reply = _kubectl_patch(server, {"metadata": {"labels": {"app": None}}})
    entries = _entries(reply.body)
    assert list(entries) == ["meshboard"]
    assert entries["meshboard"]["fieldsV1"] == {"f:metadata": {"f:labels": {}}, "f:spec": {"f:backends": {}}}
    assert entries["meshboard"]["time"] == before["time"]


def test_a_no_op_patch_leaves_managed_fields_and_resource_version_alone(server, custom, clock):
    written = _patch_split(custom, BACKENDS_50, field_manager="meshboard")
    again = _patch_split(custom, BACKENDS_50, field_manager="someone-else")
    assert again["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    assert again["metadata"]["managedFields"] == written["metadata"]["managedFields"]


def test_a_dry_run_patch_answers_with_the_entry_but_stores_nothing(server, custom):
    _patch_split(custom, BACKENDS_50, field_manager="meshboard")
    stored = _split(custom)
    answer = _patch_split(
        custom, {"spec": {"backends": [{"service": "web-v1", "weight": 10}]}}, field_manager="other", dry_run="All"
    )
    assert "other" in _entries(answer)
    assert _split(custom) == stored


def test_a_put_of_the_object_read_keeps_the_entries_and_adds_the_writer(server, custom, clock):
    _patch_split(custom, {"metadata": {"labels": {"app": "web"}}}, field_manager="meshboard")
    obj = _split(custom)
    obj["spec"]["backends"][0]["weight"] = 40
    replaced = custom.replace_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split", obj)
    entries = _entries(replaced)
    assert entries["meshboard"]["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
    assert entries["OpenAPI-Generator"]["fieldsV1"] == {"f:spec": {"f:backends": {}}}

    obj = _split(custom)
    del obj["metadata"]["managedFields"]  # a client that drops them does not erase them
    obj["spec"]["backends"][0]["weight"] = 30
    replaced = custom.replace_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split", obj)
    assert set(_entries(replaced)) == {"meshboard", "OpenAPI-Generator"}


def test_a_list_with_one_empty_entry_resets_them(server, custom):
    _patch_split(custom, BACKENDS_50, field_manager="meshboard")
    reset = _patch_split(custom, {"metadata": {"managedFields": [{}]}}, field_manager="meshboard")
    assert "managedFields" not in reset["metadata"]
    assert "managedFields" not in _split(custom)["metadata"]


def test_status_writes_get_their_own_entry_and_main_writes_never_own_status(server, core):
    path = "/api/v1/namespaces/demo/pods/web-v1-0/status"
    reply = raw(server, "PATCH", path + "?fieldManager=kubelet", {"status": {"phase": "Failed"}}, MERGE)
    [entry] = reply.body["metadata"]["managedFields"]
    assert list(entry) == [*ENTRY_KEYS, "subresource"]
    assert (entry["manager"], entry["subresource"]) == ("kubelet", "status")
    assert entry["fieldsV1"] == {"f:status": {"f:phase": {}}}

    created = core.create_namespaced_pod(
        "demo", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    )
    assert created.status.phase == "Pending"
    assert set(created.metadata.managed_fields[0].fields_v1) == {"f:spec"}


def test_past_ten_update_managers_the_oldest_merge_into_ancient_changes(server, clock):
    for i in range(11):
        reply = raw(
            server, "PATCH", f"{TS}/web-split?fieldManager=m{i:02d}", {"metadata": {"labels": {f"l{i}": "x"}}}, MERGE
        )
        assert reply.status == 200
    entries = reply.body["metadata"]["managedFields"]
    assert len(entries) == 10
    assert entries[0]["manager"] == "ancient-changes"
    assert entries[0]["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:l0": {}, "f:l1": {}}}}
    assert [e["manager"] for e in entries[1:]] == [f"m{i:02d}" for i in range(2, 11)]


# ---- invalid fieldManager: 422 before anything is read or written --------------------------------------------------
def test_a_field_manager_over_128_bytes_is_refused_with_422(server, custom):
    before = _split(custom)
    with pytest.raises(client.ApiException) as caught:
        _patch_split(custom, BACKENDS_50, field_manager="m" * 129)
    assert caught.value.status == 422
    body = json.loads(caught.value.body)
    assert body["reason"] == "Invalid"
    assert body["details"]["group"] == "meta.k8s.io" and body["details"]["kind"] == "PatchOptions"
    assert "name" not in body["details"]
    assert [(c["field"], c["reason"]) for c in body["details"]["causes"]] == [("fieldManager", "FieldValueTooLong")]
    assert body["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more than 128 bytes'
    )
    assert _split(custom) == before
    assert _patch_split(custom, BACKENDS_50, field_manager="m" * 128)["metadata"]["managedFields"]


def test_a_non_printable_field_manager_is_refused_with_422_naming_the_options_of_the_verb(server):
    manager = urllib.parse.quote("mesh\x07board")
    reply = raw(server, "POST", f"/api/v1/namespaces/demo/services?fieldManager={manager}", {"metadata": {"name": "x"}})
    assert reply.status == 422
    assert reply.body["details"]["kind"] == "CreateOptions"
    [problem] = reply.body["details"]["causes"]
    assert (problem["field"], problem["reason"]) == ("fieldManager", "FieldValueInvalid")
    assert problem["message"].endswith("invalid character U+0007 (at position 4)")
    assert raw(server, "GET", "/api/v1/namespaces/demo/services/x").status == 404

    obj = raw(server, "GET", f"{TS}/web-split").body
    reply = raw(server, "PUT", f"{TS}/web-split?fieldManager={manager}", obj)
    assert (reply.status, reply.body["details"]["kind"]) == (422, "UpdateOptions")


def test_apply_without_field_manager_answers_the_recorded_422(server):
    recorded = load_recorded("invalid_patch_options_apply_without_field_manager")
    reply = raw(server, "PATCH", f"{TS}/web-split", {"spec": {}}, "application/apply-patch+yaml")
    assert reply.status == recorded["code"]
    assert_status_like(reply.body, recorded["response"])


# ---- the pieces ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("agent", "manager"),
    [
        ("OpenAPI-Generator/37.0.1/python", "OpenAPI-Generator"),
        (KUBECTL, "kubectl"),
        ("Mozilla 5\x01", "Mozilla 5"),
        ("", ""),
        ("x" * 200, "x" * 128),
    ],
)
def test_the_manager_is_the_user_agent_product(agent, manager):
    assert manager_from_user_agent(agent) == manager


def test_fields_v1_round_trips_with_dot_for_members_that_have_children():
    tree = {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {".": {}, "f:backends": {}}}
    assert decode_fields(tree) == {
        ("f:metadata", "f:labels"),
        ("f:metadata", "f:labels", "f:app"),
        ("f:spec",),
        ("f:spec", "f:backends"),
    }
    assert encode_fields(decode_fields(tree)) == tree
    keyed = {"f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}}}}
    assert encode_fields(decode_fields(keyed)) == keyed
