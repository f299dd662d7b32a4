"""The stand-in serves apps/v1 DaemonSets as a real API server does: discovery, create, get, list in the recorded
list shape, generation and the status subresource, managedFields of a built-in with a spec struct."""

from __future__ import annotations

from kubernetes import client

from tests.workload_objects import daemonset

from .conftest import load_recorded, raw

# apps/v1's DaemonSet entry of a real API server's discovery (`kubectl get --raw /apis/apps/v1`, Kubernetes 1.30).
REAL_DISCOVERY = {
    "name": "daemonsets",
    "singularName": "daemonset",
    "namespaced": True,
    "kind": "DaemonSet",
    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    "shortNames": ["ds"],
    "categories": ["all"],
    "storageVersionHash": "dd7pWHUlMKQ=",
}
REAL_STATUS_DISCOVERY = {
    "name": "daemonsets/status",
    "singularName": "",
    "namespaced": True,
    "kind": "DaemonSet",
    "verbs": ["get", "patch", "update"],
}


def _body(namespace: str = "demo", name: str = "node-agent") -> dict:
    body = daemonset(namespace, name)
    del body["status"]  # a create's status is the server's (here: none, as no controller runs)
    return body


def test_it_lists_daemonsets_in_discovery_as_a_real_api_server_does(server, apps):
    resources = {r["name"]: r for r in raw(server, "GET", "/apis/apps/v1").body["resources"]}
    assert resources["daemonsets"] == REAL_DISCOVERY
    assert resources["daemonsets/status"] == REAL_STATUS_DISCOVERY
    assert "daemonsets" in {r.name for r in apps.get_api_resources().resources}


def test_it_creates_gets_and_lists_daemonsets_through_the_official_client(server, apps):
    created = apps.create_namespaced_daemon_set("demo", _body())
    assert created.metadata.generation == 1 and created.metadata.uid and created.metadata.resource_version
    apps.create_namespaced_daemon_set("other", _body("other", "node-agent"))

    got = apps.read_namespaced_daemon_set("node-agent", "demo")
    assert got.spec.selector.match_labels == {"app": "node-agent"}
    assert got.spec.template.spec.service_account_name == "node-agent"
    everywhere = apps.list_daemon_set_for_all_namespaces()
    assert sorted((d.metadata.namespace, d.metadata.name) for d in everywhere.items) == [
        ("demo", "node-agent"),
        ("other", "node-agent"),
    ]
    assert [d.metadata.namespace for d in apps.list_namespaced_daemon_set("other").items] == ["other"]
    [labelled] = apps.list_namespaced_daemon_set("demo", label_selector="team=platform").items
    assert labelled.metadata.name == "node-agent"


def test_it_lists_daemonsets_in_the_recorded_list_shape(server, apps):
    apps.create_namespaced_daemon_set("demo", _body())
    recorded = load_recorded("list_builtin")["response"]

    body = raw(server, "GET", "/apis/apps/v1/daemonsets").body

    assert set(body) == set(recorded)
    assert (body["kind"], body["apiVersion"]) == ("DaemonSetList", "apps/v1")
    assert set(body["metadata"]) == set(recorded["metadata"])
    [item] = body["items"]
    assert "kind" not in item and "apiVersion" not in item
    assert set(recorded["items"][0]["metadata"]) <= set(item["metadata"])


def test_spec_changes_count_in_generation_and_status_has_its_own_subresource(server, apps):
    apps.create_namespaced_daemon_set("demo", _body())
    path, merge = "/apis/apps/v1/namespaces/demo/daemonsets/node-agent", "application/merge-patch+json"
    patched = raw(server, "PATCH", path, {"spec": {"minReadySeconds": 5}}, content_type=merge).body
    assert patched["metadata"]["generation"] == 2
    counts = {"currentNumberScheduled": 2, "desiredNumberScheduled": 2, "numberMisscheduled": 0, "numberReady": 1}
    status = {"status": counts}
    after = raw(server, "PATCH", f"{path}/status", status, content_type=merge).body
    assert after["metadata"]["generation"] == 2 and after["spec"]["minReadySeconds"] == 5
    read = apps.read_namespaced_daemon_set_status("node-agent", "demo")
    assert (read.status.desired_number_scheduled, read.status.number_ready) == (2, 1)


def test_a_create_records_managed_fields_as_for_a_built_in_with_a_spec_struct(server):
    reply = raw(server, "POST", "/apis/apps/v1/namespaces/demo/daemonsets", _body())
    assert reply.status == 201, reply.body
    [entry] = reply.body["metadata"]["managedFields"]
    assert list(entry) == list(load_recorded("managed_fields_builtin_entry")["response"])
    assert "." not in entry["fieldsV1"]["f:spec"]  # a built-in's spec struct always exists
    assert {"f:selector", "f:template"} <= set(entry["fieldsV1"]["f:spec"])


def test_unknown_daemonsets_answer_not_found(apps):
    try:
        apps.read_namespaced_daemon_set("nope", "demo")
    except client.ApiException as exc:
        assert exc.status == 404
    else:
        raise AssertionError("a missing DaemonSet was found")
