"""Behaviours as the official client v37 sees them: kinds, writes, patches, selectors, dry run, discovery."""

from __future__ import annotations

import json

import pytest
from kubernetes import client, config

from .conftest import make_seed, raw

G, V = "split.smi-spec.io", "v1alpha2"


def _split(custom):
    return custom.get_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split")


def _patch_split(custom, body, **kw):
    return custom.patch_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split", body, **kw)


def test_it_serves_every_builtin_kind_as_typed_lists(core, apps, api):
    assert core.list_namespace().kind == "NamespaceList"
    assert core.list_node().items[0].metadata.name == "node-1"
    assert {s.metadata.name for s in core.list_namespaced_service("demo").items} == {"web", "web-v1", "db"}
    pods = core.list_pod_for_all_namespaces().items
    assert pods[0].status.conditions[0].type == "Ready" and pods[0].status.phase
    assert core.list_endpoints_for_all_namespaces().items[0].subsets[0].addresses[0].ip == "10.244.0.5"
    assert core.list_service_account_for_all_namespaces().kind == "ServiceAccountList"
    assert apps.list_deployment_for_all_namespaces().items[0].metadata.generation == 1
    assert apps.list_replica_set_for_all_namespaces().kind == "ReplicaSetList"
    assert apps.list_stateful_set_for_all_namespaces().kind == "StatefulSetList"
    assert client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces().kind == "EndpointSliceList"


def test_it_sets_server_metadata_on_create_and_answers_201(core, custom):
    pod = core.create_namespaced_pod("demo", {"metadata": {"generateName": "p-"}, "spec": {"containers": []}})
    assert pod.metadata.name.startswith("p-") and len(pod.metadata.name) == 7
    assert pod.metadata.uid and pod.metadata.resource_version and pod.metadata.namespace == "demo"
    assert pod.status.phase == "Pending"
    created = custom.create_namespaced_custom_object(
        "access.smi-spec.io",
        "v1alpha3",
        "demo",
        "traffictargets",
        {
            "apiVersion": "access.smi-spec.io/v1alpha3",
            "kind": "TrafficTarget",
            "metadata": {"name": "tt"},
            "spec": {"destination": {"kind": "ServiceAccount", "name": "web"}, "rules": [], "sources": []},
        },
    )
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["creationTimestamp"].endswith("Z")


def test_it_refuses_a_create_without_name_or_in_a_missing_namespace(core):
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_service("demo", {"metadata": {}})
    assert caught.value.status == 422
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_service("nope", {"metadata": {"name": "x"}})
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["message"] == 'namespaces "nope" not found'


def test_it_bumps_rv_and_generation_on_a_merge_patch_with_the_current_rv(custom):
    rv = _split(custom)["metadata"]["resourceVersion"]
    patched = _patch_split(
        custom, {"metadata": {"resourceVersion": rv}, "spec": {"backends": [{"service": "web-v1", "weight": 50}]}}
    )
    # One counter for all objects: the write takes the next value of the whole store.
    listed = custom.list_namespaced_custom_object(G, V, "demo", "trafficsplits")
    assert int(patched["metadata"]["resourceVersion"]) > int(rv)
    assert patched["metadata"]["resourceVersion"] == listed["metadata"]["resourceVersion"]
    assert patched["metadata"]["generation"] == 2


def test_it_keeps_the_rv_on_a_no_op_patch(custom, core):
    counter = core.list_namespaced_service("demo").metadata.resource_version
    rv = _split(custom)["metadata"]["resourceVersion"]
    same = _patch_split(custom, {"spec": {"backends": [{"service": "web-v1", "weight": 100}]}})
    assert same["metadata"]["resourceVersion"] == rv
    svc_rv = core.read_namespaced_service("web", "demo").metadata.resource_version
    again = core.patch_namespaced_service("web", "demo", {"metadata": {"labels": {"app": "web"}}})
    assert again.metadata.resource_version == svc_rv
    assert core.list_namespaced_service("demo").metadata.resource_version == counter


