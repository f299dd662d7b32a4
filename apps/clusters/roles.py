"""The two roles, as Django groups: viewers read; operators may also change TrafficSplit weights.

Either role may be limited to namespaces (`Access`, apps/clusters/models.py): what a user sees is
`scope.allowed_namespaces`, where an operator may write is `can_change_weights(user, namespace)` below, which the
editor, the presets, the rollback and the write service all ask.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from .scope import allowed_namespaces

VIEWER = "viewer"
OPERATOR = "operator"
WEIGHTS_PERMISSION = "clusters.change_trafficsplit_weights"
VIEW_PERMISSION = "mesh.view_service"  # every role holds it
_READ_APPS = ("clusters", "mesh")


class RoleRequired(PermissionDenied):
    """A refusal that knows the role it takes, which the 403 page names (apps/core/error_pages.py)."""

    def __init__(self, reason: str, *, role: str) -> None:
        super().__init__(reason)
        self.role = role


def ensure_roles() -> dict[str, Group]:
    """Create or repair both groups; safe to run any number of times."""
    view = list(Permission.objects.filter(content_type__app_label__in=_READ_APPS, codename__startswith="view_"))
    app_label, codename = WEIGHTS_PERMISSION.split(".")
    weights = Permission.objects.get(content_type__app_label=app_label, codename=codename)
    viewer, _ = Group.objects.get_or_create(name=VIEWER)
    viewer.permissions.set(view)
    operator, _ = Group.objects.get_or_create(name=OPERATOR)
    operator.permissions.set([*view, weights])
    return {VIEWER: viewer, OPERATOR: operator}


def operate_namespaces(user: object) -> frozenset[str] | None:
    """Where an operator may change weights, as the admin or the claims set it; None: wherever they see."""
    from .models import Access

    if not getattr(user, "is_authenticated", False):
        return frozenset()
    access = Access.objects.filter(user=user).only("operate_namespaces").first()
    return frozenset(access.operate_namespaces) if access and access.operate_namespaces else None


def can_change_weights(user: object, namespace: str | None = None) -> bool:
    """The operator role; with `namespace`, also that this operator's namespaces include it."""
    if not (getattr(user, "is_authenticated", False) and user.has_perm(WEIGHTS_PERMISSION)):
        return False
    if namespace is None:
        return True
    return namespace in writable_namespaces(user, [namespace])


def writable_namespaces(user: object, namespaces: list[str]) -> list[str]:
    """Those of `namespaces` where `user` may change weights (both their seen and their operated namespaces)."""
    if not (getattr(user, "is_authenticated", False) and user.has_perm(WEIGHTS_PERMISSION)):
        return []
    seen, operated = allowed_namespaces(user), operate_namespaces(user)
    return [ns for ns in namespaces if (seen is None or ns in seen) and (operated is None or ns in operated)]


def weights_refusal(user: object, namespace: str) -> str:
    """Why `user` may not change weights in `namespace`, in words for the page and the audit record."""
    name = user.get_username() if getattr(user, "is_authenticated", False) else "anonymous"
    if not can_change_weights(user):
        has_view = getattr(user, "is_authenticated", False) and user.has_perm(VIEW_PERMISSION)
        role = "viewer" if has_view else "no Meshboard role"
        return f"{name} ({role}) may not change weights: only operators may."
    seen, operated = allowed_namespaces(user), operate_namespaces(user)
    mine = operated if seen is None else seen if operated is None else operated & seen
    where = ", ".join(sorted(mine or ())) or "no namespace"
    return f"{name} (operator of {where}) may not change weights in namespace {namespace}: only in {where}."


def require_viewer(request: HttpRequest) -> None:
    """Every page's first check: the user holds a Meshboard role (viewer or operator)."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise RoleRequired(
            "Your account has no Meshboard role; ask an administrator for viewer or operator.", role=VIEWER
        )
