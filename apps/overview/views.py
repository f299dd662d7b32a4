from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.clusters.picker import page_context
from apps.clusters.roles import require_viewer
from apps.core.pages import render_page

from .detail import service_detail
from .lookup import service_for
from .overview import SORTS, namespaces, overview_rows

COLUMNS = [
    ("name", "Service"),
    ("namespace", "Namespace"),
    ("health", "Health"),
    ("rps", "Req/s"),
    ("success", "Success"),
    ("p50", "p50"),
    ("p95", "p95"),
    ("p99", "p99"),
    ("tcp", "TCP"),
    ("coverage", "Sidecars"),
]


@require_GET
@login_required
def overview(request: HttpRequest) -> HttpResponse:
    require_viewer(request)
    ctx = page_context(request)
    namespace = request.GET.get("namespace", "")
    search = request.GET.get("q", "").strip()[:253]
    sort = request.GET.get("sort", "name")
    sort = sort if sort.lstrip("-") in SORTS else "name"
    rows = (
        overview_rows(ctx.cluster, namespace=namespace, search=search, sort=sort.lstrip("-"), descending=sort[0] == "-")
        if ctx.cluster
        else []
    )
    page = Paginator(rows, settings.MESHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page_ctx": ctx,
        "page": page,
        "namespace": namespace,
        "namespaces": namespaces(ctx.cluster) if ctx.cluster else [],
        "search": search,
        "sort": sort,
        "columns": COLUMNS,
        **ctx.freshness(),
    }
    return render_page(request, "overview/overview.html", "table", context)


@require_GET
@login_required
def detail(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    ctx = page_context(request)
    service = service_for(request, ctx.cluster, namespace, name)
    context = {
        "page_ctx": ctx,
        "d": service_detail(service),
        **ctx.freshness(),
    }
    return render(request, "overview/detail.html", context)


@require_GET
@login_required
def series(request: HttpRequest, namespace: str, name: str) -> JsonResponse:
    """Chart data for one service over the chosen window, from Prometheus through the metrics app (cached)."""
    ctx = page_context(request)
    service = service_for(request, ctx.cluster, namespace, name)
    from apps.metrics.ranges import service_series

    return JsonResponse(service_series(ctx.cluster, service.namespace, service.name, ctx.window))
