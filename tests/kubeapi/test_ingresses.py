"""The stand-in serves networking.k8s.io/v1 Ingresses and IngressClasses as a real API server does: discovery, create,
get, list in the recorded list shape through the official client, generation and Ingress's status subresource,
managedFields of a built-in with a spec struct."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.osm_policy_objects import ingress, ingress_class

from .conftest import load_recorded, raw

NETWORKING = "/apis/networking.k8s.io/v1"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# networking.k8s.io/v1's entries of a real API server's discovery (`kubectl get --raw /apis/networking.k8s.io/v1`,
# Kubernetes 1.30), without networkpolicies, which the stand-in does not serve.
REAL_DISCOVERY = {
    "ingresses": {
        "name": "ingresses",
        "singularName": "ingress",
        "namespaced": True,
        "kind": "Ingress",
        "verbs": VERBS,
        "shortNames": ["ing"],
        "storageVersionHash": "39NQlfNR+bo=",
    },
    "ingresses/status": {
        "name": "ingresses/status",
        "singularName": "",
        "namespaced": True,
        "kind": "Ingress",
        "verbs": ["get", "patch", "update"],
    },
    "ingressclasses": {
        "name": "ingressclasses",
        "singularName": "ingressclass",
        "namespaced": False,
        "kind": "IngressClass",
        "verbs": VERBS,
        "storageVersionHash": "l/iqIbDgFyQ=",
    },
}


@pytest.fixture
def networking(api: client.ApiClient) -> client.NetworkingV1Api:
    return client.NetworkingV1Api(api)


def _ingress(namespace: str = "demo", name: str = "web") -> dict:
    return ingress(namespace, name, "web", 80, host="web.example.com")


def test_it_lists_ingresses_and_ingress_classes_in_discovery_as_a_real_api_server_does(server, networking):
    assert {r["name"]: r for r in raw(server, "GET", NETWORKING).body["resources"]} == REAL_DISCOVERY
    groups = {g["name"]: g for g in raw(server, "GET", "/apis").body["groups"]}
    assert groups["networking.k8s.io"]["preferredVersion"] == {"groupVersion": "networking.k8s.io/v1", "version": "v1"}
    assert {"ingresses", "ingressclasses"} <= {r.name for r in networking.get_api_resources().resources}


def test_it_creates_gets_and_lists_ingresses_through_the_official_client(networking):
    created = networking.create_namespaced_ingress("demo", _ingress())
    assert created.metadata.generation == 1 and created.metadata.uid and created.metadata.resource_version
    networking.create_namespaced_ingress("other", _ingress("other"))

    got = networking.read_namespaced_ingress("web", "demo")
    assert got.spec.ingress_class_name == "nginx"
    [rule] = got.spec.rules
    assert rule.host == "web.example.com"
    assert rule.http.paths[0].backend.service.name == "web" and rule.http.paths[0].backend.service.port.number == 80
    everywhere = networking.list_ingress_for_all_namespaces()
    assert sorted((i.metadata.namespace, i.metadata.name) for i in everywhere.items) == [
        ("demo", "web"),
        ("other", "web"),
    ]
    assert [i.metadata.namespace for i in networking.list_namespaced_ingress("other").items] == ["other"]


def test_it_creates_and_lists_cluster_scoped_ingress_classes(server, networking):
    created = networking.create_ingress_class(ingress_class())
    assert created.metadata.generation == 1 and created.metadata.namespace is None
    assert [c.spec.controller for c in networking.list_ingress_class().items] == ["k8s.io/ingress-nginx"]
    assert raw(server, "GET", f"{NETWORKING}/namespaces/demo/ingressclasses").status == 404


@pytest.mark.parametrize("plural", ["ingresses", "ingressclasses"])
def test_it_lists_them_in_the_recorded_list_shape(server, networking, plural):
    networking.create_namespaced_ingress("demo", _ingress())
    networking.create_ingress_class(ingress_class())
    recorded = load_recorded("list_builtin")["response"]

    body = raw(server, "GET", f"{NETWORKING}/{plural}").body

    assert set(body) == set(recorded)
    kind = "IngressList" if plural == "ingresses" else "IngressClassList"
    assert (body["kind"], body["apiVersion"]) == (kind, "networking.k8s.io/v1")
    assert set(body["metadata"]) == set(recorded["metadata"])
    [item] = body["items"]
    assert "kind" not in item and "apiVersion" not in item
    wanted = set(recorded["items"][0]["metadata"]) - ({"namespace"} if plural == "ingressclasses" else set())
    assert wanted <= set(item["metadata"])
    assert ("namespace" in item["metadata"]) is (plural == "ingresses")  # IngressClasses are cluster-scoped


def test_spec_changes_count_in_generation_and_ingress_status_has_its_own_subresource(server, networking):
    networking.create_namespaced_ingress("demo", _ingress())
    path, merge = f"{NETWORKING}/namespaces/demo/ingresses/web", "application/merge-patch+json"
    patched = raw(server, "PATCH", path, {"spec": {"ingressClassName": "other"}}, content_type=merge).body
    assert patched["metadata"]["generation"] == 2
    status = {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}]}}}
    after = raw(server, "PATCH", f"{path}/status", status, content_type=merge).body
    assert after["metadata"]["generation"] == 2 and after["spec"]["ingressClassName"] == "other"
    read = networking.read_namespaced_ingress_status("web", "demo")
    assert read.status.load_balancer.ingress[0].ip == "203.0.113.20"


def test_a_create_records_managed_fields_as_for_a_built_in_with_a_spec_struct(server):
    reply = raw(server, "POST", f"{NETWORKING}/namespaces/demo/ingresses", _ingress())
    assert reply.status == 201, reply.body
    [entry] = reply.body["metadata"]["managedFields"]
    assert list(entry) == list(load_recorded("managed_fields_builtin_entry")["response"])
    assert "." not in entry["fieldsV1"]["f:spec"]  # a built-in's spec struct always exists
    assert {"f:ingressClassName", "f:rules"} <= set(entry["fieldsV1"]["f:spec"])


def test_unknown_ingresses_answer_not_found(networking):
    with pytest.raises(client.ApiException) as caught:
        networking.read_namespaced_ingress("nope", "demo")
    assert caught.value.status == 404
