"""The status page, through HTTP requests as each persona makes them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from apps.clusters.models import Cluster
from apps.clusters.roles import OPERATOR, VIEWER, can_change_weights
from apps.mesh.services import collect_and_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer():
    call_command("create_user", "vera", role=VIEWER, password="a-long-viewer-pass")
    return get_user_model().objects.get(username="vera")


@pytest.fixture
def operator():
    call_command("create_user", "otto", role=OPERATOR, password="a-long-operator-pass")
    return get_user_model().objects.get(username="otto")


def test_it_sends_anonymous_users_to_the_login_page(client):
    response = client.get("/mesh/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_shows_the_collected_cluster_with_its_freshness(client, viewer, kubeapi):
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig))
    collect_and_record(cluster)
    client.force_login(viewer)

    response = client.get("/mesh/")

    body = response.content.decode()
    assert response.status_code == 200
    assert "lab" in body and "Kubernetes objects:" in body and "s old" in body
    assert "SMI (deny by default)" in body
    assert "tresor" in body
    assert "<td>pods</td>" in body
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_it_returns_only_the_table_to_htmx_and_says_why_data_is_stale(client, viewer, kubeapi):
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig))
    collect_and_record(cluster)
    kubeapi.stop()
    collect_and_record(cluster)
    client.force_login(viewer)

    response = client.get("/mesh/", headers={"HX-Request": "true"})

    body = response.content.decode()
    assert "<html" not in body and 'id="clusters"' in body
    assert "stale since" in body and "cannot reach the API server" in body


def test_it_escapes_hostile_strings_from_the_cluster(client, viewer, kubeapi):
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig))
    collect_and_record(cluster)
    cluster.runs.update(warnings=['<script>alert("x")</script>'])
    client.force_login(viewer)

    body = client.get("/mesh/").content.decode()

    assert '<script>alert("x")</script>' not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


def test_it_gives_only_operators_the_weights_permission(viewer, operator):
    assert can_change_weights(operator)
    assert not can_change_weights(viewer)
    assert viewer.has_perm("mesh.view_trafficsplit") and operator.has_perm("mesh.view_trafficsplit")


def test_it_adds_a_cluster_from_the_command_line_and_refuses_bad_input(tmp_path):
    from django.core.management.base import CommandError

    call_command("add_cluster", "prod", kubeconfig=str(tmp_path / "kc"), poll_interval=30)
    assert Cluster.objects.get(name="prod").poll_interval_seconds == 30
    with pytest.raises(CommandError, match="poll_interval_seconds"):
        call_command("add_cluster", "prod", kubeconfig=str(tmp_path / "kc"), poll_interval=1)
    with pytest.raises(CommandError, match="name"):
        call_command("add_cluster", "bad name!", in_cluster=True)


def test_it_answers_the_healthcheck_without_login(client):
    assert client.get("/healthz").json() == {"status": "ok"}
