"""An Istio mesh read through the stand-in: the bookstore after the move (`istio-bookstore`: OSM removed, the migration
assistant's bundle applied, istiod of the AKS add-on, istio-proxy sidecars), and Istio's kinds absent on an OSM
cluster."""

from __future__ import annotations

import pytest

from apps.clusters.models import CollectionRun
from apps.mesh.models import (
    IstioAuthorizationPolicy,
    IstioDestinationRule,
    IstioGateway,
    IstioPeerAuthentication,
    IstioServiceEntry,
    IstioVirtualService,
    MeshNamespace,
    MeshState,
    Pod,
)
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed

pytestmark = pytest.mark.django_db

ISTIO_TABLES = {
    "virtualservices": IstioVirtualService,
    "destinationrules": IstioDestinationRule,
    "serviceentries": IstioServiceEntry,
    "gateways": IstioGateway,
    "authorizationpolicies": IstioAuthorizationPolicy,
    "peerauthentications": IstioPeerAuthentication,
}
ISTIO_KINDS = {
    "VirtualService": "virtualservices",
    "DestinationRule": "destinationrules",
    "ServiceEntry": "serviceentries",
    "Gateway": "gateways",
    "AuthorizationPolicy": "authorizationpolicies",
    "PeerAuthentication": "peerauthentications",
}


def test_it_detects_istio_and_collects_its_objects_with_one_list_per_kind(kubeapi_factory, cluster_for):
    seed = load_seed("istio-bookstore")
    server = kubeapi_factory(seed)
    cluster = cluster_for(server)
    server.requests.reset()

    run, error = collect_and_record(cluster)

    assert error is None, error
    # No SMI and no OSM on an Istio cluster is not a gap: the run is whole.
    assert run.status == CollectionRun.Status.OK, run.warnings
    assert not any("OSM" in w or "SMI" in w for w in run.warnings), run.warnings
    state = MeshState.objects.get(cluster=cluster)
    assert state.is_istio and state.mesh_kind == "istio"
    assert state.istio_revisions == ["asm-1-27"]
    assert state.istio_namespace == "aks-istio-system"
    assert state.istio_version == "1.27.3"
    assert state.osm_version == "" and state.mesh_name == ""

    lists = [r for r in server.requests.entries if r.verb == "list"]
    for plural in ISTIO_TABLES:
        paths = [r.path for r in lists if r.path.endswith(f"/{plural}")]
        group = "security.istio.io" if plural in ("authorizationpolicies", "peerauthentications") else "networking"
        assert len(paths) == 1 and paths[0] == f"/apis/{group}{'.istio.io' * (group == 'networking')}/v1/{plural}"
    seeded = {plural: set() for plural in ISTIO_TABLES}
    for obj in seed.objects:
        if obj["kind"] in ISTIO_KINDS:
            seeded[ISTIO_KINDS[obj["kind"]]].add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
    for plural, model in ISTIO_TABLES.items():
        stored = set(model.objects.filter(cluster=cluster).values_list("namespace", "name"))
        assert stored == seeded[plural], plural
        assert run.counts[plural] == len(seeded[plural])
    assert run.counts["authorizationpolicies"] == 11 and run.counts["virtualservices"] == 1
    policy = IstioAuthorizationPolicy.objects.get(cluster=cluster, namespace="bookwarehouse", name="meshboard-tt-mysql")
    assert policy.api_version == "security.istio.io/v1"
    assert policy.spec["rules"][0]["from"][0]["source"]["principals"] == [
        "cluster.local/ns/bookwarehouse/sa/bookwarehouse"
    ]

    # Injection: the revision label on the book namespaces, istio-proxy in their pods and the ingress controller's.
    namespaces = {n.name: n for n in MeshNamespace.objects.filter(cluster=cluster)}
    for name in ("bookstore", "bookbuyer", "bookthief", "bookwarehouse"):
        assert namespaces[name].istio_revision == "asm-1-27" and namespaces[name].injection_enabled
        assert namespaces[name].monitored_by == ""
    assert not namespaces["ingress-nginx"].injection_enabled
    meshed = dict(Pod.objects.filter(cluster=cluster).values_list("name", "has_sidecar"))
    book_pods = Pod.objects.filter(cluster=cluster, namespace__startswith="book")
    assert book_pods.count() == 6 and all(p.has_sidecar for p in book_pods)
    assert all("istio-proxy" in [c["name"] for c in p.containers] for p in book_pods)
    istiod = Pod.objects.get(cluster=cluster, namespace="aks-istio-system")
    assert not meshed[istiod.name]
    assert Pod.objects.get(cluster=cluster, namespace="ingress-nginx").has_sidecar


def test_it_reads_istio_as_not_installed_without_its_crds(kubeapi, cluster_for):
    """The OSM bookstore serves no Istio group: no Istio list is sent (so no 404), the tables stay empty."""
    cluster = cluster_for(kubeapi)
    kubeapi.requests.reset()

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, run.warnings
    assert not [r for r in kubeapi.requests.entries if "istio.io" in r.path]
    for plural, model in ISTIO_TABLES.items():
        assert run.counts[plural] == 0 and not model.objects.filter(cluster=cluster).exists()
    state = MeshState.objects.get(cluster=cluster)
    assert not state.is_istio and state.istio_revisions == [] and state.mesh_kind == "osm"


def test_it_empties_the_istio_tables_when_istio_is_uninstalled(kubeapi_factory, cluster_for):
    server = kubeapi_factory(load_seed("istio-bookstore"))
    cluster = cluster_for(server)
    collect_and_record(cluster)
    assert IstioAuthorizationPolicy.objects.filter(cluster=cluster).exists()

    server.set_crd_groups(frozenset())
    _run, error = collect_and_record(cluster)

    assert error is None, error
    for model in ISTIO_TABLES.values():
        assert not model.objects.filter(cluster=cluster).exists()
