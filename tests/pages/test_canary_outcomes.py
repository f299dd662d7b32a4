"""What the audit says after a write the network or the API server made uncertain: each fault gives exactly one
record of the right class, the page says so, and the cluster (read through the API) agrees."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.canary import followup, services
from apps.canary.models import WeightChange
from apps.mesh.models import Service, TrafficSplit
from apps.mesh.services import collect_and_record
from lab.waiting import wait_for
from tests.helpers import BOOKSTORE_SPLIT, bookstore_split, custom_api, set_bookstore_backends

URL = "/splits/bookstore/bookstore-split/"
SPLIT_PATH = r"/trafficsplits/bookstore-split$"
OURS = [{"service": "bookstore-v1", "weight": 50}, {"service": "bookstore-v2", "weight": 50}]
BEFORE = [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]


CLIENT_TIMEOUT = 1.0
READ_BACK = 4.0


@pytest.fixture
def canary(bookstore, kubeapi, settings, monkeypatch):
    settings.MESHBOARD_KUBE_READ_TIMEOUT = CLIENT_TIMEOUT  # so a stalled write times out quickly
    monkeypatch.setattr(services, "READ_BACK_SECONDS", READ_BACK)  # and the read-back after it ends sooner (6 s)
    set_bookstore_backends(kubeapi, BEFORE)
    collect_and_record(bookstore)
    return TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")


def _apply(client, split):
    data = {"resource_version": split.resource_version, "action": "apply"}
    for i, b in enumerate(OURS):
        data[f"backend_{i}"], data[f"weight_{i}"] = b["service"], str(b["weight"])
    return client.post(URL, data, follow=True)


UNKNOWN_UNCHANGED = "your weights were not stored so far; the API server may still apply them: check"

# (fault on the real PATCH (the dry run, also a PATCH, is let through), result, page text, cluster holds ours)
CASES = {
    # The server holds the request past the client's timeout, then stores it while Meshboard reads the split back.
    "delay then store beyond the client timeout": (
        {"delay": CLIENT_TIMEOUT + 1.5},
        "confirmed",
        "Applied (confirmed by reading back) to bookstore/bookstore-split",
        True,
    ),
    "store then delay beyond the client timeout": (
        {"delay": CLIENT_TIMEOUT + 1.5, "when": "after"},
        "confirmed",
        "Applied (confirmed by reading back) to bookstore/bookstore-split",
        True,
    ),
    "500 after store": ({"status": 500, "when": "after"}, "confirmed", "Applied (confirmed by reading back)", True),
    # A 5xx is no proof that nothing will be stored: the split still unchanged after reading back says so.
    "500 before store": ({"status": 500}, "unknown", UNKNOWN_UNCHANGED, False),
    "connection dropped after store": (
        {"drop": True, "when": "after"},
        "confirmed",
        "Applied (confirmed by reading back)",
        True,
    ),
    "connection dropped before store": ({"drop": True}, "unknown", UNKNOWN_UNCHANGED, False),
    "409": ({"status": 409}, "conflict", "Conflict: nothing written", False),
    "422": ({"status": 422}, "rejected", "Rejected by the API server: nothing changed", False),
    "429": ({"status": 429}, "rejected", "Rejected by the API server: nothing changed", False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_it_records_each_uncertain_write_by_what_the_cluster_holds(client, operator, canary, kubeapi, case):
    fault, result, text, applied = CASES[case]
    kubeapi.faults.add(SPLIT_PATH, verb="patch", skip=1, times=1, **fault)
    client.force_login(operator)

    html = _apply(client, canary).content.decode()

    record = WeightChange.objects.get()
    assert record.result == result, record.reason
    assert text in html
    live = bookstore_split(kubeapi)
    assert live["spec"]["backends"] == (OURS if applied else BEFORE)
    if applied:
        assert record.resource_version_after == live["metadata"]["resourceVersion"]
        assert "Roll back" in client.get("/splits/audit/").content.decode()
    else:
        assert "Roll back" not in client.get("/splits/audit/").content.decode()


def test_a_write_stored_after_the_read_back_is_resolved_as_applied_then_treated_as_one(
    client, operator, canary, kubeapi
):
    # The server holds the PATCH past the client's timeout and the whole read-back, then stores it.
    stored_after = CLIENT_TIMEOUT + READ_BACK + 1.5
    kubeapi.faults.add(SPLIT_PATH, verb="patch", skip=1, times=1, delay=stored_after)
    client.force_login(operator)

    html = _apply(client, canary).content.decode()

    record = WeightChange.objects.get()
    assert record.result == "unknown", record.reason
    assert "Outcome unknown: check the cluster." in html and UNKNOWN_UNCHANGED in html
    assert "Roll back" not in client.get("/splits/audit/").content.decode()

    live = wait_for(lambda: (s := bookstore_split(kubeapi))["spec"]["backends"] == OURS and s, timeout=10)
    collect_and_record(canary.cluster)
    record.refresh_from_db()
    assert record.result == "unknown"  # what the operator was told stays on the record, with what came of it
    assert record.resolved_applied and record.resource_version_after == live["metadata"]["resourceVersion"]
    assert "found these weights in the cluster (50/50" in record.resolution
    assert "the write was applied" in record.resolution
    audit = client.get("/splits/audit/").content.decode()
    assert record.resolution in audit and f'href="/splits/audit/{record.pk}/rollback/"' in audit
    assert "+    weight: 100" in client.get(f"/splits/audit/{record.pk}/rollback/").content.decode()

    # Watched like an applied write: Flagger putting its weights back is told on the audit and splits pages.
    api = custom_api(kubeapi)
    api.api_client.user_agent = "flagger/1.37.0"
    api.patch_namespaced_custom_object(*BOOKSTORE_SPLIT, {"spec": {"backends": BEFORE}})
    collect_and_record(canary.cluster)
    record.refresh_from_db()
    assert record.undone_by == "flagger"
    assert record.undone_notice.startswith("bookstore-split was set back to 100/0 by flagger ")
    assert record.undone_notice in client.get("/splits/").content.decode()
    assert record.undone_notice in client.get("/splits/audit/").content.decode()


def test_an_unchanged_split_settles_an_unknown_write_as_not_stored_only_after_the_grace(
    client, operator, canary, kubeapi
):
    kubeapi.faults.add(SPLIT_PATH, verb="patch", skip=1, times=1, status=503)
    client.force_login(operator)
    _apply(client, canary)
    record = WeightChange.objects.get()
    assert record.result == "unknown" and UNKNOWN_UNCHANGED in record.reason

    # The collection right after it: the API server may still store the write, so the record stays open.
    collect_and_record(canary.cluster)
    record.refresh_from_db()
    assert record.resolved_at is None and not record.resolved_applied

    # Once the grace has passed, an unchanged split means the write was not stored; nothing to roll back.
    old = timezone.now() - followup.UNSTORED_GRACE - timedelta(seconds=1)
    WeightChange.objects.filter(pk=record.pk).update(created_at=old)
    collect_and_record(canary.cluster)
    record.refresh_from_db()
    assert record.resolved_at is not None and not record.resolved_applied
    assert "found the split unchanged (100/0): the write was not stored" in record.resolution
    assert "Roll back" not in client.get("/splits/audit/").content.decode()
    assert bookstore_split(kubeapi)["spec"]["backends"] == BEFORE


def test_it_says_the_outcome_is_unknown_when_the_split_cannot_be_read_back(client, operator, canary, kubeapi):
    kubeapi.faults.add(SPLIT_PATH, verb="patch", skip=1, status=500, when="after")
    kubeapi.faults.add(SPLIT_PATH, verb="get", skip=1, status=503)  # the first read (before the write) works
    client.force_login(operator)

    html = _apply(client, canary).content.decode()

    record = WeightChange.objects.get()
    assert record.result == "unknown"
    assert "Outcome unknown: check the cluster." in html and 'data-result="unknown"' in html
    assert bookstore_split_after_faults(kubeapi)["spec"]["backends"] == OURS  # it was stored after all

    # The next collection resolves it: the row then says what the cluster holds.
    collect_and_record(canary.cluster)
    record.refresh_from_db()
    assert record.resolved_at is not None
    assert "found these weights in the cluster (50/50" in record.resolution
    assert record.resolution in client.get("/splits/audit/").content.decode()


def bookstore_split_after_faults(kubeapi):
    kubeapi.faults.clear()
    return bookstore_split(kubeapi)


def test_it_names_who_changed_the_split_when_the_form_is_stale(client, operator, canary, kubeapi):
    # kubectl edits the split after the operator opened the form.
    api = custom_api(kubeapi)
    api.api_client.user_agent = "kubectl/v1.31.0 (linux/amd64) kubernetes/abc1234"
    api.patch_namespaced_custom_object(
        *BOOKSTORE_SPLIT, {"spec": {"backends": [BEFORE[0], {**BEFORE[1], "weight": 5}]}}
    )
    client.force_login(operator)

    html = _apply(client, canary).content.decode()

    record = WeightChange.objects.get()
    assert record.result == "conflict"
    assert "This split was changed by kubectl at " in html
    assert "changed by kubectl" in record.reason
    assert bookstore_split(kubeapi)["spec"]["backends"][1]["weight"] == 5


def test_it_tells_when_another_manager_sets_the_weights_back(client, operator, canary, kubeapi):
    client.force_login(operator)
    _apply(client, canary)
    assert WeightChange.objects.get().result == "applied"

    # Flagger (or a GitOps controller) writes its own weights back shortly after.
    api = custom_api(kubeapi)
    api.api_client.user_agent = "flagger/1.37.0"
    api.patch_namespaced_custom_object(*BOOKSTORE_SPLIT, {"spec": {"backends": BEFORE}})
    collect_and_record(canary.cluster)

    record = WeightChange.objects.get()
    assert record.undone_by == "flagger"
    notice = record.undone_notice
    assert (
        notice.startswith("bookstore-split was set back to 100/0 by flagger ") and "after the change by otto" in notice
    )
    assert notice in client.get("/splits/").content.decode()
    assert notice in client.get("/splits/audit/").content.decode()


GITOPS_MARKERS = {
    # Argo CD's annotation tracking (its default from v3.0) and its instance label (a custom label-tracking key).
    "argo cd annotation": (
        {
            "annotations": {
                "argocd.argoproj.io/tracking-id": "bookstore:split.smi-spec.io/TrafficSplit:bookstore/bookstore-split"
            }
        },
        "Argo CD (application bookstore)",
    ),
    "argo cd label": ({"labels": {"argocd.argoproj.io/instance": "bookstore"}}, "Argo CD (application bookstore)"),
    # Flux's kustomize-controller labels what it applies with its Kustomization's name and namespace.
    "flux kustomization labels": (
        {
            "labels": {
                "kustomize.toolkit.fluxcd.io/name": "apps",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
            }
        },
        "Flux Kustomization (flux-system/apps)",
    ),
}


@pytest.mark.parametrize("marker", sorted(GITOPS_MARKERS))
def test_it_asks_for_confirmation_before_writing_a_split_gitops_tracks(client, operator, canary, kubeapi, marker):
    metadata, manager = GITOPS_MARKERS[marker]
    custom_api(kubeapi).patch_namespaced_custom_object(*BOOKSTORE_SPLIT, {"metadata": metadata})
    collect_and_record(canary.cluster)
    canary.refresh_from_db()
    client.force_login(operator)

    editor = client.get(URL).content.decode()
    assert f"Managed by GitOps: <strong>{manager}</strong>" in editor
    html = _apply(client, canary).content.decode()
    assert "Change them in Git, or confirm to apply anyway." in html
    assert bookstore_split(kubeapi)["spec"]["backends"] == BEFORE

    data = {"resource_version": canary.resource_version, "action": "apply", "confirm_gitops": "on"}
    for i, b in enumerate(OURS):
        data[f"backend_{i}"], data[f"weight_{i}"] = b["service"], str(b["weight"])
    assert client.post(URL, data).status_code == 302
    assert bookstore_split(kubeapi)["spec"]["backends"] == OURS
    assert list(WeightChange.objects.order_by("id").values_list("result", flat=True)) == ["invalid", "applied"]


def test_it_waits_for_a_sample_after_the_change_before_comparing_shares(client, operator, canary, kubeapi):
    client.force_login(operator)
    _apply(client, canary)
    page = client.get("/splits/").content.decode()
    assert "waiting for the first sample after the change" in page
    assert "differs by more than 10 points" not in page


def test_it_warns_on_the_splits_page_and_the_editor_about_backends_that_cannot_take_traffic(
    client, operator, canary, kubeapi
):
    # bookstore-v2 answers 20 % 5xx in the fixture's KPIs; then its only pod opts out of the sidecar.
    client.force_login(operator)
    page = client.get("/splits/").content.decode()
    v2 = page[page.index('data-backend="bookstore-v2"') :]
    assert "Failing now: 5xx 20%" in v2[: v2.index("</tr>")]

    Service.objects.filter(cluster=canary.cluster, name="bookstore-v2").update(pods_meshed=0)
    editor = client.get(URL).content.decode()
    row = editor[editor.index('data-backend="bookstore-v2"') :]
    assert "have no sidecar: they cannot answer mesh traffic" in row[: row.index("</tr>")]
