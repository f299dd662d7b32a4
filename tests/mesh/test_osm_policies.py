"""The collector reads OSM's policy API (IngressBackend, Egress, UpstreamTrafficSetting, Retry), its
MeshRootCertificates and the networking.k8s.io Ingresses and IngressClasses: one list per kind, only when discovery
says they are served, per watched namespace in namespace-scoped mode, hostile strings kept as text."""

from __future__ import annotations

import dataclasses

import pytest

from apps.clusters.models import CollectionRun
from apps.mesh import decode
from apps.mesh.models import (
    Egress,
    Ingress,
    IngressBackend,
    IngressClass,
    MeshRootCertificate,
    MeshState,
    Retry,
    UpstreamTrafficSetting,
)
from apps.mesh.services import collect_and_record
from lab.seeds import ALL_CRD_GROUPS
from lab.seeds.loader import load_seed
from tests.osm_policy_objects import backend, egress, ingress, ingress_backend, retry

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script> & \' " {{ }} {% x %} \u202e'
POLICY_PLURALS = ("ingressbackends", "egresses", "upstreamtrafficsettings", "retries")


def test_it_collects_the_bookstore_seeds_ingress_egress_resilience_and_root_certificate(kubeapi, cluster_for):
    cluster = cluster_for(kubeapi)

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, run.warnings
    ingress_row = Ingress.objects.get(cluster=cluster, namespace="bookstore", name="bookstore")
    assert ingress_row.ingress_class == "nginx"
    assert ingress_row.routes == [
        {"host": "bookstore.example.com", "path": "/", "path_type": "Prefix", "service": "bookstore", "port": 14001}
    ]
    nginx = IngressClass.objects.get(cluster=cluster, name="nginx")
    assert (nginx.namespace, nginx.controller) == ("", "k8s.io/ingress-nginx")
    http = IngressBackend.objects.get(cluster=cluster, namespace="bookstore", name="bookstore-http")
    assert http.backends == [{"name": "bookstore", "port": 14001, "protocol": "http", "tls": None}]
    assert http.sources == [{"kind": "Service", "name": "ingress-nginx-controller", "namespace": "ingress-nginx"}]
    mtls = IngressBackend.objects.get(cluster=cluster, namespace="bookstore", name="bookstore-mtls")
    assert mtls.backends[0]["tls"] == {"skipClientCertValidation": False, "sniHosts": []}
    assert {"kind": "AuthenticatedPrincipal", "name": "ingress-nginx.ingress-nginx.cluster.local", "namespace": ""} in (
        mtls.sources
    )
    out = Egress.objects.get(cluster=cluster, namespace="bookbuyer", name="bookbuyer-external")
    assert (out.hosts, out.ports) == (["books.example.com"], [{"number": 80, "protocol": "http"}])
    assert out.sources == [{"kind": "ServiceAccount", "name": "bookbuyer", "namespace": "bookbuyer"}]
    setting = UpstreamTrafficSetting.objects.get(cluster=cluster, name="bookstore-rate-limit")
    assert setting.host == "bookstore.bookstore.svc.cluster.local"
    assert setting.connection_settings["tcp"]["maxConnections"] == 100
    assert setting.http_routes[0]["path"] == ".*a-book.*new"
    policy = Retry.objects.get(cluster=cluster, namespace="bookbuyer", name="bookbuyer-to-bookstore")
    assert policy.source == {"kind": "ServiceAccount", "name": "bookbuyer", "namespace": "bookbuyer"}
    assert policy.retry_policy["numRetries"] == 3
    root = MeshRootCertificate.objects.get(cluster=cluster, namespace="osm-system")
    assert (root.name, root.provider, root.state, root.trust_domain) == (
        "osm-mesh-root-certificate",
        "tresor",
        "active",
        "cluster.local",
    )
    assert root.provider_spec == {"ca": {"secretRef": {"name": "osm-ca-bundle", "namespace": "osm-system"}}}
    assert root.state_since is not None  # the seed's creationTimestamp, as it has no condition
    state = MeshState.objects.get(cluster=cluster)
    assert {"policy.openservicemesh.io", "networking.k8s.io"} <= set(state.served_groups)
    assert state.mesh_root_certificates_enabled is True  # the controller's --enable-mesh-root-certificate=true


def _bookstore_with(*objects: dict, crd_groups: frozenset[str] = ALL_CRD_GROUPS):
    seed = load_seed("bookstore", crd_groups=crd_groups)
    return dataclasses.replace(seed, objects=[*seed.objects, *objects])


def test_it_keeps_hostile_strings_as_text(kubeapi_factory, cluster_for):
    server = kubeapi_factory(
        _bookstore_with(
            ingress("bookstore", "hostile", HOSTILE, HOSTILE, host=HOSTILE, path="/" + HOSTILE),
            ingress_backend(
                "bookstore", "hostile", [backend(HOSTILE, 80, HOSTILE)], [{"kind": HOSTILE, "name": HOSTILE}]
            ),
            egress("bookbuyer", "hostile", sources=[(HOSTILE, HOSTILE)], hosts=[HOSTILE]),
            retry(
                "bookbuyer", "hostile", source=(HOSTILE, HOSTILE), destinations=[(HOSTILE, HOSTILE)], retry_on=HOSTILE
            ),
        )
    )
    cluster = cluster_for(server)

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, run.warnings
    route = Ingress.objects.get(cluster=cluster, name="hostile").routes[0]
    assert (route["host"], route["path"], route["service"], route["port"]) == (HOSTILE, "/" + HOSTILE, HOSTILE, HOSTILE)
    row = IngressBackend.objects.get(cluster=cluster, name="hostile")
    assert (row.backends[0]["name"], row.backends[0]["protocol"], row.sources[0]["kind"]) == (HOSTILE,) * 3
    assert Egress.objects.get(cluster=cluster, name="hostile").hosts == [HOSTILE]
    assert Retry.objects.get(cluster=cluster, name="hostile").retry_policy["retryOn"] == HOSTILE


