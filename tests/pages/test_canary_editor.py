"""The weight editor through HTTP against the stand-in: roles, validation, preview, write, conflicts, failures."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from apps.canary.forms import MAX_BACKENDS
from apps.canary.models import WeightChange
from apps.clusters.models import Cluster
from apps.mesh.models import Service, TrafficSplit
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed
from tests.helpers import BOOKSTORE_SPLIT, bookstore_split, custom_api, flagger_canary, set_bookstore_backends

URL = "/splits/bookstore/bookstore-split/"


@pytest.fixture
def canary(bookstore, kubeapi):
    """The demo at the point where bookstore-v2 joins the split with weight 0."""
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    return TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")


def _post(client, split, weights, action="apply", rv=None, **extra):
    data = {"resource_version": rv or split.resource_version, "action": action, **extra}
    for i, (service, weight) in enumerate(weights):
        data[f"backend_{i}"] = service
        data[f"weight_{i}"] = weight
    return client.post(URL, data)


def test_it_shows_viewers_a_read_only_form_and_refuses_their_post(client, viewer, canary, kubeapi):
    client.force_login(viewer)
    html = client.get(URL).content.decode()
    assert "Read only: your role is viewer" in html and " disabled" in html and "Preview change" not in html

    before = bookstore_split(kubeapi)["metadata"]["resourceVersion"]
    response = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")])

    assert response.status_code == 403
    assert bookstore_split(kubeapi)["metadata"]["resourceVersion"] == before
    refused = WeightChange.objects.get()  # audited: who tried what
    assert (refused.result, refused.username) == ("forbidden", "vera")
    assert refused.weights_after == [
        {"service": "bookstore-v1", "weight": "50"},
        {"service": "bookstore-v2", "weight": "50"},
    ]
    assert "vera (viewer) may not change weights" in refused.reason


def test_it_previews_the_exact_change_without_writing(client, operator, canary, kubeapi):
    client.force_login(operator)
    before = bookstore_split(kubeapi)["metadata"]["resourceVersion"]

    html = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")], action="preview").content.decode()

    assert "-    weight: 100" in html and "+    weight: 50" in html
    assert 'value="apply"' in html
    assert bookstore_split(kubeapi)["metadata"]["resourceVersion"] == before
    assert not WeightChange.objects.exists()


def test_it_applies_with_the_resource_version_and_records_it(client, operator, canary, kubeapi):
    client.force_login(operator)

    response = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")])

    assert response.status_code == 302 and response["Location"].startswith("/splits/#split-bookstore-bookstore-split")
    live = bookstore_split(kubeapi)
    assert live["spec"]["backends"] == [
        {"service": "bookstore-v1", "weight": 50},
        {"service": "bookstore-v2", "weight": 50},
    ]
    change = WeightChange.objects.get()
    assert (change.result, change.username) == ("applied", "otto")
    assert change.weights_before == [
        {"service": "bookstore-v1", "weight": 100},
        {"service": "bookstore-v2", "weight": 0},
    ]
    assert change.resource_version_sent == canary.resource_version
    assert change.resource_version_after == live["metadata"]["resourceVersion"]
    # The snapshot is refreshed at once, not at the next poll.
    canary.refresh_from_db()
    assert canary.resource_version == live["metadata"]["resourceVersion"]
    page = client.get("/splits/").content.decode()
    assert "Applied to bookstore/bookstore-split: bookstore-v1 50 (50%), bookstore-v2 50 (50%)" in page
    assert "50.0%" in page


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (("33.5", "66.5"), "Enter a whole number"),
        (("-1", "2"), "Weights cannot be negative"),
        (("", "10"), "This field is required"),
        (("abc", "10"), "Enter a whole number"),
        (("0", "0"), "must add up to at least 1"),
        (("2147483648", "0"), "At most 2,147,483,647"),
        (("2147483647", "2147483647", "2"), "Envoy&#x27;s total is at most 4,294,967,295"),
    ],
)
def test_it_keeps_bad_input_on_the_form_with_the_reason(client, operator, canary, kubeapi, weights, message):
    client.force_login(operator)
    before = bookstore_split(kubeapi)["metadata"]["resourceVersion"]

    services = ("bookstore-v1", "bookstore-v2", "bookstore")[: len(weights)]
    response = _post(client, canary, list(zip(services, weights, strict=True)))

    html = response.content.decode()
    assert response.status_code == 200
    assert message in html
    assert f'value="{weights[0]}"' in html  # the user's input is kept
    assert bookstore_split(kubeapi)["metadata"]["resourceVersion"] == before
    refused = WeightChange.objects.get()  # audited with the form's errors
    assert refused.result == "invalid" and refused.reason


def test_it_refuses_backends_that_are_not_services_or_are_listed_twice(client, operator, canary, kubeapi):
    client.force_login(operator)
    html = _post(client, canary, [("bookstore-v1", "50"), ("ghost", "50")]).content.decode()
    assert "There is no Service &#x27;ghost&#x27; in namespace bookstore" in html
    html = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v1", "50")]).content.decode()
    assert "A backend is listed twice" in html
    assert list(WeightChange.objects.values_list("result", flat=True)) == ["invalid", "invalid"]
    assert "A backend is listed twice" in WeightChange.objects.latest("id").reason


def _service(kubeapi, name: str, port: int) -> None:
    """A Service in the bookstore namespace, created through the official client as `kubectl apply` would."""
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeapi.kubeconfig)))
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "bookstore", "labels": {"app": "bookstore"}},
        "spec": {"selector": {"app": "bookstore", "version": name}, "ports": [{"name": "http", "port": port}]},
    }
    core.create_namespaced_service("bookstore", body)


def test_it_refuses_a_backend_without_the_roots_port_and_leaves_the_split_alone(client, operator, canary, kubeapi):
    _service(kubeapi, "bookstore-v3", 8080)  # the root, bookstore, serves 14001
    _service(kubeapi, "bookstore-v4", 14001)
    collect_and_record(canary.cluster)
    before = bookstore_split(kubeapi)
    client.force_login(operator)

    editor = client.get(URL).content.decode()
    assert '<option value="bookstore-v4">' in editor and '<option value="bookstore-v3">' not in editor
    response = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v3", "50")])

    assert response.status_code == 200
    assert (
        "Service bookstore-v3 lacks the root&#x27;s port 14001: OSM would ignore this backend."
        in response.content.decode()
    )
    after = bookstore_split(kubeapi)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "lacks the root's port 14001" in WeightChange.objects.get(result="invalid").reason


def test_it_shows_a_conflict_with_both_weights_and_keeps_the_first_write(client, operator, canary, kubeapi):
    from django.test import Client

    client.force_login(operator)
    other = Client()
    other.force_login(operator)
    opened_rv = canary.resource_version  # both operators opened the form at this version

    first = _post(other, canary, [("bookstore-v1", "70"), ("bookstore-v2", "30")], rv=opened_rv)
    second = _post(client, canary, [("bookstore-v1", "10"), ("bookstore-v2", "90")], rv=opened_rv)

    assert first.status_code == 302
    html = second.content.decode()
    assert "This split was changed by otto (through Meshboard)" in html
    assert '<td>bookstore-v2</td>\n        <td class="num">30</td>\n        <td class="num">90</td>' in html
    assert bookstore_split(kubeapi)["spec"]["backends"][1]["weight"] == 30
    assert list(WeightChange.objects.order_by("id").values_list("result", flat=True)) == ["applied", "conflict"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 403, "verb": "patch"}, "forbidden by RBAC"),
        ({"status": 503}, "answered 503"),
        ({"status": 422, "verb": "patch"}, "nothing changed"),
    ],
)
def test_it_says_why_a_write_failed_and_records_nothing_as_applied(client, operator, canary, kubeapi, fault, expected):
    client.force_login(operator)
    kubeapi.faults.add(r"/trafficsplits/bookstore-split$", **fault)

    html = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")]).content.decode()

    assert expected in html
    kubeapi.faults.clear()
    assert bookstore_split(kubeapi)["spec"]["backends"][0]["weight"] == 100
    assert WeightChange.objects.get().result in {"failed", "rejected"}


def test_it_says_when_the_split_was_deleted_or_the_api_is_down(client, operator, canary, kubeapi):
    client.force_login(operator)
    custom_api(kubeapi).delete_namespaced_custom_object(*BOOKSTORE_SPLIT)
    response = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")])
    assert "no longer exists in the cluster" in response.content.decode()

    kubeapi.stop()
    canary.save()  # the snapshot still lists it
    html = _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")]).content.decode()
    assert "cannot reach the API server" in html
    assert not WeightChange.objects.filter(result="applied").exists()


def test_it_fills_presets_for_the_marked_canary_without_writing(client, operator, canary, kubeapi):
    client.force_login(operator)
    before = bookstore_split(kubeapi)["metadata"]["resourceVersion"]
    v1, v2 = "bookstore-v1", "bookstore-v2"

    def preset(weights, name, canary_backend=v2):
        return _post(client, canary, weights, preset=name, canary_backend=canary_backend).content.decode()

    html = preset([(v1, "100"), (v2, "0")], "shift10")
    assert 'name="weight_0" value="90"' in html and 'name="weight_1" value="10"' in html
    assert f'value="{v2}" checked' in html  # the canary mark is kept
    html = preset([(v1, "7"), (v2, "3")], "even")
    assert 'name="weight_0" value="50"' in html and 'name="weight_1" value="50"' in html
    html = preset([(v1, "7"), (v2, "3")], "promote")
    assert 'name="weight_0" value="0"' in html and 'name="weight_1" value="100"' in html
    html = preset([(v1, "0"), (v2, "100")], "rollback")
    assert 'name="weight_0" value="100"' in html and 'name="weight_1" value="0"' in html
    # The canary is whichever backend the operator marks, not the last row.
    html = preset([(v1, "100"), (v2, "0")], "shift10", canary_backend=v1)
    assert 'name="weight_0" value="100"' in html and 'name="weight_1" value="0"' in html
    assert 'value="shift10" disabled title="the canary already has all the traffic"' in html
    assert bookstore_split(kubeapi)["metadata"]["resourceVersion"] == before
    assert not WeightChange.objects.exists()  # filling the form is not an attempt to write


def test_it_disables_presets_until_the_canary_is_marked(client, operator, canary):
    client.force_login(operator)
    html = client.get(URL).content.decode()
    for key in ("shift10", "even", "promote", "rollback"):
        assert f'value="{key}" disabled title="mark which backend is the canary first"' in html
    # Posted anyway (a stale page): the weights stay as typed.
    html = _post(client, canary, [("bookstore-v1", "100"), ("bookstore-v2", "0")], preset="even").content.decode()
    assert 'name="weight_0" value="100"' in html and 'name="weight_1" value="0"' in html


def test_it_shifts_a_three_way_split_keeping_the_stable_backends_shape(client, operator, canary, kubeapi):
    _service(kubeapi, "bookstore-v3", 14001)
    collect_and_record(canary.cluster)
    client.force_login(operator)
    rows = [("bookstore-v1", "60"), ("bookstore-v2", "30"), ("bookstore-v3", "10")]
    html = _post(client, canary, rows, preset="even", canary_backend="bookstore-v3").content.decode()
    # The canary gets 50; v1 and v2 share the other 50 as 2:1, as they did.
    assert 'name="weight_0" value="33"' in html and 'name="weight_1" value="17"' in html
    assert 'name="weight_2" value="50"' in html


def test_it_removes_a_backend_only_once_its_weight_is_zero_in_the_form_and_in_the_cluster(
    client, operator, canary, kubeapi
):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 95}, {"service": "bookstore-v2", "weight": 5}]
    )
    collect_and_record(canary.cluster)
    canary.refresh_from_db()
    client.force_login(operator)
    html = _post(client, canary, [("bookstore-v1", "95"), ("bookstore-v2", "5")], action="remove_1").content.decode()
    assert "Set its weight to 0 and apply first" in html and 'name="backend_1" value="bookstore-v2"' in html

    # Typing 0 is not enough while the cluster still sends it 5 parts of the traffic.
    rows = [("bookstore-v1", "100"), ("bookstore-v2", "0")]
    html = _post(client, canary, rows, action="remove_1").content.decode()
    assert "It still has weight 5 in the cluster: apply its weight 0 first" in html
    assert 'name="backend_1" value="bookstore-v2"' in html

    # Once 100/0 is applied, it can go.
    assert _post(client, canary, rows).status_code == 302
    canary.refresh_from_db()
    html = _post(client, canary, rows, action="remove_1").content.decode()
    assert 'name="backend_1"' not in html and 'name="backend_0" value="bookstore-v1"' in html
    response = _post(client, canary, [("bookstore-v1", "100")])
    assert response.status_code == 302
    assert bookstore_split(kubeapi)["spec"]["backends"] == [{"service": "bookstore-v1", "weight": 100}]
    assert not WeightChange.objects.exclude(result="applied").exists()  # removing is filling the form, no attempt


def test_it_refuses_more_backends_than_the_form_takes_instead_of_dropping_some(client, operator, canary, kubeapi):
    client.force_login(operator)
    before = bookstore_split(kubeapi)["metadata"]["resourceVersion"]
    rows = [("bookstore-v1", "100"), ("bookstore-v2", "0")] + [(f"extra-{i}", "0") for i in range(MAX_BACKENDS - 1)]

    html = _post(client, canary, rows).content.decode()

    assert f"{MAX_BACKENDS + 1} backends were sent; a split edited here has at most {MAX_BACKENDS}." in html
    assert bookstore_split(kubeapi)["metadata"]["resourceVersion"] == before
    refused = WeightChange.objects.get()
    assert refused.result == "invalid" and f"at most {MAX_BACKENDS}" in refused.reason
    # "Add backend" on a full form says why nothing was added.
    full = rows[:MAX_BACKENDS]
    html = _post(client, canary, full, action="add", add_backend="bookstore-v3").content.decode()
    assert f"A split edited here has at most {MAX_BACKENDS} backends." in html
    assert f'name="backend_{MAX_BACKENDS - 1}"' in html and f'name="backend_{MAX_BACKENDS}"' not in html


def test_it_rolls_back_from_the_audit_page_after_showing_the_change(client, operator, viewer, canary, kubeapi):
    client.force_login(operator)
    _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")])
    change = WeightChange.objects.get()

    audit = client.get("/splits/audit/?split=bookstore/bookstore-split").content.decode()
    assert f'data-change="{change.pk}"' in audit and f'href="/splits/audit/{change.pk}/rollback/"' in audit
    confirm = client.get(f"/splits/audit/{change.pk}/rollback/").content.decode()
    assert "-    weight: 50" in confirm and "+    weight: 100" in confirm and "Confirm the rollback" in confirm
    assert bookstore_split(kubeapi)["spec"]["backends"][0]["weight"] == 50  # showing it wrote nothing

    response = client.post(f"/splits/audit/{change.pk}/rollback/")
    assert response.status_code == 302 and response["Location"].startswith("/splits/#split-bookstore-bookstore-split")
    assert bookstore_split(kubeapi)["spec"]["backends"][0]["weight"] == 100
    rollback = WeightChange.objects.latest("id")
    assert (rollback.result, rollback.rollback_of_id) == ("applied", change.pk)

    client.force_login(viewer)
    assert "Roll back" not in client.get("/splits/audit/").content.decode()
    assert client.post(f"/splits/audit/{change.pk}/rollback/").status_code == 403
    assert WeightChange.objects.latest("id").result == "forbidden"


def test_it_offers_no_rollback_of_attempts_that_changed_nothing(client, operator, canary, kubeapi):
    client.force_login(operator)
    kubeapi.faults.add(r"/trafficsplits/bookstore-split$", status=422, verb="patch")
    _post(client, canary, [("bookstore-v1", "50"), ("bookstore-v2", "50")])
    _post(client, canary, [("bookstore-v1", "x"), ("bookstore-v2", "50")])
    rejected, invalid = WeightChange.objects.order_by("id")
    assert (rejected.result, invalid.result) == ("rejected", "invalid")

    audit = client.get("/splits/audit/").content.decode()
    assert "Roll back" not in audit
    assert client.get(f"/splits/audit/{rejected.pk}/rollback/").status_code == 404


def test_it_adds_a_backend_with_weight_zero_then_applies(client, operator, bookstore, kubeapi):
    client.force_login(operator)
    split = TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")
    html = client.get(URL).content.decode()
    assert '<option value="bookstore-v2">' in html and '<option value="bookstore">' not in html

    html = _post(client, split, [("bookstore-v1", "100")], action="add", add_backend="bookstore-v2").content.decode()
    assert 'name="backend_1" value="bookstore-v2"' in html and 'name="weight_1" value="0"' in html

    response = _post(client, split, [("bookstore-v1", "50"), ("bookstore-v2", "50")])
    assert response.status_code == 302
    assert bookstore_split(kubeapi)["spec"]["backends"] == [
        {"service": "bookstore-v1", "weight": 50},
        {"service": "bookstore-v2", "weight": 50},
    ]


def test_it_marks_flaggers_canary_backend_by_default(client, operator, kubeapi_factory):
    # Flagger's OSM provider splits <apex> between <apex>-primary and <apex>-canary.
    seed = load_seed("bookstore")
    seed.objects.append(flagger_canary())
    server = kubeapi_factory(seed)
    for name in ("bookstore-primary", "bookstore-canary"):
        _service(server, name, 14001)
    set_bookstore_backends(
        server, [{"service": "bookstore-primary", "weight": 100}, {"service": "bookstore-canary", "weight": 0}]
    )
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(server.kubeconfig))
    collect_and_record(cluster)
    client.force_login(operator)

    html = client.get(URL).content.decode()

    assert 'value="bookstore-canary" checked' in html and 'value="bookstore-primary" checked' not in html
    assert "mark which backend is the canary first" not in html  # the presets can apply at once
    assert 'value="shift10" disabled' not in html


def test_the_editor_warns_about_a_backend_without_a_service_or_a_ready_pod(client, operator, canary, kubeapi):
    set_bookstore_backends(
        kubeapi,
        [
            {"service": "bookstore-v1", "weight": 90},
            {"service": "bookstore-v2", "weight": 10},
            {"service": "bookstore-gone", "weight": 0},
        ],
    )
    collect_and_record(canary.cluster)
    Service.objects.filter(cluster=canary.cluster, name="bookstore-v1").update(pods_ready=0)
    client.force_login(operator)

    html = client.get(URL).content.decode()

    def row(backend: str) -> str:
        start = html[html.index(f'data-backend="{backend}"') :]
        return start[: start.index("</tr>")]

    assert "There is no Service bookstore-gone: OSM skips this backend." in row("bookstore-gone")
    assert "No ready pod (0/" in row("bookstore-v1") and "its share of the traffic fails" in row("bookstore-v1")
    assert "No ready pod" not in row("bookstore-v2")
