"""The stand-in as a secured cluster: HTTPS with its own CA, bearer tokens and client certificates (401 otherwise),
and RBAC from Role/ClusterRole files (403 otherwise), with the recorded apiserver Status shapes. The default mode
(plain HTTP, any token) is what every other test uses, unchanged."""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from lab.kubeapi.auth import UserInfo, parse_token_file
from lab.kubeapi.rbac import Authorizer, request_attributes
from lab.kubeapi.tls import CertificateAuthority

from .conftest import assert_status_like, load_recorded, make_seed, raw

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_RBAC = ROOT / "deploy" / "kubernetes" / "rbac" / "cluster" / "rbac.yaml"
COLLECTOR = "system:serviceaccount:meshboard:meshboard-collector"
WEB = "system:serviceaccount:meshboard:meshboard-web"
TS = "/apis/split.smi-spec.io/v1alpha2/namespaces/demo/trafficsplits"


def _https(server, cert: tuple[Path, Path] | None = None) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cadata=server.ca.cert_pem.decode())
    if cert is not None:
        context.load_cert_chain(*cert)
    return http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=context)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def secured(kubeapi_factory):
    return kubeapi_factory(
        make_seed(), tls=True, tokens={"collector-token": COLLECTOR, "web-token": WEB}, rbac=[CLUSTER_RBAC]
    )


def test_it_answers_401_with_the_recorded_shape_without_or_with_a_wrong_token(secured):
    for headers in ({}, _bearer("wrong"), {"Authorization": "Basic dTpw"}):
        reply = raw(secured, "GET", "/api/v1/pods", conn=_https(secured), headers=headers)
        assert reply.status == 401
        assert_status_like(reply.body, load_recorded("unauthorized")["response"])
    assert raw(secured, "GET", "/api/v1/pods", conn=_https(secured), headers=_bearer("collector-token")).status == 200


def test_it_answers_403_with_the_recorded_shape_for_what_rbac_does_not_grant(secured):
    reply = raw(secured, "GET", "/api/v1/namespaces/demo/services", conn=_https(secured), headers=_bearer("web-token"))

    assert reply.status == 403
    assert_status_like(reply.body, load_recorded("forbidden")["response"])
    assert reply.body["message"] == (
        f'services is forbidden: User "{WEB}" cannot list resource "services" in API group "" in the namespace "demo"'
    )


def test_the_kubeconfig_carries_the_ca_and_the_first_token_and_is_private(secured):
    kubeconfig = yaml.safe_load(secured.kubeconfig.read_text())

    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://127.0.0.1:{secured.port}"
    assert base64.b64decode(cluster["certificate-authority-data"]) == secured.ca.cert_pem
    assert kubeconfig["users"][0]["user"] == {"token": "collector-token"}
    assert secured.kubeconfig.stat().st_mode & 0o077 == 0
    # The official client, unmodified, through that kubeconfig: CA checked, token sent, RBAC applied.
    api = config.new_client_from_config(str(secured.kubeconfig))
    assert [p.metadata.name for p in client.CoreV1Api(api).list_pod_for_all_namespaces().items]
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api).list_secret_for_all_namespaces()
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert message == (
        f'secrets is forbidden: User "{COLLECTOR}" cannot list resource "secrets" in API group "" at the cluster scope'
    )


def test_rbac_follows_names_scopes_and_groups(secured):
    web = _https(secured)
    split = raw(secured, "GET", f"{TS}/web-split", conn=web, headers=_bearer("web-token"))
    assert split.status == 200
    # get and patch on trafficsplits, but no list; and nothing on another group's kinds.
    listed = raw(secured, "GET", TS, conn=web, headers=_bearer("web-token"))
    assert listed.status == 403 and listed.body["details"] == {"group": "split.smi-spec.io", "kind": "trafficsplits"}
    assert listed.body["message"].startswith("trafficsplits.split.smi-spec.io is forbidden: ")
    # resourceNames: the collector may get the Endpoints named kubernetes, no other.
    collector = _https(secured)
    ok = raw(
        secured,
        "GET",
        "/api/v1/namespaces/default/endpoints/kubernetes",
        conn=collector,
        headers=_bearer("collector-token"),
    )
    assert ok.status in (200, 404)  # allowed (the seed may not hold it)
    other = raw(
        secured, "GET", "/api/v1/namespaces/demo/endpoints/web", conn=collector, headers=_bearer("collector-token")
    )
    assert other.status == 403
    assert other.body["message"] == (
        f'endpoints "web" is forbidden: User "{COLLECTOR}" cannot get resource "endpoints" in API group "" in the '
        'namespace "demo"'
    )
    # Discovery is every authenticated identity's (system:discovery), a non-resource URL anything else.
    assert raw(secured, "GET", "/apis", conn=web, headers=_bearer("web-token")).status == 200
    healthz = raw(secured, "GET", "/metrics", conn=web, headers=_bearer("web-token"))
    assert healthz.status == 403 and healthz.body["message"] == f'forbidden: User "{WEB}" cannot get path "/metrics"'


