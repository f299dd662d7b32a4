"""A weight write refreshes the split's snapshot row itself (pages show the new weights before the next poll), so it
must also redraw the cluster's snapshot version, or a worker keeping what it read of the snapshot
(apps.metrics.resolve.Resolver.current) would go on with the split as it was."""

from __future__ import annotations

from apps.mesh.models import MeshState, TrafficSplit
from tests.helpers import change_bookstore_weights


def test_a_write_redraws_the_snapshot_version(bookstore, operator):
    before = MeshState.objects.get(cluster=bookstore).snapshot_version
    outcome = change_bookstore_weights(bookstore, operator, 30, 70)
    assert outcome.applied, outcome.record.reason
    split = TrafficSplit.objects.get(cluster=bookstore, namespace="bookstore", name="bookstore-split")
    assert {b["service"]: b["weight"] for b in split.backends} == {"bookstore-v1": 30, "bookstore-v2": 70}
    assert MeshState.objects.get(cluster=bookstore).snapshot_version != before


def test_a_write_that_finds_the_split_gone_redraws_it_too(bookstore, operator, kubeapi):
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    api = k8s_config.new_client_from_config(config_file=str(kubeapi.kubeconfig))
    k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
        "split.smi-spec.io", "v1alpha2", "bookstore", "trafficsplits", "bookstore-split"
    )
    before = MeshState.objects.get(cluster=bookstore).snapshot_version
    outcome = change_bookstore_weights(bookstore, operator, 30, 70)
    assert not outcome.applied and "no longer exists" in outcome.record.reason
    assert not TrafficSplit.objects.filter(cluster=bookstore, name="bookstore-split").exists()
    assert MeshState.objects.get(cluster=bookstore).snapshot_version != before
