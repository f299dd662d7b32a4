"""In Chromium, against a local OpenID provider: sign-in, the claim → role mapping, an operator of team-a refused
(403, audited) on a split in another namespace, and a namespace-limited viewer who sees no other namespace's services
on any page, in the graph or in an export."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.canary.models import WeightChange
from apps.mesh.services import collect_and_record
from tests.browser_fixtures import screenshot
from tests.graph.conftest import BOOKSTORE_EDGES, add_edges
from tests.helpers import bookstore_split, set_bookstore_backends

OTHERS = ("bookstore", "bookthief", "bookwarehouse")


def sso_login(page, base_url: str, sub: str) -> None:
    """The user's way in: Meshboard's login page, the provider's page (the mock asks for the subject), and back."""
    # The mock provider's own page asks a CDN for its stylesheet and the browser for /favicon.ico, which it does not
    # have: answered empty here, so page.errors holds Meshboard's errors only (Meshboard names no other host, and
    # its icon is inline).
    page.route(re.compile(r"^https://|/favicon\.ico$"), lambda route: route.fulfill(status=204, body=""))
    page.goto(f"{base_url}/accounts/login/")
    page.click("[data-sso]")
    page.wait_for_url(re.compile(r"/oauth2/authorize\?"))
    page.fill("input[name=sub]", sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile(rf"^{re.escape(base_url)}/(\?.*)?$"))


def logout(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()


@pytest.fixture
def scene(bookstore, kubeapi):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    add_edges(bookstore, BOOKSTORE_EDGES)
    return bookstore


def test_it_signs_in_and_maps_the_roles_claim(page, live_server, oidc_provider, scene):
    oidc_provider.set_user("sub-alice", {"preferred_username": "alice", "roles": ["Meshboard.Viewer"]})
    sso_login(page, live_server.url, "sub-alice")
    expect(page.locator(".who")).to_have_text("alice · viewer")
    expect(page.locator("[data-namespace-scope]")).to_have_count(0)
    page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
    expect(page.locator(".readonly")).to_contain_text("Read only: your role is viewer")

    logout(page)
    oidc_provider.set_user("sub-alice", {"preferred_username": "alice", "roles": ["Meshboard.Operator"]})
    sso_login(page, live_server.url, "sub-alice")
    expect(page.locator(".who")).to_have_text("alice · operator")
    page.goto(f"{live_server.url}/splits/bookstore/bookstore-split/")
    expect(page.get_by_role("button", name="Preview change")).to_be_visible()
    assert page.errors == []


def test_it_refuses_and_audits_a_team_a_operator_on_another_namespaces_split(
    page, live_server, oidc_provider, scene, kubeapi
):
    oidc_provider.set_user(
        "sub-tess", {"preferred_username": "tess", "roles": ["Meshboard.Viewer", "Meshboard.Operator:team-a"]}
    )
    sso_login(page, live_server.url, "sub-tess")
    expect(page.locator(".who")).to_have_text("tess · operator")
    editor = f"{live_server.url}/splits/bookstore/bookstore-split/"
    page.goto(editor)
    expect(page.locator("[data-namespace-refused]")).to_have_text(
        "Read only: you may change weights in other namespaces, not in bookstore."
    )
    expect(page.get_by_role("button", name="Preview change")).to_have_count(0)

    # The form's POST sent anyway, from this browser's session (as a script or a stale tab would).
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    version = bookstore_split(kubeapi)["metadata"]["resourceVersion"]
    answer = page.request.post(
        editor,
        form={
            "resource_version": version,
            "action": "apply",
            "backend_0": "bookstore-v1",
            "weight_0": "50",
            "backend_1": "bookstore-v2",
            "weight_1": "50",
        },
        headers={"X-CSRFToken": token, "Referer": editor},
    )
    assert answer.status == 403
    assert "tess (operator of team-a) may not change weights in namespace bookstore: only in team-a." in answer.text()
    assert bookstore_split(kubeapi)["metadata"]["resourceVersion"] == version

    page.goto(f"{live_server.url}/splits/audit/")
    row = page.locator("tbody tr").first
    expect(row).to_contain_text("tess")
    expect(row).to_contain_text("Forbidden: nothing sent")
    expect(row).to_contain_text("may not change weights in namespace bookstore: only in team-a")
    screenshot(page, "sso-team-a-operator-refused")
    assert WeightChange.objects.get().result == "forbidden"


def test_it_shows_a_namespace_limited_viewer_no_other_namespace(page, live_server, oidc_provider, scene):
    oidc_provider.set_user("sub-bea", {"preferred_username": "bea", "roles": ["Meshboard.Viewer:bookbuyer"]})
    sso_login(page, live_server.url, "sub-bea")
    expect(page.locator(".who")).to_have_text("bea · viewer")
    note = "You see the namespace bookbuyer only; every other namespace is hidden."
    pages = ("/", "/?show=workloads", "/splits/", "/policies/", "/mesh/", "/migrate/", "/history/", "/splits/audit/")
    for path in pages:
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("[data-namespace-scope]")).to_have_text(note)
        text = page.locator("main").inner_text()
        assert not [ns for ns in OTHERS if re.search(rf"(?<![a-z0-9-]){ns}", text)], (path, text[:2000])
    page.goto(f"{live_server.url}/?show=workloads")
    expect(page.locator("main")).to_contain_text("bookbuyer")  # their own workload is there

    # The graph: what its script fetched and what it drew.
    with page.expect_response(re.compile(r"/graph/data")) as fetched:
        page.goto(f"{live_server.url}/graph/")
    data = fetched.value.json()
    expect(page.locator("[data-namespace-scope]")).to_have_text(note)
    names = [n["data"].get("name", "") + " " + n["data"].get("id", "") for n in data["elements"]["nodes"]]
    assert not [n for n in names if any(ns in n for ns in OTHERS)], names
    assert data["namespaces"] == ["bookbuyer"]
    # Their calls to the hidden namespaces, drawn to one anonymous peer.
    assert "(other namespaces) svc:(hidden)/(other namespaces)" in names
    assert data["counts"]["edges"] >= 1

    # Exports, downloaded with this browser's session.
    for path in ("/migrate/bundle.yaml", "/migrate/report.txt", "/graph/data?idle=1"):
        body = page.request.get(f"{live_server.url}{path}").text()
        assert not [ns for ns in OTHERS if re.search(rf"(?<![a-z0-9-]){ns}", body)], (path, body[:2000])
    assert page.request.get(f"{live_server.url}/services/bookstore/bookstore/").status == 404
    screenshot(page, "sso-namespace-limited-viewer")
    assert page.errors == []
