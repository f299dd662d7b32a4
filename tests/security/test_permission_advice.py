"""A 401 or 403 from the API server names the verb and resource that failed and what to grant (or renew).

Against the stand-in, whose fault control answers as kube-apiserver does (the Forbidden Status names the user).
"""

from __future__ import annotations

import html as html_lib

import pytest

from apps.canary.models import WeightChange
from apps.clusters.models import Cluster, CollectionRun
from apps.mesh.models import TrafficSplit
from apps.mesh.services import collect_and_record
from tests.helpers import bookstore_split, set_bookstore_backends

URL = "/splits/bookstore/bookstore-split/"
SA = "system:serviceaccount:meshboard:meshboard"
GRANT_PATCH = (
    f'Grant Meshboard\'s identity ({SA}) the verb "patch" on trafficsplits.split.smi-spec.io with a Role in '
    "namespace bookstore"
)
RULE_PATCH = 'apiGroups: ["split.smi-spec.io"], resources: ["trafficsplits"], verbs: ["patch"]'
SPLIT = 'trafficsplits.split.smi-spec.io "bookstore-split"'
CHECK_PATCH = f"kubectl auth can-i patch trafficsplits.split.smi-spec.io -n bookstore --as {SA}"


@pytest.fixture
def canary(bookstore, kubeapi):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    return TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")


def _post(client, split, weights):
    data = {"resource_version": split.resource_version, "action": "apply"}
    for i, (service, weight) in enumerate(weights):
        data[f"backend_{i}"], data[f"weight_{i}"] = service, weight
    return html_lib.unescape(client.post(URL, data).content.decode())


@pytest.mark.parametrize("skip", [0, 1], ids=["dry-run-forbidden", "write-forbidden"])
def test_it_names_patch_when_the_identity_may_not_patch_and_audits_it(client, operator, canary, kubeapi, skip):
    client.force_login(operator)
    kubeapi.faults.add(r"/trafficsplits/bookstore-split$", status=403, verb="patch", skip=skip)

    page = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")])

    record = WeightChange.objects.get()
    assert record.result == WeightChange.Result.REJECTED and record.username == "otto"
    for text in (page, record.reason):
        assert "forbidden by RBAC (403)" in text
        assert f"Meshboard may not patch {SPLIT} in namespace bookstore" in text
        assert GRANT_PATCH in text and RULE_PATCH in text and CHECK_PATCH in text
        assert "list/get/watch" not in text and "watch" not in text
    assert ("A server-side dry run needs the same verb as the write." in record.reason) == (skip == 0)
    kubeapi.faults.clear()
    assert bookstore_split(kubeapi)["spec"]["backends"][0]["weight"] == 100
    # The audit page shows the same advice.
    assert GRANT_PATCH in html_lib.unescape(client.get("/splits/audit/").content.decode())


def test_it_names_get_when_the_identity_may_not_read_the_split(client, operator, canary, kubeapi):
    client.force_login(operator)
    kubeapi.faults.add(r"/trafficsplits/bookstore-split$", status=403, verb="get")

    page = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")])

    assert 'the verb "get" on trafficsplits.split.smi-spec.io' in page
    assert f"kubectl auth can-i get trafficsplits.split.smi-spec.io -n bookstore --as {SA}" in page
    assert WeightChange.objects.get().result == WeightChange.Result.REJECTED


def test_it_says_renew_not_grant_on_401(client, operator, canary, kubeapi):
    client.force_login(operator)
    kubeapi.faults.add(r"/trafficsplits/bookstore-split$", status=401, verb="patch")

    page = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")])

    record = WeightChange.objects.get()
    for text in (page, record.reason):
        assert "refused our credentials (401 Unauthorized)" in text
        assert '(patch trafficsplits.split.smi-spec.io "bookstore-split" in namespace bookstore)' in text
        assert "Renew the kubeconfig or token; no RBAC grant helps" in text


def test_a_cluster_wide_list_asks_for_a_cluster_role(kubeapi, db):
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig))
    kubeapi.faults.add(r"^/api/v1/pods$", status=403, verb="list")

    run, error = collect_and_record(cluster)

    assert error is None and run.status == CollectionRun.Status.PARTIAL
    warning = next(w for w in run.warnings if "forbidden" in w)
    assert "Meshboard may not list pods in all namespaces" in warning
    assert 'apiGroups: [""], resources: ["pods"], verbs: ["list"]' in warning
    assert "a ClusterRole bound with a ClusterRoleBinding (the request spans all namespaces)" in warning
    assert f"kubectl auth can-i list pods --all-namespaces --as {SA}" in warning


def test_a_list_in_a_watched_namespace_asks_for_a_role_there(kubeapi, db):
    cluster = Cluster.objects.create(
        name="lab", kubeconfig_path=str(kubeapi.kubeconfig), watched_namespaces=["bookstore", "bookbuyer"]
    )
    kubeapi.faults.add(r"^/api/v1/namespaces/bookbuyer/pods$", 403, verb="list")

    run, _ = collect_and_record(cluster)

    warning = next(w for w in run.warnings if "forbidden" in w)
    assert "Meshboard may not list pods in namespace bookbuyer" in warning
    assert "with a Role in namespace bookbuyer bound with a RoleBinding there" in warning
    assert f"kubectl auth can-i list pods -n bookbuyer --as {SA}" in warning


def test_forbidden_discovery_names_the_non_resource_url(kubeapi, db):
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig))
    kubeapi.faults.add(r"^/apis/?$", status=403)

    run, error = collect_and_record(cluster)

    assert error is not None and error.status == 403
    assert 'the verb "get" on the non-resource URL /apis' in run.error
    assert "system:discovery" in run.error
