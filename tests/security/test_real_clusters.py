"""Meshboard against a cluster secured as real ones are: the stand-in over HTTPS with its own CA, authenticating
bearer tokens or client certificates and authorizing with the RBAC in deploy/kubernetes (or a test's copy of it).

The cluster collector runs as `meshboard-collector`, the weight write as `meshboard-web`, as in the manifests: the
Cluster row's kubeconfig file is rewritten between the two, as each pod has its own identity. Each failure is
checked where people read it: the run record's reason (operators), the banner's sentence (everyone), the warnings
the Mesh page lists, the audit record of a write.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import pytest
import yaml

from apps.canary.models import WeightChange
from apps.clusters.freshness import freshness
from apps.clusters.models import Cluster, CollectionRun
from apps.mesh.services import collect_and_record
from apps.metrics.services import collect_and_record as collect_metrics
from lab.kubeapi.tls import CertificateAuthority
from lab.seeds.loader import load_seed
from tests.helpers import bookbuyer_to_bookstore_openmetrics, change_bookstore_weights

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_RBAC = ROOT / "deploy" / "kubernetes" / "rbac" / "cluster" / "rbac.yaml"
COLLECTOR = "system:serviceaccount:meshboard:meshboard-collector"
WEB = "system:serviceaccount:meshboard:meshboard-web"
TOKENS = {"collector-token": COLLECTOR, "web-token": WEB}
STEP = 15.0
T0 = (int(time.time()) // 3600 - 3) * 3600
AT = T0 + 900.0
UNAUTHORIZED = "Kubernetes API: the API server refused Meshboard's credentials. Renew the kubeconfig or token."


@pytest.fixture(scope="module")
def prometheus(prometheus_factory):
    return prometheus_factory(bookbuyer_to_bookstore_openmetrics(T0, AT, STEP), name="real-clusters")


def _cluster(server, prometheus=None) -> Cluster:
    return Cluster.objects.create(
        name="secured", kubeconfig_path=str(server.kubeconfig), prometheus_url=prometheus.url if prometheus else ""
    )


def _as(server, user: dict, **options) -> None:
    """Rewrite the cluster's kubeconfig (same path) with another identity, as another pod would have."""
    server.write_kubeconfig(server.kubeconfig, user=user, **options)


def _write(cluster: Cluster, operator, weights=(50, 50)):
    return change_bookstore_weights(cluster, operator, *weights)


def _everything(server, cluster: Cluster, operator, collector: dict, web: dict) -> None:
    """Both collectors and the writer, each with its own identity; each must succeed."""
    _as(server, collector)
    run, error = collect_and_record(cluster)
    assert error is None and run.status == CollectionRun.Status.OK, (error, run.warnings)
    assert run.counts["pods"] > 0 and run.counts["trafficsplits"] == 1

    run, error = collect_metrics(cluster, at=AT)
    assert error is None and run.status in (CollectionRun.Status.OK, CollectionRun.Status.PARTIAL), error

    _as(server, web)
    outcome = _write(cluster, operator)
    assert outcome.applied, outcome.record.reason
    statuses = {r.status for r in server.requests.entries}
    assert statuses <= {200, 201}, statuses  # nothing refused along the way


def test_both_collectors_and_the_writer_run_over_https_with_tokens(kubeapi_factory, prometheus, operator):
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens=TOKENS, rbac=[CLUSTER_RBAC])
    cluster = _cluster(server, prometheus)
    assert server.url.startswith("https://")

    _everything(server, cluster, operator, {"token": "collector-token"}, {"token": "web-token"})


def test_both_collectors_and_the_writer_run_with_client_certificates(kubeapi_factory, prometheus, operator):
    server = kubeapi_factory(load_seed("bookstore"), tls=True, client_certificates=True, rbac=[CLUSTER_RBAC])
    cluster = _cluster(server, prometheus)

    collector, web = server.client_certificate_user(COLLECTOR), server.client_certificate_user(WEB)
    _everything(server, cluster, operator, collector, web)


def test_a_wrong_token_records_a_401_with_the_advice(kubeapi_factory, client, operator):
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens=TOKENS, rbac=[CLUSTER_RBAC])
    cluster = _cluster(server)
    _as(server, {"token": "not-a-token"})

    run, error = collect_and_record(cluster)

    assert error is not None and error.status == 401 and run.status == CollectionRun.Status.FAILED
    assert "the API server refused our credentials (401 Unauthorized) (get the non-resource URL /version)" in run.error
    assert "The API server does not know the bearer token (wrong, revoked or from another cluster)." in run.error
    assert "Renew the kubeconfig or token; no RBAC grant helps" in run.error
    assert freshness(cluster, CollectionRun.Kind.CLUSTER).summary == UNAUTHORIZED
    # The Mesh page: the sentence for everyone, the reason for operators.
    client.force_login(operator)
    page = html.unescape(client.get("/mesh/").content.decode())
    assert UNAUTHORIZED in page and "The API server does not know the bearer token" in page


def _jwt(exp: float) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part({'sub': COLLECTOR, 'exp': int(exp)})}.c2lnbmF0dXJl"


def test_an_expired_token_says_when_it_expired(kubeapi_factory):
    expired = _jwt(time.time() - 120)
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens={}, rbac=[CLUSTER_RBAC])
    server.authenticator.set_token(expired, COLLECTOR, expires_at=time.time() - 120)
    cluster = _cluster(server)
    _as(server, {"token": expired})

    run, _ = collect_and_record(cluster)

    assert run.status == CollectionRun.Status.FAILED
    assert "(401 Unauthorized)" in run.error
    assert "The bearer token expired at " in run.error and " s ago): get a new token." in run.error
    assert freshness(cluster, CollectionRun.Kind.CLUSTER).summary == UNAUTHORIZED


