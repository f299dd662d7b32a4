"""The two roles, as Django groups: viewers read everything; operators may also change TrafficSplit weights."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

VIEWER = "viewer"
OPERATOR = "operator"
WEIGHTS_PERMISSION = "clusters.change_trafficsplit_weights"
VIEW_PERMISSION = "mesh.view_service"  # every role holds it
_READ_APPS = ("clusters", "mesh")


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


def can_change_weights(user: object) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.has_perm(WEIGHTS_PERMISSION))


def require_viewer(request: HttpRequest) -> None:
    """Every page's first check: the user holds a Meshboard role (viewer or operator)."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied("Your account has no Meshboard role; ask an administrator for viewer or operator.")
