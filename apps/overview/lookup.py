"""The one way views fetch a service or a workload for a user: permission first, then the object (404 if it is not in
the latest snapshot)."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from apps.clusters.models import Cluster
from apps.clusters.roles import require_viewer
from apps.mesh.models import Service

from .workload_detail import Found, find_workload
from .workloads import PAGE_KINDS, POD


class NotInSnapshot(Http404):
    """404 with what was looked for, so the page can say it: "No Deployment bookbuyer/nope in ..."."""

    def __init__(self, what: str, namespace: str, name: str) -> None:
        super().__init__(f"No {what} {namespace}/{name} in the latest snapshot of this cluster.")
        self.what, self.namespace, self.name = what, namespace, name


def service_for(request: HttpRequest, cluster: Cluster | None, namespace: str, name: str) -> Service:
    require_viewer(request)
    service = (
        Service.objects.filter(cluster=cluster, namespace=namespace, name=name).first() if cluster is not None else None
    )
    if service is None:
        raise NotInSnapshot("Service", namespace, name)
    return service


def workload_for(request: HttpRequest, cluster: Cluster | None, namespace: str, kind: str, name: str) -> Found:
    require_viewer(request)
    found = find_workload(cluster, namespace, kind, name) if cluster is not None else None
    if found is None:
        known = PAGE_KINDS.get(kind)
        raise NotInSnapshot("bare pod" if known == POD else known or f"workload of kind {kind!r}", namespace, name)
    return found
