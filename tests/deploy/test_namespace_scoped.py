"""Namespace-scoped mode: a Cluster with watched namespaces is read namespace by namespace, nothing cluster-wide is
asked for, and what could not be seen is said in the run's warnings."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from apps.clusters.models import Cluster, CollectionRun
from apps.mesh import collector
from apps.mesh.models import MeshNamespace, MeshState, Node, Pod, TrafficSplit
from apps.mesh.services import collect_and_record

pytestmark = pytest.mark.django_db


def _cluster(server, namespaces: list[str]) -> Cluster:
    return Cluster.objects.create(name="lab", kubeconfig_path=str(server.kubeconfig), watched_namespaces=namespaces)


def test_it_registers_watched_namespaces_with_add_cluster(capsys) -> None:
    call_command("add_cluster", "team", "--in-cluster", "--namespaces", " bookstore,bookbuyer ,")
    cluster = Cluster.objects.get(name="team")
    assert cluster.watched_namespaces == ["bookstore", "bookbuyer"] and cluster.namespace_scoped
    assert "watching namespaces bookstore, bookbuyer only" in capsys.readouterr().out

    call_command("add_cluster", "team", "--in-cluster", "--namespaces=")
    cluster.refresh_from_db()
    assert cluster.watched_namespaces == [] and not cluster.namespace_scoped
    assert "watching the whole cluster" in capsys.readouterr().out


@pytest.mark.parametrize("namespaces", ["Bookstore", "book_store", "a,a", "-x"])
def test_it_refuses_what_is_not_a_list_of_namespace_names(namespaces: str) -> None:
    with pytest.raises(CommandError, match="watched_namespaces"):
        call_command("add_cluster", "team", "--in-cluster", f"--namespaces={namespaces}")
    assert not Cluster.objects.filter(name="team").exists()


def test_it_reads_only_the_watched_namespaces_and_says_what_it_cannot_see(kubeapi) -> None:
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig))
    collect_and_record(cluster)  # cluster-wide first: nodes and every namespace are in the snapshot
    assert Node.objects.filter(cluster=cluster).exists()
    cluster.watched_namespaces = ["bookstore", "bookbuyer"]
    cluster.save()
    kubeapi.requests.reset()

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, run.warnings
    paths = [r.path for r in kubeapi.requests.entries]
    assert not any(p.endswith("/nodes") or p == "/api/v1/namespaces" for p in paths), "nothing cluster-wide"
    assert not any("/endpoints/" in p for p in paths)
    assert {p.split("/namespaces/")[1].split("/")[0] for p in paths if "/namespaces/" in p} == {
        "bookstore",
        "bookbuyer",
    }
    assert set(MeshNamespace.objects.filter(cluster=cluster).values_list("name", flat=True)) == {
        "bookstore",
        "bookbuyer",
    }
    assert MeshNamespace.objects.get(cluster=cluster, name="bookstore").monitored_by == "osm"
    assert set(Pod.objects.filter(cluster=cluster).values_list("namespace", flat=True)) == {"bookstore", "bookbuyer"}
    assert TrafficSplit.objects.filter(cluster=cluster, namespace="bookstore").exists()
    # Nodes are unknown now, not what an earlier cluster-wide run saw.
    assert not Node.objects.filter(cluster=cluster).exists()
    state = MeshState.objects.get(cluster=cluster)
    assert state.apiserver_addresses == [] and state.osm_version == ""
    expected = collector.scope_warnings(("bookstore", "bookbuyer"))
    assert run.warnings[: len(expected)] == expected
    assert all(w.endswith(".") for w in run.warnings), run.warnings


def test_it_shows_the_mesh_when_the_control_plane_namespace_is_watched(kubeapi) -> None:
    run, error = collect_and_record(_cluster(kubeapi, ["bookstore", "osm-system"]))

    assert error is None
    state = MeshState.objects.get(cluster=run.cluster)
    assert state.mesh_name == "osm" and state.osm_version and state.meshconfig
    assert not any("No OSM controller" in w or "not in the watched namespaces" in w for w in run.warnings)


def test_it_says_when_a_watched_namespace_does_not_exist(kubeapi) -> None:
    run, error = collect_and_record(_cluster(kubeapi, ["bookstore", "gone"]))

    assert error is None
    assert "The watched namespace gone does not exist in the cluster." in run.warnings
    assert set(MeshNamespace.objects.filter(cluster=run.cluster).values_list("name", flat=True)) == {"bookstore"}


def test_it_keeps_a_kind_it_may_not_read_in_one_namespace_as_it_was(kubeapi) -> None:
    cluster = _cluster(kubeapi, ["bookstore", "bookbuyer"])
    collect_and_record(cluster)
    before = set(Pod.objects.filter(cluster=cluster).values_list("namespace", "name"))
    assert {ns for ns, _ in before} == {"bookstore", "bookbuyer"}
    kubeapi.faults.add(r"^/api/v1/namespaces/bookbuyer/pods$", 403, verb="list")

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.PARTIAL
    assert "pods" in " ".join(run.warnings) and "forbidden" in " ".join(run.warnings)
    # Not half a table: bookstore's pods are not stored without bookbuyer's.
    assert set(Pod.objects.filter(cluster=cluster).values_list("namespace", "name")) == before