def test_its_decoders_read_fields_of_the_wrong_type_as_absent():
    """A CRD's schema makes the API server refuse most of these; an object stored before a schema change, or a kind
    served without one, may still hold them."""
    odd_backend = {"metadata": {"name": "odd", "namespace": "bookstore"}, "spec": {
        "backends": [{"name": 7, "port": {"number": "80", "protocol": ["http"]}, "tls": "yes"}, "junk"],
        "sources": {"kind": "Service"},
        "matches": None,
    }, "status": []}  # fmt: skip
    row = decode.ingress_backend_row(odd_backend)
    assert row["backends"] == [{"name": "", "port": None, "protocol": "", "tls": None}]
    assert (row["sources"], row["matches"], row["status"]) == ([], [], "")
    mrc = decode.mesh_root_certificate_row(
        {
            "metadata": {"name": "odd", "creationTimestamp": 5, "managedFields": "x"},
            "spec": {"provider": {"tresor": "yes", "vault": {"host": "v"}}, "trustDomain": ["a"]},
            "status": {"state": 3, "conditions": [{"lastTransitionTime": "not a time"}, "junk"]},
        }
    )
    assert (mrc["provider"], mrc["provider_spec"], mrc["trust_domain"], mrc["state"], mrc["state_since"]) == (
        "vault",
        {"host": "v"},
        "",
        "",
        None,
    )
    route = decode.ingress_row({"metadata": {"name": "i"}, "spec": {"rules": [{"http": {"paths": [{"backend": 1}]}}]}})
    assert route["routes"] == [{"host": "", "path": "", "path_type": "", "service": "", "port": None}]
    assert decode.retry_row({"metadata": {"name": "r"}, "spec": {"source": "sa"}})["source"] == {}


def test_it_lists_nothing_of_groups_the_cluster_does_not_serve_and_empties_their_tables(kubeapi, cluster_for):
    cluster = cluster_for(kubeapi)
    collect_and_record(cluster)
    assert IngressBackend.objects.filter(cluster=cluster).exists() and Retry.objects.filter(cluster=cluster).exists()

    kubeapi.set_crd_groups(kubeapi.registry.crd_groups - {"policy.openservicemesh.io"})
    kubeapi.requests.reset()
    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, run.warnings
    assert not any(p.split("/")[-1] in POLICY_PLURALS for p in (r.path for r in kubeapi.requests.entries))
    for model in (IngressBackend, Egress, UpstreamTrafficSetting, Retry):
        assert not model.objects.filter(cluster=cluster).exists(), model
    assert Ingress.objects.filter(cluster=cluster).exists()  # networking.k8s.io is still served


def test_it_reads_a_404_on_mesh_root_certificates_as_none_as_on_osm_1_1(kubeapi, cluster_for):
    """OSM 1.1 serves config.openservicemesh.io/v1alpha2 (its MeshConfig) without the MeshRootCertificate kind."""
    cluster = cluster_for(kubeapi)
    collect_and_record(cluster)
    assert MeshRootCertificate.objects.filter(cluster=cluster).exists()
    kubeapi.faults.add(r"/meshrootcertificates$", 404, verb="list")

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, run.warnings
    assert not MeshRootCertificate.objects.filter(cluster=cluster).exists()
    assert not run.warnings


def test_it_keeps_the_last_rows_of_a_kind_rbac_forbids(kubeapi, cluster_for):
    cluster = cluster_for(kubeapi)
    collect_and_record(cluster)
    kubeapi.faults.add(r"/egresses$", 403, verb="list")

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.PARTIAL
    assert any("egresses" in w for w in run.warnings)
    assert Egress.objects.filter(cluster=cluster, name="bookbuyer-external").exists()


def test_it_lists_the_namespaced_kinds_per_watched_namespace_and_no_ingress_class(kubeapi, cluster_for):
    cluster = cluster_for(kubeapi, watched_namespaces=["bookstore", "bookbuyer"])
    kubeapi.requests.reset()

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, run.warnings
    lists = [r.path for r in kubeapi.requests.entries if r.verb == "list"]
    for plural in (*POLICY_PLURALS, "ingresses", "meshrootcertificates"):
        listed = sorted(p.split("/namespaces/")[1].split("/")[0] for p in lists if p.endswith(f"/{plural}"))
        assert listed == ["bookbuyer", "bookstore"], plural
    assert not any(p.endswith("/ingressclasses") for p in lists)
    assert any("IngressClasses are cluster-wide" in w for w in run.warnings)
    assert set(IngressBackend.objects.filter(cluster=cluster).values_list("name", flat=True)) == {
        "bookstore-http",
        "bookstore-mtls",
    }
    assert not MeshRootCertificate.objects.filter(cluster=cluster).exists()  # it lives in osm-system, not watched
