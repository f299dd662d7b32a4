from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from .status import cluster_statuses


@require_GET
@login_required
@vary_on_headers("HX-Request")
def status(request: HttpRequest) -> HttpResponse:
    """Every cluster with how fresh its snapshot is and what it holds; the table refreshes itself."""
    template = "clusters/status.html#clusters" if request.htmx else "clusters/status.html"
    return render(request, template, {"clusters": cluster_statuses()})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for container healthchecks: the process answers and the database is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
