"""The one way views fetch a service for a user: permission first, then the object (404 if not in the snapshot)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from apps.clusters.models import Cluster
from apps.mesh.models import Service

VIEW_PERMISSION = "mesh.view_service"


def require_viewer(request: HttpRequest) -> None:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied("Your account has no Meshboard role; ask an administrator for viewer or operator.")


def service_for(request: HttpRequest, cluster: Cluster | None, namespace: str, name: str) -> Service:
    require_viewer(request)
    service = (
        Service.objects.filter(cluster=cluster, namespace=namespace, name=name).first() if cluster is not None else None
    )
    if service is None:
        raise Http404("No such service in the latest snapshot of this cluster.")
    return service
