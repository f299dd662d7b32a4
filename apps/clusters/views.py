from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from apps.core.pages import render_page

from .status import cluster_statuses


@require_GET
@login_required
def status(request: HttpRequest) -> HttpResponse:
    """Every cluster with how fresh its snapshot is and what it holds; the section refreshes itself."""
    from apps.policies.meshinfo import mesh_report
    from apps.services.access import require_viewer

    require_viewer(request)
    # Each cluster's status with its mesh report (facts and checks), built here rather than in the template.
    clusters = [(s, mesh_report(s.cluster) if s.state else None) for s in cluster_statuses()]
    return render_page(request, "clusters/status.html", "clusters", {"clusters": clusters})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for container healthchecks: the process answers and the database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