def test_it_replaces_lists_whole_in_a_merge_patch(custom):
    _patch_split(custom, {"spec": {"backends": [{"service": "a", "weight": 1}, {"service": "b", "weight": 2}]}})
    patched = _patch_split(custom, {"spec": {"backends": [{"service": "b", "weight": 3}]}})
    assert patched["spec"]["backends"] == [{"service": "b", "weight": 3}]


def test_it_answers_409_to_a_put_with_a_stale_rv_and_allows_builtin_put_without_rv(custom, core):
    split = _split(custom)
    split["metadata"]["resourceVersion"] = "1"
    with pytest.raises(client.ApiException) as caught:
        custom.replace_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split", split)
    assert caught.value.status == 409
    svc = core.read_namespaced_service("db", "demo").to_dict()
    body = {"metadata": {"name": "db", "labels": {"new": "yes"}}, "spec": {"ports": [{"port": 5432}]}}
    replaced = core.replace_namespaced_service("db", "demo", body)
    assert replaced.metadata.labels == {"new": "yes"}
    assert replaced.metadata.uid == svc["metadata"]["uid"]


def test_it_applies_json_patches_and_answers_422_to_a_failing_test_op(custom, apps):
    ops = [
        {"op": "test", "path": "/spec/service", "value": "web"},
        {"op": "replace", "path": "/spec/service", "value": "w"},
    ]
    patched = _patch_split(custom, ops, _content_type="application/json-patch+json")
    assert patched["spec"]["service"] == "w"
    with pytest.raises(client.ApiException) as caught:
        _patch_split(custom, ops, _content_type="application/json-patch+json")
    assert caught.value.status == 422
    # CustomObjectsApi sends a list body as merge-patch+json: the shape is wrong for that type.
    with pytest.raises(client.ApiException) as caught:
        _patch_split(custom, ops)
    assert caught.value.status == 400
    # The typed APIs send a list body as JSON patch.
    deploy = apps.patch_namespaced_deployment(
        "web-v1", "demo", [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    )
    assert deploy.spec.replicas == 3 and deploy.metadata.generation == 2


def test_it_applies_strategic_merge_only_to_labels_and_annotations(core, apps):
    svc = core.patch_namespaced_service(
        "web", "demo", {"metadata": {"labels": {"tier": "front"}, "annotations": {"a": "b"}}}
    )
    assert svc.metadata.labels["tier"] == "front" and svc.metadata.labels["app"] == "web"
    with pytest.raises(client.ApiException) as caught:
        apps.patch_namespaced_deployment("web-v1", "demo", {"spec": {"replicas": 5}})
    assert caught.value.status == 415


def test_it_filters_lists_by_label_and_field_selectors(core):
    def names(**kw):
        return sorted(s.metadata.name for s in core.list_namespaced_service("demo", **kw).items)

    assert names(label_selector="app=web,ver!=web") == ["web-v1"]
    assert names(label_selector="ver in (web-v1,db)") == ["db", "web-v1"]
    assert names(label_selector="ver notin (web-v1,db)") == ["web"]
    assert names(label_selector="app==db") == ["db"]
    assert names(label_selector="!nolabel,app") == ["db", "web", "web-v1"]
    assert names(label_selector="nolabel") == []
    assert names(field_selector="metadata.name=db") == ["db"]
    assert names(field_selector="metadata.name!=db,metadata.namespace=demo") == ["web", "web-v1"]
    pods = core.list_pod_for_all_namespaces(field_selector="status.phase=Running,spec.nodeName=node-1")
    assert sorted(p.metadata.name for p in pods.items) == ["db-0", "web-v1-0"]


@pytest.mark.parametrize(
    "kwargs",
    [{"label_selector": "app in (web"}, {"label_selector": "a b c"}, {"field_selector": "spec.type=ClusterIP"}],
)
def test_it_answers_400_to_a_bad_or_unsupported_selector(core, kwargs):
    with pytest.raises(client.ApiException) as caught:
        core.list_namespaced_service("demo", **kwargs)
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["reason"] == "BadRequest"


def test_it_does_not_persist_dry_run_writes(core, custom, server):
    rv = core.list_namespaced_service("demo").metadata.resource_version
    core.create_namespaced_service("demo", {"metadata": {"name": "dry"}}, dry_run="All")
    _patch_split(custom, {"spec": {"service": "dry"}}, dry_run="All")
    core.delete_namespaced_service("web", "demo", dry_run="All")
    assert core.list_namespaced_service("demo").metadata.resource_version == rv
    assert _split(custom)["spec"]["service"] == "web"
    assert len(core.list_namespaced_service("demo").items) == 3
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_service("demo", {"metadata": {"name": "dry"}}, dry_run="Some")
    assert caught.value.status == 400
    with pytest.raises(client.ApiException) as caught:
        _patch_split(custom, {"spec": {"backends": [{"service": "x", "weight": "heavy"}]}}, dry_run="All")
    assert caught.value.status == 422


def test_it_returns_the_deleted_object_for_pods_and_services_and_status_for_others(core, apps, custom):
    assert isinstance(core.delete_namespaced_service("db", "demo"), client.V1Service)
    assert isinstance(core.delete_namespaced_pod("db-0", "demo"), client.V1Pod)
    assert apps.delete_namespaced_deployment("web-v1", "demo")["status"] == "Success"
    deleted = custom.delete_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split")
    assert deleted["details"] == {
        "name": "web-split",
        "group": G,
        "kind": "trafficsplits",
        "uid": deleted["details"]["uid"],
    }
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_service("db", "demo")
    assert caught.value.status == 404


def test_it_serves_meshconfig_at_both_versions_with_apiversion_rewritten(custom):
    group = "config.openservicemesh.io"
    old = custom.get_namespaced_custom_object(group, "v1alpha1", "demo", "meshconfigs", "osm-mesh-config")
    new = custom.get_namespaced_custom_object(group, "v1alpha2", "demo", "meshconfigs", "osm-mesh-config")
    assert old["apiVersion"] == f"{group}/v1alpha1" and new["apiVersion"] == f"{group}/v1alpha2"
    assert old["metadata"]["resourceVersion"] == new["metadata"]["resourceVersion"]


def test_it_answers_404_for_unserved_versions_and_absent_crd_groups(kubeapi_factory):
    from lab.seeds import ALL_CRD_GROUPS, SMI_GROUPS

    server = kubeapi_factory(make_seed(crd_groups=ALL_CRD_GROUPS - SMI_GROUPS))
    api = config.new_client_from_config(str(server.kubeconfig))
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert "split.smi-spec.io" not in groups and "config.openservicemesh.io" in groups
    for path in (
        "/apis/split.smi-spec.io",
        "/apis/split.smi-spec.io/v1alpha2",
        "/apis/split.smi-spec.io/v1alpha2/namespaces/demo/trafficsplits",
        "/apis/split.smi-spec.io/v1alpha2/trafficsplits",
        "/apis/config.openservicemesh.io/v1alpha3/namespaces/demo/meshconfigs",
    ):
        assert raw(server, "GET", path).status == 404, path
    with pytest.raises(client.ApiException) as caught:
        client.CustomObjectsApi(api).list_namespaced_custom_object(G, V, "demo", "trafficsplits")
    assert caught.value.status == 404
    server.set_crd_groups(ALL_CRD_GROUPS)
    assert raw(server, "GET", "/apis/split.smi-spec.io/v1alpha2/namespaces/demo/trafficsplits").status == 200


def test_it_serves_discovery_documents(api, server):
    assert client.VersionApi(api).get_code().git_version == "v1.30.4"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    resources = client.AppsV1Api(api).get_api_resources()
    assert {"deployments", "replicasets", "statefulsets"} <= {r.name for r in resources.resources}
    config_group = raw(server, "GET", "/apis/config.openservicemesh.io").body
    assert config_group["preferredVersion"]["version"] == "v1alpha2"
    split_resources = raw(server, "GET", "/apis/split.smi-spec.io/v1alpha2").body
    assert split_resources["kind"] == "APIResourceList"
    assert split_resources["resources"][0]["name"] == "trafficsplits"
    assert "watch" in split_resources["resources"][0]["verbs"]
