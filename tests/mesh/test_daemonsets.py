"""The collector lists DaemonSets (one call, all namespaces, as for Deployments) into Workload rows of kind DaemonSet,
and their pods name them as their workload."""

from __future__ import annotations

import pytest

from apps.clusters.models import CollectionRun
from apps.mesh.models import Pod, Workload
from apps.mesh.services import collect_and_record
from tests.workload_objects import bookstore_with_extra_workloads

pytestmark = pytest.mark.django_db


def test_it_collects_daemonsets_bare_replicasets_and_bare_pods_as_workloads(kubeapi_factory, cluster_for):
    server = kubeapi_factory(bookstore_with_extra_workloads())
    cluster = cluster_for(server)
    server.requests.reset()

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, run.warnings
    lists = [r.path for r in server.requests.entries if r.verb == "list" and "daemonsets" in r.path]
    assert lists == ["/apis/apps/v1/daemonsets"]  # one call for every namespace
    shipper = Workload.objects.get(cluster=cluster, kind="DaemonSet")
    assert (shipper.namespace, shipper.name, shipper.service_account) == ("bookwarehouse", "log-shipper", "log-shipper")
    # A DaemonSet has no spec.replicas: how many it wants and has ready is the controller's count in its status.
    assert (shipper.replicas, shipper.ready_replicas) == (2, 1)
    assert shipper.template_labels == {"app": "log-shipper"} and shipper.labels == {"team": "platform"}
    pods = Pod.objects.filter(cluster=cluster, workload_kind="DaemonSet", workload_name="log-shipper")
    assert sorted((p.ready, p.has_sidecar, p.restarts) for p in pods) == [(False, False, 0), (True, True, 3)]

    bare_rs = Workload.objects.get(cluster=cluster, kind="ReplicaSet")
    assert bare_rs.name == "reports-6d5f8"
    assert Pod.objects.get(cluster=cluster, name="reports-6d5f8-m2x7q").workload_kind == "ReplicaSet"
    debug = Pod.objects.get(cluster=cluster, name="debug-shell")
    assert (debug.workload_kind, debug.workload_name) == ("", "")


def test_it_keeps_the_other_workloads_when_daemonsets_are_forbidden(kubeapi_factory, cluster_for):
    """A ClusterRole written before Meshboard read DaemonSets: the run is partial and says so, nothing else is lost."""
    server = kubeapi_factory(bookstore_with_extra_workloads())
    server.faults.add(r"^/apis/apps/v1/daemonsets$", status=403, verb="list")
    cluster = cluster_for(server)

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.PARTIAL
    assert any("daemonsets" in w for w in run.warnings), run.warnings
    kinds = set(Workload.objects.filter(cluster=cluster).values_list("kind", flat=True))
    assert kinds == {"Deployment", "StatefulSet", "ReplicaSet"}
    assert Pod.objects.filter(cluster=cluster, workload_kind="DaemonSet").count() == 2  # their pods still say whose


def test_it_lists_daemonsets_per_watched_namespace_in_namespace_scoped_mode(kubeapi_factory, cluster_for):
    server = kubeapi_factory(bookstore_with_extra_workloads())
    cluster = cluster_for(server, watched_namespaces=["bookwarehouse", "bookbuyer"])
    server.requests.reset()

    _run, error = collect_and_record(cluster)

    assert error is None, error
    lists = sorted(r.path for r in server.requests.entries if r.verb == "list" and "daemonsets" in r.path)
    assert lists == [
        "/apis/apps/v1/namespaces/bookbuyer/daemonsets",
        "/apis/apps/v1/namespaces/bookwarehouse/daemonsets",
    ]
    assert Workload.objects.filter(cluster=cluster, kind="DaemonSet", name="log-shipper").exists()
