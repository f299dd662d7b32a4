"""An operator limited to namespaces changes weights only there: the editor, the presets and the rollback refuse
elsewhere with 403, and each refused write is in the audit; the audit and its filters show only what the user sees."""

from __future__ import annotations

import pytest

from apps.canary.models import WeightChange
from apps.clusters.models import Access
from apps.mesh.models import TrafficSplit
from apps.mesh.services import collect_and_record
from tests.helpers import bookstore_split, change_bookstore_weights, set_bookstore_backends

URL = "/splits/bookstore/bookstore-split/"


@pytest.fixture
def split(bookstore, kubeapi):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    return TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")


def limit(user, namespaces: list[str], operate: list[str]) -> None:
    Access.objects.update_or_create(user=user, defaults={"namespaces": namespaces, "operate_namespaces": operate})


def _post(client, split, weights, action="apply", **extra):
    data = {"resource_version": split.resource_version, "action": action, **extra}
    for i, (service, weight) in enumerate(weights):
        data[f"backend_{i}"], data[f"weight_{i}"] = service, weight
    return client.post(URL, data)


def test_it_refuses_and_audits_a_team_a_operators_write_in_another_namespace(client, operator, split, kubeapi):
    limit(operator, [], ["team-a"])  # sees every namespace, operates team-a only
    client.force_login(operator)
    html = client.get(URL).content.decode()
    assert "Read only: you may change weights in other namespaces, not in bookstore." in html
    assert "Preview change" not in html and " disabled" in html
    before = bookstore_split(kubeapi)["metadata"]["resourceVersion"]

    response = _post(client, split, [("bookstore-v1", "50"), ("bookstore-v2", "50")])
    preset = _post(client, split, [("bookstore-v1", "100"), ("bookstore-v2", "0")], action="preview", preset="50")

    assert (response.status_code, preset.status_code) == (403, 403)
    assert "otto (operator of team-a) may not change weights in namespace bookstore: only in team-a." in (
        response.content.decode()
    )
    assert bookstore_split(kubeapi)["metadata"]["resourceVersion"] == before
    refused = list(WeightChange.objects.order_by("pk"))
    assert [(r.result, r.username, r.namespace, r.split) for r in refused] == [
        ("forbidden", "otto", "bookstore", "bookstore-split")
    ] * 2
    reason = "otto (operator of team-a) may not change weights in namespace bookstore: only in team-a."
    assert refused[0].reason == reason
    assert refused[0].weights_after == [
        {"service": "bookstore-v1", "weight": "50"},
        {"service": "bookstore-v2", "weight": "50"},
    ]
    # The audit page shows the refusals, and offers this operator no rollback.
    audit = client.get("/splits/audit/").content.decode()
    assert audit.count('<strong class="result">Forbidden: nothing sent') == 2 and "Roll back" not in audit


def test_it_refuses_and_audits_a_write_to_a_split_hidden_from_the_operator(client, operator, split, kubeapi):
    limit(operator, ["team-a"], ["team-a"])  # sees team-a only
    client.force_login(operator)
    assert client.get(URL).status_code == 404

    response = _post(client, split, [("bookstore-v1", "50"), ("bookstore-v2", "50")])

    assert response.status_code == 403
    assert [b["weight"] for b in bookstore_split(kubeapi)["spec"]["backends"]] == [100, 0]
    refused = WeightChange.objects.get()  # in the audit, for those who see bookstore
    assert (refused.result, refused.username, refused.namespace) == ("forbidden", "otto", "bookstore")
    assert "No weight change recorded" in client.get("/splits/audit/").content.decode()  # not for otto


def test_it_refuses_and_audits_a_rollback_in_another_namespace(client, operator, split, kubeapi):
    applied = change_bookstore_weights(split.cluster, operator, 50, 50).record  # while otto operated everywhere
    assert applied.changed_cluster
    limit(operator, [], ["team-a"])
    client.force_login(operator)
    assert "Roll back" not in client.get("/splits/audit/").content.decode()

    response = client.post(f"/splits/audit/{applied.pk}/rollback/")

    assert response.status_code == 403
    assert [b["weight"] for b in bookstore_split(kubeapi)["spec"]["backends"]] == [50, 50]
    latest = WeightChange.objects.order_by("-pk").first()
    assert (latest.result, latest.namespace) == ("forbidden", "bookstore")


def test_it_lets_an_operator_write_in_their_own_namespace(client, operator, split, kubeapi):
    limit(operator, [], ["bookstore"])
    client.force_login(operator)
    assert "Preview change" in client.get(URL).content.decode()
    assert "Edit weights" in client.get("/splits/").content.decode()

    response = _post(client, split, [("bookstore-v1", "50"), ("bookstore-v2", "50")])

    assert response.status_code == 302
    assert [b["weight"] for b in bookstore_split(kubeapi)["spec"]["backends"]] == [50, 50]
    assert WeightChange.objects.get().result == "applied"


def test_it_refuses_in_the_write_service_too(operator, split, kubeapi):
    """The last line: a caller that skipped the view's check is refused (and audited) by the service."""
    from django.core.exceptions import PermissionDenied

    limit(operator, [], ["team-a"])
    with pytest.raises(PermissionDenied, match="only in team-a"):
        change_bookstore_weights(split.cluster, operator, 50, 50)
    assert WeightChange.objects.get().result == "forbidden"
    assert [b["weight"] for b in bookstore_split(kubeapi)["spec"]["backends"]] == [100, 0]


def test_it_shows_a_limited_operator_only_their_namespaces_audit(client, operator, viewer, split, kubeapi):
    change_bookstore_weights(split.cluster, operator, 50, 50)  # an audit row in bookstore
    limit(viewer, ["bookwarehouse"], [])
    client.force_login(viewer)

    for url in ("/splits/audit/", "/splits/audit/?split=bookstore/bookstore-split", "/splits/audit/?user=otto"):
        html = client.get(url).content.decode()
        assert 'href="/splits/bookstore/bookstore-split/"' not in html and "No weight change recorded" in html, url
    assert client.get(f"/splits/audit/{WeightChange.objects.get().pk}/rollback/").status_code == 404


def test_it_creates_a_namespace_limited_user_from_the_command_line(db):
    from django.contrib.auth import get_user_model
    from django.core.management import CommandError, call_command

    call_command(
        "create_user",
        "tom",
        role="operator",
        password="a-long-team-pass",
        namespaces="team-a,team-b",
        operate_namespaces="team-a",
    )
    access = Access.objects.get(user__username="tom")
    assert (access.namespaces, access.operate_namespaces) == (["team-a", "team-b"], ["team-a"])
    with pytest.raises(CommandError, match="Not a namespace name: 'Team A'"):
        call_command("create_user", "tom", role="viewer", password="a-long-team-pass", namespaces="Team A")
    assert get_user_model().objects.get(username="tom").groups.get().name == "operator"  # nothing changed
    call_command("create_user", "tom", role="viewer", password="a-long-team-pass")  # reset: every namespace
    assert Access.objects.get(user__username="tom").namespaces == []
