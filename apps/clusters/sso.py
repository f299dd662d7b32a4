"""Who may sign in, and how: local accounts (break-glass, can be turned off) and OpenID Connect single sign-on.

An OIDC login finds its account by the provider's `sub` only (`Access.oidc_subject`), never by name or e-mail, so a
provider's user cannot take over a local account that shares its name: such a login is refused and says why. At
each OIDC login the claims set the user's role and namespaces (apps/clusters/claims.py), overwriting what the admin
set since: the identity provider is where access is granted, the admin only bridges until the next login.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .claims import Grant, grant_from_claims
from .models import Access
from .roles import ensure_roles

log = logging.getLogger(__name__)


class LocalBackend(ModelBackend):
    """Django's username and password login, while MESHBOARD_LOCAL_LOGIN allows it. Turned off, it neither logs
    anyone in nor keeps a local account's session alive."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if not settings.MESHBOARD_LOCAL_LOGIN:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_user(self, user_id: int) -> Any:
        return super().get_user(user_id) if settings.MESHBOARD_LOCAL_LOGIN else None


def grant_for(claims: dict) -> Grant:
    return grant_from_claims(
        claims,
        claim=settings.MESHBOARD_OIDC_ROLES_CLAIM,
        viewer_values=settings.MESHBOARD_OIDC_VIEWER_ROLES,
        operator_values=settings.MESHBOARD_OIDC_OPERATOR_ROLES,
    )


def apply_grant(user: Any, grant: Grant) -> None:
    """Make the user's role and namespaces what `grant` says (the claim wins over the admin at each login)."""
    groups = ensure_roles()
    with transaction.atomic():
        user.groups.set([groups[grant.role]] if grant.role else [])
        access, _ = Access.objects.get_or_create(user=user)
        access.namespaces = grant.namespaces
        access.operate_namespaces = grant.operate_namespaces
        access.claims_applied_at = timezone.now()
        access.save()


class OIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's code flow, with Meshboard's account matching and claim → role mapping."""

    def get_userinfo(self, access_token: str, id_token: str, payload: dict) -> dict:
        """The verified ID token's claims, and the userinfo endpoint's where one is configured (the ID token's win:
        Entra ID's app roles are in the ID token only)."""
        extra = super().get_userinfo(access_token, id_token, payload) if self.OIDC_OP_USER_ENDPOINT else {}
        return {**extra, **payload}

    def verify_claims(self, claims: dict) -> bool:
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims: dict) -> Any:
        return get_user_model().objects.filter(meshboard_access__oidc_subject=str(claims["sub"]))

    def create_user(self, claims: dict) -> Any:
        User = get_user_model()
        sub = str(claims["sub"])
        wanted = claims.get(settings.MESHBOARD_OIDC_USERNAME_CLAIM) or claims.get("email") or sub
        username = str(wanted)[: User._meta.get_field("username").max_length]
        taken = User.objects.filter(username=username).first()
        if taken is not None:
            what = (
                "another single sign-on user"
                if Access.objects.filter(user=taken).exclude(oidc_subject=None).exists()
                else "a local account"
            )
            self._refuse(
                f"The account name {username!r} is already taken by {what}; an administrator must rename "
                "or delete it before this single sign-on user can sign in.",
                f"sub={sub!r} username={username!r}: name taken",
            )
        user = User(username=username, email=str(claims.get("email") or "")[:254])
        user.set_unusable_password()  # signs in through the identity provider only
        with transaction.atomic():  # an account and its subject, or neither
            user.save()
            Access.objects.create(user=user, oidc_subject=sub)
        return self.update_user(user, claims)

    def update_user(self, user: Any, claims: dict) -> Any:
        grant = grant_for(claims)
        apply_grant(user, grant)
        log.info(
            "single sign-on: %s (sub=%r) is %s from claim %r%s",
            user.get_username(),
            claims.get("sub"),
            grant.describe(),
            settings.MESHBOARD_OIDC_ROLES_CLAIM,
            f"; ignored values {grant.ignored}" if grant.ignored else "",
        )
        if grant.ignored and getattr(self, "request", None) is not None:
            messages.warning(
                self.request, f"Ignored role values naming no valid namespace: {', '.join(grant.ignored)}."
            )
        return user

    def _refuse(self, message: str, logged: str) -> None:
        log.warning("single sign-on refused: %s", logged)
        if getattr(self, "request", None) is not None:
            messages.error(self.request, f"Single sign-on refused: {message}")
        raise SuspiciousOperation(logged)
