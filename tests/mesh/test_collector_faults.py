"""A cluster that fails: each failure is recorded with an actionable reason, the previous snapshot stays, and the
next run recovers by itself. Faults come from the stand-in's fault control; the client is never patched."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from apps.clusters.models import CollectionRun
from apps.mesh.models import MeshState, Pod, Service
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def collected(kubeapi, cluster_for):
    cluster = cluster_for(kubeapi)
    run, error = collect_and_record(cluster)
    assert error is None and run.status == CollectionRun.Status.OK
    return cluster, Service.objects.filter(cluster=cluster).count(), Pod.objects.filter(cluster=cluster).count()


def _snapshot_intact(cluster, services, pods):
    return (
        Service.objects.filter(cluster=cluster).count() == services
        and Pod.objects.filter(cluster=cluster).count() == pods
        and MeshState.objects.filter(cluster=cluster).exists()
    )


def test_it_records_401_as_a_failure_a_person_must_fix_and_recovers(kubeapi, collected):
    cluster, services, pods = collected
    kubeapi.faults.add(r".", status=401)

    run, error = collect_and_record(cluster)

    assert run.status == CollectionRun.Status.FAILED
    assert error is not None and not error.transient
    assert "401" in run.error and "credentials" in run.error
    assert _snapshot_intact(cluster, services, pods)

    kubeapi.faults.clear()
    run, error = collect_and_record(cluster)
    assert error is None and run.status == CollectionRun.Status.OK


def test_it_keeps_the_kind_rbac_forbids_and_refreshes_the_rest(kubeapi, collected):
    cluster, _services, pods = collected
    kubeapi.faults.add(r"^/api/v1/pods$", status=403, verb="list")
    api = k8s_config.new_client_from_config(config_file=str(kubeapi.kubeconfig))
    k8s.CoreV1Api(api).patch_namespaced_service("bookstore", "bookstore", {"metadata": {"labels": {"tier": "gold"}}})

    run, error = collect_and_record(cluster)

    assert error is None
    assert run.status == CollectionRun.Status.PARTIAL
    assert any("forbidden" in w.lower() and "pods" in w for w in run.warnings)
    assert Pod.objects.filter(cluster=cluster).count() == pods
    assert Service.objects.get(cluster=cluster, name="bookstore").labels["tier"] == "gold"


def test_it_treats_500_as_transient_and_keeps_the_snapshot(kubeapi, collected):
    cluster, services, pods = collected
    kubeapi.faults.add(r"^/api/v1/services$", status=500)

    run, error = collect_and_record(cluster)

    assert run.status == CollectionRun.Status.FAILED
    assert error is not None and error.transient
    assert "500" in run.error
    assert _snapshot_intact(cluster, services, pods)


def test_it_gives_up_on_a_slow_api_server_within_the_read_timeout(kubeapi, collected, settings):
    cluster, services, pods = collected
    settings.MESHBOARD_KUBE_READ_TIMEOUT = 0.5
    kubeapi.faults.add(r"^/api/v1/pods$", delay=3.0)

    run, error = collect_and_record(cluster)

    assert error is not None and error.transient
    assert "did not answer in time" in run.error
    assert run.duration_ms < 3000
    assert _snapshot_intact(cluster, services, pods)


def test_it_says_when_the_api_server_is_unreachable(kubeapi, collected):
    cluster, services, pods = collected
    kubeapi.stop()

    run, error = collect_and_record(cluster)

    assert error is not None and error.transient
    assert "cannot reach the API server" in run.error
    assert _snapshot_intact(cluster, services, pods)


def test_it_says_when_the_kubeconfig_cannot_be_read(kubeapi, cluster_for, tmp_path):
    cluster = cluster_for(kubeapi, kubeconfig_path=str(tmp_path / "missing.yaml"))

    run, error = collect_and_record(cluster)

    assert error is not None and not error.transient
    assert "cannot load the kubeconfig" in run.error and "missing.yaml" in run.error


def test_it_stores_objects_with_wrong_field_types_without_failing(kubeapi_factory, cluster_for):
    seed = load_seed("bookstore")
    odd = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "odd", "namespace": "bookstore", "labels": {"app": "odd"}},
        "spec": {"containers": [{"name": "app", "image": "odd:1"}], "nodeName": 42},
        "status": {"phase": "Pending", "conditions": {"type": "Ready"}, "containerStatuses": "none"},
    }
    seed.objects.append(odd)
    cluster = cluster_for(kubeapi_factory(seed))

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK
    pod = Pod.objects.get(cluster=cluster, name="odd")
    assert (pod.phase, pod.ready, pod.node_name, pod.has_sidecar) == ("Pending", False, "", False)
