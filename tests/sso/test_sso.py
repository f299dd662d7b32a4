"""Single sign-on through a local OpenID provider, over HTTP: accounts by `sub`, the claim → role mapping, the claim
winning over the admin at each login, the admin's inline, and local login turned off."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.clusters.claims import grant_from_claims
from apps.clusters.models import Access

from .conftest import sso_login

ALICE = {"preferred_username": "alice", "email": "alice@example.com"}


def who(client) -> str:
    html = client.get("/").content.decode()
    start = html.index('<span class="who">') + len('<span class="who">')
    return html[start : html.index("</span>", start)]


def test_it_signs_in_through_the_provider_and_maps_the_roles_claim(client, oidc_provider, bookstore):
    oidc_provider.set_user("sub-alice", {**ALICE, "roles": ["Meshboard.Viewer", "Other.App.Role"]})
    answer = sso_login(client, oidc_provider, "sub-alice")
    assert answer.status_code == 302 and answer["Location"] == "/"
    assert who(client) == "alice · viewer"
    alice = get_user_model().objects.get(username="alice")
    assert not alice.has_usable_password() and alice.meshboard_access.oidc_subject == "sub-alice"

    client.logout()
    oidc_provider.set_user("sub-alice", {**ALICE, "roles": ["Meshboard.Operator"]})
    sso_login(client, oidc_provider, "sub-alice")
    assert who(client) == "alice · operator"
    assert get_user_model().objects.filter(username="alice").count() == 1  # the same account, found by `sub`


def test_it_lets_the_claim_win_over_the_admin_at_each_login(client, admin_client, oidc_provider, bookstore):
    oidc_provider.set_user("sub-alice", {**ALICE, "roles": ["Meshboard.Viewer:bookbuyer"]})
    sso_login(client, oidc_provider, "sub-alice")
    alice = get_user_model().objects.get(username="alice")
    assert list(alice.groups.values_list("name", flat=True)) == ["viewer"]
    assert alice.meshboard_access.namespaces == ["bookbuyer"]

    # An administrator makes alice an operator of every namespace, in the admin.
    change = f"/admin/auth/user/{alice.pk}/change/"
    assert "Meshboard access" in admin_client.get(change).content.decode()
    saved = admin_client.post(change, _user_form(alice, group="operator", namespaces="[]", operate='["bookstore"]'))
    assert saved.status_code == 302, saved.content.decode()[:3000]
    alice.refresh_from_db()
    access = Access.objects.get(user=alice)
    assert list(alice.groups.values_list("name", flat=True)) == ["operator"]
    assert (access.namespaces, access.operate_namespaces) == ([], ["bookstore"])
    client.force_login(alice, backend="apps.clusters.sso.OIDCBackend")
    assert who(client) == "alice · operator"

    # At her next single sign-on the claim decides again.
    client.logout()
    sso_login(client, oidc_provider, "sub-alice")
    alice.refresh_from_db()
    access.refresh_from_db()
    assert list(alice.groups.values_list("name", flat=True)) == ["viewer"]
    assert (access.namespaces, access.operate_namespaces) == (["bookbuyer"], [])
    assert who(client) == "alice · viewer"


def _user_form(user, *, group: str, namespaces: str, operate: str) -> dict:
    from django.contrib.auth.models import Group

    access = Access.objects.get(user=user)
    return {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "is_active": "on",
        "groups": [str(Group.objects.get(name=group).pk)],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "meshboard_access-TOTAL_FORMS": "1",
        "meshboard_access-INITIAL_FORMS": "1",
        "meshboard_access-MIN_NUM_FORMS": "0",
        "meshboard_access-MAX_NUM_FORMS": "1",
        "meshboard_access-0-id": str(access.pk),
        "meshboard_access-0-user": str(user.pk),
        "meshboard_access-0-namespaces": namespaces,
        "meshboard_access-0-operate_namespaces": operate,
    }


def test_it_refuses_a_bad_namespace_in_the_admin(admin_client, viewer):
    Access.objects.get_or_create(user=viewer)
    form = _user_form(viewer, group="viewer", namespaces='["Team A/x"]', operate="[]")
    answer = admin_client.post(f"/admin/auth/user/{viewer.pk}/change/", form)
    assert answer.status_code == 200 and "Not a namespace name: &#x27;Team A/x&#x27;" in answer.content.decode()
    assert Access.objects.get(user=viewer).namespaces == []


def test_it_gives_a_user_without_a_matching_role_no_access(client, oidc_provider, bookstore):
    oidc_provider.set_user("sub-bob", {"preferred_username": "bob", "roles": ["Some.Other.Role"]})
    sso_login(client, oidc_provider, "sub-bob")
    answer = client.get("/")
    assert answer.status_code == 403
    assert "Your account has no Meshboard role" in answer.content.decode()


def test_it_never_hands_a_local_account_to_a_provider_user_of_the_same_name(client, oidc_provider, operator):
    oidc_provider.set_user("sub-evil", {"preferred_username": "otto", "roles": ["Meshboard.Operator"]})
    answer = sso_login(client, oidc_provider, "sub-evil")
    assert answer.status_code == 302 and answer["Location"] == "/accounts/login/"
    page = client.get("/accounts/login/").content.decode()
    assert "Single sign-on refused: The account name &#x27;otto&#x27; is already taken by a local account" in page
    assert not Access.objects.filter(oidc_subject="sub-evil").exists()
    assert "_auth_user_id" not in client.session


def test_it_turns_local_login_off(client, admin_user, oidc_provider, operator, settings, caplog):
    client.force_login(operator)
    assert client.get("/splits/").status_code == 200
    settings.MESHBOARD_LOCAL_LOGIN = False

    # A local account's session ends, the login page offers single sign-on only, and passwords are refused there
    # and in the admin.
    assert client.get("/splits/")["Location"].startswith("/accounts/login/")
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with single sign-on" in page and 'name="password"' not in page
    refused = client.post("/accounts/login/", {"username": "otto", "password": "a-long-operator-pass"})
    assert refused.status_code == 403 and "Local accounts are turned off here" in refused.content.decode()
    assert not [r for r in caplog.records if "login failed: username='otto'" in r.getMessage()]  # no password checked
    admin = client.post("/admin/login/", {"username": "admin", "password": "password", "next": "/admin/"})
    assert admin.status_code == 200 and "Please enter the correct username and password" in admin.content.decode()
    assert client.get("/admin/").status_code == 302

    # Turned back on (break-glass), the same password works again.
    settings.MESHBOARD_LOCAL_LOGIN = True
    answer = client.post("/accounts/login/", {"username": "otto", "password": "a-long-operator-pass"})
    assert answer.status_code == 302 and client.get("/splits/").status_code == 200


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Meshboard.Viewer"], ("viewer", [], [])),
        (["Meshboard.Operator", "Meshboard.Viewer:a"], ("operator", [], [])),
        (["Meshboard.Viewer", "Meshboard.Operator:team-a"], ("operator", [], ["team-a"])),
        (["Meshboard.Operator:team-a"], ("operator", ["team-a"], ["team-a"])),
        (["Meshboard.Viewer:b", "Meshboard.Operator:team-a"], ("operator", ["b", "team-a"], ["team-a"])),
        (["Meshboard.Viewer:b", "Meshboard.Viewer:a"], ("viewer", ["a", "b"], [])),
        ("Meshboard.Viewer", ("viewer", [], [])),
        (["Meshboard.Viewer:Bad/Name"], (None, [], [])),
        (["meshboard.viewer", 7, None], (None, [], [])),
    ],
)
def test_it_maps_claim_values_to_a_role_and_namespaces(values, expected):
    grant = grant_from_claims(
        {"roles": values}, claim="roles", viewer_values=["Meshboard.Viewer"], operator_values=["Meshboard.Operator"]
    )
    assert (grant.role, grant.namespaces, grant.operate_namespaces) == expected


def test_it_reads_the_role_claim_the_settings_name(client, oidc_provider, bookstore, settings):
    settings.MESHBOARD_OIDC_ROLES_CLAIM = "groups"
    settings.MESHBOARD_OIDC_OPERATOR_ROLES = ["meshboard-ops"]
    oidc_provider.set_user("sub-carol", {"preferred_username": "carol", "groups": ["meshboard-ops"], "roles": []})
    sso_login(client, oidc_provider, "sub-carol")
    assert who(client) == "carol · operator"
