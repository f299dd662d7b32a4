"""The seeds served by the stand-in, read back through the official client via a kubeconfig."""

import pytest
from kubernetes import client, config

from lab.kubeapi import KubeAPIServer
from lab.seeds.loader import load_seed


@pytest.fixture(scope="module")
def bookstore_api(tmp_path_factory):
    server = KubeAPIServer(load_seed("bookstore")).start()
    kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    yield config.new_client_from_config(config_file=str(kubeconfig))
    server.stop()


def test_it_serves_the_bookstore_demo_to_the_official_client(bookstore_api):
    core = client.CoreV1Api(bookstore_api)
    services = {s.metadata.name for s in core.list_namespaced_service("bookstore").items}
    assert services == {"bookstore", "bookstore-v1", "bookstore-v2"}
    meshed = core.list_pod_for_all_namespaces(label_selector="osm-proxy-uuid").items
    assert len(meshed) == 6
    assert all("envoy" in [c.name for c in p.spec.containers] for p in meshed)
    assert all(p.status.phase == "Running" for p in meshed)
    custom = client.CustomObjectsApi(bookstore_api)
    split = custom.get_namespaced_custom_object(
        "split.smi-spec.io", "v1alpha2", "bookstore", "trafficsplits", "bookstore-split"
    )
    assert split["spec"]["backends"] == [{"service": "bookstore-v1", "weight": 100}]
    mesh_config = custom.get_namespaced_custom_object(
        "config.openservicemesh.io", "v1alpha2", "osm-system", "meshconfigs", "osm-mesh-config"
    )
    assert mesh_config["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] is False
    slices = client.DiscoveryV1Api(bookstore_api).list_namespaced_endpoint_slice(
        "bookstore", label_selector="kubernetes.io/service-name=bookstore"
    )
    assert len(slices.items[0].endpoints) == 2


def test_it_keeps_owner_references_pointing_at_served_objects(bookstore_api):
    apps = client.AppsV1Api(bookstore_api)
    uids = {rs.metadata.uid for rs in apps.list_namespaced_replica_set("bookstore").items}
    pods = client.CoreV1Api(bookstore_api).list_namespaced_pod("bookstore").items
    assert all(p.metadata.owner_references[0].uid in uids for p in pods)


def test_it_serves_a_small_synthetic_mesh(tmp_path):
    seed = load_seed("synthetic", services=50)
    with KubeAPIServer(seed) as server:
        api = config.new_client_from_config(config_file=str(server.write_kubeconfig(tmp_path / "config")))
        core = client.CoreV1Api(api)
        services = core.list_service_for_all_namespaces().items
        assert len(services) == sum(1 for o in seed.objects if o["kind"] == "Service")
        pods = core.list_pod_for_all_namespaces().items
        assert len(pods) == sum(1 for o in seed.objects if o["kind"] == "Pod")
        assert core.list_pod_for_all_namespaces(label_selector="osm-proxy-uuid").items
        splits = client.CustomObjectsApi(api).list_cluster_custom_object(
            "split.smi-spec.io", "v1alpha2", "trafficsplits"
        )
        assert len(splits["items"]) == 5
