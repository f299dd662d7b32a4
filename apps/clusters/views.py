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
    from apps.services.access import require_viewer

    require_viewer(request)
    return render_page(request, "clusters/status.html", "clusters", {"clusters": cluster_statuses()})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for container healthchecks: the process answers and the database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
