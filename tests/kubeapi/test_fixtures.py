"""The pytest fixtures other suites use: `kubeapi` (bookstore by default, or the marked seed) and `kubeapi_factory`."""

from __future__ import annotations

import pytest
from kubernetes import client, config


def test_it_serves_the_bookstore_seed_by_default(kubeapi):
    api = config.new_client_from_config(str(kubeapi.kubeconfig))
    pods = client.CoreV1Api(api).list_pod_for_all_namespaces().items
    assert any(c.name == "envoy" for p in pods for c in p.spec.containers)
    splits = client.CustomObjectsApi(api).list_cluster_custom_object("split.smi-spec.io", "v1alpha2", "trafficsplits")
    assert splits["items"]


@pytest.mark.kubeapi_seed("synthetic", services=12)
def test_it_serves_the_seed_named_by_the_marker(kubeapi):
    api = config.new_client_from_config(str(kubeapi.kubeconfig))
    assert len(client.CoreV1Api(api).list_service_for_all_namespaces().items) >= 12