def test_a_role_binding_grants_in_its_namespace_only():
    rules = [
        {"kind": "ClusterRole", "metadata": {"name": "reader"}, "rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
        ]},
        {"kind": "RoleBinding", "metadata": {"name": "r", "namespace": "demo"},
         "roleRef": {"kind": "ClusterRole", "name": "reader"},
         "subjects": [{"kind": "Group", "name": "team-a"}]},
        {"kind": "Role", "metadata": {"name": "status", "namespace": "other"}, "rules": [
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]},
        ]},
        {"kind": "RoleBinding", "metadata": {"name": "s", "namespace": "other"},
         "roleRef": {"kind": "Role", "name": "status"},
         "subjects": [{"kind": "ServiceAccount", "name": "ctl", "namespace": "other"}]},
    ]  # fmt: skip
    rbac = Authorizer(rules)
    alice = UserInfo("alice", ("team-a",))
    assert rbac.allows(alice, request_attributes("GET", "/api/v1/namespaces/demo/pods"))
    assert rbac.allows(alice, request_attributes("GET", "/api/v1/namespaces/demo/pods/p/log"))
    assert not rbac.allows(alice, request_attributes("GET", "/api/v1/namespaces/other/pods"))
    assert not rbac.allows(alice, request_attributes("GET", "/api/v1/pods"))  # all namespaces: cluster scope
    assert not rbac.allows(alice, request_attributes("GET", "/api/v1/namespaces/demo/pods", watch=True))
    assert not rbac.allows(alice, request_attributes("DELETE", "/api/v1/namespaces/demo/pods"))
    ctl = UserInfo("system:serviceaccount:other:ctl")
    assert rbac.allows(ctl, request_attributes("PUT", "/apis/apps/v1/namespaces/other/deployments/d/status"))
    assert not rbac.allows(ctl, request_attributes("PUT", "/apis/apps/v1/namespaces/other/deployments/d"))
    # A request for a Namespace object counts as a request in that namespace.
    assert request_attributes("GET", "/api/v1/namespaces/demo").namespace == "demo"
    assert rbac.allows(UserInfo("root", ("system:masters",)), request_attributes("DELETE", "/api/v1/nodes/n"))


def test_tokens_change_at_run_time_and_expire(secured):
    conn = _https(secured)
    secured.authenticator.set_token("short", COLLECTOR, expires_at=time.time() + 0.5)
    assert raw(secured, "GET", "/api/v1/pods", conn=conn, headers=_bearer("short")).status == 200
    time.sleep(0.6)
    assert raw(secured, "GET", "/api/v1/pods", conn=conn, headers=_bearer("short")).status == 401
    secured.authenticator.remove_token("collector-token")
    assert raw(secured, "GET", "/api/v1/pods", conn=conn, headers=_bearer("collector-token")).status == 401


def test_client_certificates_carry_the_user_and_groups(kubeapi_factory, tmp_path):
    server = kubeapi_factory(make_seed(), tls=True, client_certificates=True, rbac=[CLUSTER_RBAC])
    collector = server.issue_client_certificate(COLLECTOR).write(tmp_path / "c.crt", tmp_path / "c.key")
    assert raw(server, "GET", "/api/v1/pods", conn=_https(server, collector)).status == 200
    denied = raw(server, "GET", "/api/v1/secrets", conn=_https(server, collector))
    assert denied.status == 403 and f'User "{COLLECTOR}"' in denied.body["message"]
    assert raw(server, "GET", "/api/v1/pods", conn=_https(server)).status == 401  # no certificate, no token
    # The default kubeconfig: an admin certificate in system:masters, as kubeadm's admin.conf.
    api = config.new_client_from_config(str(server.kubeconfig))
    assert client.CoreV1Api(api).read_namespaced_pod("web-v1-0", "demo").metadata.name == "web-v1-0"
    # A certificate from another CA fails the handshake (Python's ssl cannot finish it and answer 401 instead).
    stranger = CertificateAuthority("other").issue_client("mallory").write(tmp_path / "m.crt", tmp_path / "m.key")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        raw(server, "GET", "/api/v1/pods", conn=_https(server, stranger))


def test_plain_http_to_the_https_port_gets_gos_answer(secured):
    conn = http.client.HTTPConnection("127.0.0.1", secured.port, timeout=10)
    conn.request("GET", "/version")
    response = conn.getresponse()
    assert response.status == 400 and b"Client sent an HTTP request to an HTTPS server." in response.read()


def test_the_command_line_serves_tls_tokens_and_rbac(tmp_path):
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f'collector-token,{COLLECTOR},1\nroot-token,admin,2,"system:masters,ops"\n')
    assert parse_token_file(tokens)["root-token"] == UserInfo("admin", ("system:masters", "ops"))
    kubeconfig, ca = tmp_path / "kubeconfig", tmp_path / "ca.crt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.kubeapi", "--seed", "bookstore", "--tls", "--token-file", str(tokens),
         "--rbac", str(CLUSTER_RBAC), "--kubeconfig-out", str(kubeconfig), "--ca-out", str(ca)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving bookstore at https://127.0.0.1:"), first + proc.stdout.read()
        port = int(first.rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
        for token, path, status in (
            ("", "/api/v1/pods", 401),
            ("collector-token", "/api/v1/pods", 200),
            ("collector-token", "/api/v1/namespaces/bookstore/services/bookstore", 403),  # list, not get
            ("root-token", "/api/v1/namespaces/bookstore/services/bookstore", 200),
        ):
            conn.request("GET", path, headers=_bearer(token) if token else {})
            response = conn.getresponse()
            response.read()
            assert response.status == status, (token, path)
        assert yaml.safe_load(kubeconfig.read_text())["users"][0]["user"] == {"token": "collector-token"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
