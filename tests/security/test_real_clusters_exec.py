"""Kubeconfig exec credential plugins (kubelogin on AKS): the collector and the writer get their token from a
plugin, keep it while it is valid, and get a new one when it expires or the API server refuses it.

The plugin is a small script written into tmp: each run issues a new token (`exec-token-<n>`), valid for a few
seconds, and makes it the only one the stand-in accepts (as a token issuer would, rotating its signing). So a
client that kept using an expired or superseded token would get 401s.
"""

from __future__ import annotations

import json
import stat
import sys
import time
from pathlib import Path

import pytest

from apps.clusters.freshness import freshness
from apps.clusters.kube import EXEC_CREDENTIALS, KubeGateway, KubeTarget, PermanentKubeError
from apps.clusters.models import Cluster, CollectionRun
from apps.mesh.collector import PODS
from apps.mesh.services import collect_and_record
from lab.kubeapi.auth import Authenticator, UserInfo
from lab.seeds.loader import load_seed
from tests.helpers import change_bookstore_weights

pytestmark = pytest.mark.django_db

LIFETIME = 3.0  # seconds each token is valid
USER = "system:serviceaccount:meshboard:meshboard-collector"

PLUGIN = """#!{python}
import datetime, json, pathlib, sys, time
state = pathlib.Path({state!r})
if {fail!r}:
    print("error: AADSTS700082: The refresh token has expired due to inactivity.", file=sys.stderr)
    sys.exit(1)
count = int(state.joinpath("runs").read_text()) + 1 if state.joinpath("runs").exists() else 1
state.joinpath("runs").write_text(str(count))
expiry = time.time() + {lifetime}
token = f"exec-token-{{count}}"
state.joinpath("current").write_text(json.dumps({{"token": token, "expiry": expiry}}))
stamp = datetime.datetime.fromtimestamp(expiry, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": token, "expirationTimestamp": stamp}}}}))
"""


class CurrentTokenOnly(Authenticator):
    """Accepts only the token the plugin issued last, until it expires."""

    def __init__(self, state: Path) -> None:
        super().__init__()
        self.state = state

    def authenticate(self, authorization, peer_identity):
        current = self.state / "current"
        if not current.exists() or not authorization:
            return None
        issued = json.loads(current.read_text())
        if authorization != f"Bearer {issued['token']}" or time.time() >= issued["expiry"]:
            return None
        return UserInfo(USER)


def _plugin(tmp_path: Path, *, fail: bool = False) -> tuple[Path, Path]:
    state = tmp_path / "issuer"
    state.mkdir(exist_ok=True)
    script = tmp_path / ("kubelogin-broken" if fail else "kubelogin")
    script.write_text(PLUGIN.format(python=sys.executable, state=str(state), fail=fail, lifetime=LIFETIME))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, state


def _runs(state: Path) -> int:
    return int((state / "runs").read_text()) if (state / "runs").exists() else 0


@pytest.fixture
def exec_cluster(kubeapi_factory, tmp_path):
    """The stand-in over HTTPS accepting only the plugin's current token, and a kubeconfig using the plugin."""
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens={})
    script, state = _plugin(tmp_path)
    server.authenticator = CurrentTokenOnly(state)
    exec_config = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": str(script),
        "args": ["get-token", "--login", "azurecli", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630"],
        "interactiveMode": "Never",
    }
    server.write_kubeconfig(server.kubeconfig, user={"exec": exec_config})
    yield server, state
    EXEC_CREDENTIALS.clear()


def test_a_credential_that_expires_during_the_test_is_refreshed(exec_cluster):
    server, state = exec_cluster
    with KubeGateway(KubeTarget(str(server.kubeconfig)), read_timeout=5) as gateway:
        assert gateway.list(PODS) and _runs(state) == 1
        assert gateway.list(PODS) and _runs(state) == 1  # kept while valid: one plugin run, not one per call
        time.sleep(LIFETIME + 0.3)  # the token has expired; the stand-in refuses it now

        assert gateway.list(PODS)  # the client's refresh hook asked again: a new token, no 401

    assert _runs(state) == 2
    assert [r.status for r in server.requests.entries] == [200, 200, 200]


def test_the_collector_and_the_writer_use_the_plugin_and_share_its_token(exec_cluster, operator):
    server, state = exec_cluster
    cluster = Cluster.objects.create(name="aks", kubeconfig_path=str(server.kubeconfig))

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.OK, (error, run.warnings)
    assert run.api_requests >= 15 and _runs(state) == 1  # four threads, one token
    time.sleep(LIFETIME + 0.3)
    outcome = change_bookstore_weights(cluster, operator, 70, 30)
    assert outcome.applied, outcome.record.reason
    assert _runs(state) == 2
    assert {r.status for r in server.requests.entries} == {200}


def test_a_401_fetches_a_new_credential_and_repeats_the_call_once(exec_cluster):
    server, state = exec_cluster
    with KubeGateway(KubeTarget(str(server.kubeconfig)), read_timeout=5) as gateway:
        gateway.list(PODS)
        # The issuer revokes the token early (rotated keys, a disabled account re-enabled ...).
        (state / "current").write_text(json.dumps({"token": "someone-else", "expiry": time.time() + 60}))

        assert gateway.list(PODS)

    assert [r.status for r in server.requests.entries] == [200, 401, 200]
    assert _runs(state) == 2


def test_a_token_the_server_keeps_refusing_is_named_as_the_plugins(exec_cluster):
    server, state = exec_cluster
    server.authenticator = Authenticator.with_tokens({})  # nothing the plugin gives is accepted
    cluster = Cluster.objects.create(name="aks", kubeconfig_path=str(server.kubeconfig))

    run, error = collect_and_record(cluster)

    assert error is not None and error.status == 401
    assert "(401 Unauthorized)" in run.error
    assert "The token comes from the kubeconfig's exec plugin (kubelogin) and was fetched again for this call" in (
        run.error
    )
    assert _runs(state) == 2  # the first token, and one more after the 401: no loop


def test_a_failing_plugin_says_what_it_said(kubeapi_factory, tmp_path):
    server = kubeapi_factory(load_seed("bookstore"), tls=True, tokens={})
    script, _ = _plugin(tmp_path, fail=True)
    server.write_kubeconfig(
        server.kubeconfig, user={"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script)}}
    )
    cluster = Cluster.objects.create(name="aks", kubeconfig_path=str(server.kubeconfig))

    run, error = collect_and_record(cluster)

    assert isinstance(error, PermanentKubeError) and run.status == CollectionRun.Status.FAILED
    assert "the kubeconfig's exec credential plugin (kubelogin-broken) failed: exec: process returned 1" in run.error
    assert "AADSTS700082: The refresh token has expired due to inactivity." in run.error
    assert server.requests.entries == []
    assert freshness(cluster, CollectionRun.Kind.CLUSTER).summary.startswith(
        "Kubernetes API: the kubeconfig's credential plugin (such as kubelogin) failed, so nothing was asked of the "
        "API server."
    )
    EXEC_CREDENTIALS.clear()