def test_a_kubeconfig_user_without_any_credential_says_so(kubeapi_factory):
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens=TOKENS, rbac=[CLUSTER_RBAC])
    cluster = _cluster(server)
    _as(server, {})  # a user entry with no token, no client certificate and no exec plugin

    run, _ = collect_and_record(cluster)

    assert run.status == CollectionRun.Status.FAILED
    assert "(401 Unauthorized)" in run.error
    assert "The kubeconfig gives no credential for its user (no token, client certificate or exec plugin)." in run.error
    assert freshness(cluster, CollectionRun.Kind.CLUSTER).summary == UNAUTHORIZED


def test_a_role_without_list_on_a_kind_records_a_partial_run_naming_it(kubeapi_factory, tmp_path, client, operator):
    docs = list(yaml.safe_load_all(CLUSTER_RBAC.read_text()))
    for doc in docs:
        for rule in doc.get("rules") or []:
            if "serviceaccounts" in rule.get("resources", []):
                rule["resources"] = [r for r in rule["resources"] if r != "serviceaccounts"]
    rbac = tmp_path / "rbac.yaml"
    rbac.write_text(yaml.safe_dump_all(docs))
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens=TOKENS, rbac=[rbac])
    cluster = _cluster(server)

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.PARTIAL
    [warning] = [w for w in run.warnings if "forbidden" in w]
    # The API server's own 403, then what to grant and how to check it.
    assert (
        f'serviceaccounts is forbidden: User "{COLLECTOR}" cannot list resource "serviceaccounts" in API group "" '
        "at the cluster scope" in warning
    )
    assert "Meshboard may not list serviceaccounts in all namespaces" in warning
    assert 'apiGroups: [""], resources: ["serviceaccounts"], verbs: ["list"]' in warning
    assert f"kubectl auth can-i list serviceaccounts --all-namespaces --as {COLLECTOR}" in warning
    assert run.counts["pods"] > 0  # the other kinds were read
    client.force_login(operator)
    page = html.unescape(client.get("/mesh/").content.decode())
    assert "Meshboard may not list serviceaccounts in all namespaces" in page


def test_the_writer_names_the_verb_rbac_refuses(kubeapi_factory, operator):
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens=TOKENS, rbac=[CLUSTER_RBAC])
    cluster = _cluster(server)
    assert collect_and_record(cluster)[1] is None

    outcome = _write(cluster, operator)  # as the collector, which may list splits but not get or patch one

    record = outcome.record
    assert record.result == WeightChange.Result.REJECTED
    assert "forbidden by RBAC (403)" in record.reason
    assert 'Meshboard may not get trafficsplits.split.smi-spec.io "bookstore-split" in namespace bookstore' in (
        record.reason
    )
    assert f"kubectl auth can-i get trafficsplits.split.smi-spec.io -n bookstore --as {COLLECTOR}" in record.reason


def test_a_kubeconfig_with_the_wrong_ca_says_so(kubeapi_factory):
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens=TOKENS)
    cluster = _cluster(server)
    _as(server, {"token": "collector-token"}, ca_pem=CertificateAuthority("some-other-ca").cert_pem)

    run, error = collect_and_record(cluster)

    assert error is not None and not error.transient and run.status == CollectionRun.Status.FAILED
    assert (
        "TLS: the CA in the kubeconfig does not sign the API server's certificate (certificate verify failed: "
        in run.error
    )
    assert "Put the CA that signed the server's certificate in the kubeconfig" in run.error
    assert "cannot reach" not in run.error  # not an outage: a person must fix the kubeconfig
    assert server.requests.entries == []  # refused before any request
    assert freshness(cluster, CollectionRun.Kind.CLUSTER).summary == (
        "Kubernetes API: the CA in the kubeconfig does not sign the API server's certificate. Put the cluster's CA "
        "in the kubeconfig; do not turn verification off."
    )


def test_a_server_name_the_certificate_does_not_hold_says_so(kubeapi_factory):
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tls_names=("kubernetes.default.svc",), tokens=TOKENS)
    cluster = _cluster(server)

    run, _ = collect_and_record(cluster)

    assert (
        f"TLS: the API server's certificate is not valid for the name in the URL https://127.0.0.1:{server.port}"
        in (run.error)
    )
    assert "certificate is not valid for '127.0.0.1'" in run.error
    assert "set tls-server-name in the kubeconfig's cluster to a name it does" in run.error
    assert freshness(cluster, CollectionRun.Kind.CLUSTER).summary == (
        "Kubernetes API: the API server's certificate does not hold the name in the kubeconfig's server URL. Use a "
        "name it holds, or set tls-server-name in the kubeconfig."
    )


def test_an_expired_client_certificate_is_refused_in_the_handshake(kubeapi_factory):
    import datetime as dt

    server = kubeapi_factory(load_seed("bookstore"), tls=True, client_certificates=True)
    cluster = _cluster(server)
    _as(server, server.client_certificate_user(COLLECTOR, not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))

    run, _ = collect_and_record(cluster)

    # TLS 1.3: the server's alert (certificate expired) arrives after the client's handshake, or is lost to the
    # connection's close, as with a real apiserver; either way the reason points at the client certificate.
    assert "TLS: the API server " in run.error and "accept our client certificate" in run.error, run.error
    assert "cannot reach" not in run.error
    assert freshness(cluster, CollectionRun.Kind.CLUSTER).summary == (
        "Kubernetes API: the API server does not accept Meshboard's client certificate (missing, expired or from a "
        "CA it does not trust). Get a new kubeconfig."
    )
