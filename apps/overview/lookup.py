"""The one way views fetch a service for a user: permission first, then the object (404 if not in the snapshot)."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from apps.clusters.models import Cluster
from apps.clusters.roles import require_viewer
from apps.mesh.models import Service


def service_for(request: HttpRequest, cluster: Cluster | None, namespace: str, name: str) -> Service:
    require_viewer(request)
    service = (
        Service.objects.filter(cluster=cluster, namespace=namespace, name=name).first() if cluster is not None else None
    )
    if service is None:
        raise Http404("No such service in the latest snapshot of this cluster.")
    return service
