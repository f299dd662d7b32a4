from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.clusters.picker import PageContext, page_context
from apps.clusters.roles import require_viewer
from apps.core.csv_export import page_csv, wants_csv
from apps.core.pages import render_page

from .as_of import past_view
from .detail import service_detail
from .lookup import NotInSnapshot, service_for, workload_for
from .overview import SORTS, fleet_rows, namespaces, overview_rows
from .workload_detail import workload_detail
from .workloads import POD, WORKLOAD_SORTS, workload_rows

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
WORKLOAD_COLUMNS = [
    ("name", "Workload"),
    ("kind", "Kind"),
    ("namespace", "Namespace"),
    ("ready", "Pods ready"),
    ("rps", "Out req/s"),
    ("success", "Success"),
    ("tcp", "TCP out"),
    ("refused", "Passthrough / refused"),
    ("coverage", "Sidecars"),
]
SERVICES, WORKLOADS, FLEET = "services", "workloads", "fleet"


@require_GET
@login_required
def overview(request: HttpRequest) -> HttpResponse:
    """Every service (default) or every workload (`?show=workloads`) of the cluster, filtered, sorted, paged; or
    every cluster (`?show=fleet`), worst first, with its health, freshness and worst services."""
    require_viewer(request)
    ctx = page_context(request)
    show = request.GET.get("show") if request.GET.get("show") in (WORKLOADS, FLEET) else SERVICES
    namespace = request.GET.get("namespace", "")
    search = request.GET.get("q", "").strip()[:253]
    if show == FLEET:
        context = {
            "page_ctx": ctx,
            "show": show,
            "search": search,
            "fleet": fleet_rows(ctx.clusters, ctx.time_range, search=search),
            "as_of_error": "The fleet view has no past view: showing the present." if request.GET.get("as_of") else "",
        }
        return render_page(request, "overview/overview.html", "table", context)
    sorts = WORKLOAD_SORTS if show == WORKLOADS else SORTS
    sort = request.GET.get("sort", "name")
    sort = sort if sort.lstrip("-") in sorts else "name"
    past, as_of_error = None, ""
    if ctx.cluster and show == SERVICES:
        past, as_of_error = past_view(ctx.cluster, request.GET.get("as_of", ""))
    elif request.GET.get("as_of", "").strip():
        as_of_error = f"The {show} view has no past view (the history keeps no pods): showing the present."
    order = {"sort": sort.lstrip("-"), "descending": sort[0] == "-"}
    if not ctx.cluster:
        rows = []
    elif show == WORKLOADS:
        rows = workload_rows(ctx.cluster, namespace=namespace, search=search, **order)
    elif past is not None:
        rows = overview_rows(
            ctx.cluster, namespace=namespace, search=search, splits=past.splits, kpis=past.kpis.services, **order
        )
    else:
        rows = overview_rows(ctx.cluster, namespace=namespace, search=search, **order)
    export = wants_csv(request)
    page_size = max(len(rows), 1) if export else settings.MESHBOARD_PAGE_SIZE  # the file: every page of the table
    page = Paginator(rows, page_size).get_page(request.GET.get("page"))
    context = {
        "page_ctx": ctx,
        "page": page,
        "show": show,
        "namespace": namespace,
        "namespaces": namespaces(ctx.cluster) if ctx.cluster else [],
        "search": search,
        "sort": sort,
        "columns": WORKLOAD_COLUMNS if show == WORKLOADS else COLUMNS,
        "past": past,
        "as_of_error": as_of_error,
        # Carried by the sort, pager and filter links so the past view stays past.
        "as_of_query": f"&{past.query}" if past else "",
        **ctx.freshness(),
    }
    response = render_page(request, "overview/overview.html", "table", context)
    if export:
        return page_csv(response, show, f"{ctx.cluster.name if ctx.cluster else 'meshboard'}-{show}.csv")
    return response


def _not_found(request: HttpRequest, ctx: PageContext, exc: NotInSnapshot) -> HttpResponse:
    """The product's 404: what was looked for, in which cluster, and where to go instead."""
    context = {"page_ctx": ctx, "missing": exc, **ctx.freshness()}
    return render(request, "overview/not_found.html", context, status=404)


@require_GET
@login_required
def detail(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    ctx = page_context(request)
    try:
        service = service_for(request, ctx.cluster, namespace, name)
    except NotInSnapshot as exc:
        return _not_found(request, ctx, exc)
    context = {
        "page_ctx": ctx,
        "d": service_detail(service, all_pairs=request.GET.get("pairs") == "all"),
        "all_pairs": request.GET.get("pairs") == "all",
        **ctx.freshness(),
    }
    return render(request, "overview/detail.html", context)


@require_GET
@login_required
def series(request: HttpRequest, namespace: str, name: str) -> JsonResponse:
    """Chart data for one service over the chosen window, from Prometheus through the metrics app (cached), with the
    weight changes of the splits that name it as markers (from the canary app: never cached, so a change made a
    moment ago shows at once)."""
    from datetime import UTC, datetime

    from apps.canary.markers import service_markers
    from apps.metrics.ranges import service_series

    ctx = page_context(request)
    service = service_for(request, ctx.cluster, namespace, name)
    data = service_series(ctx.cluster, service.namespace, service.name, ctx.time_range)
    since = datetime.fromtimestamp(data["start"], UTC)
    # A window ending now takes changes up to now: the series may come from a cache up to one step old.
    until = datetime.fromtimestamp(data["end"], UTC) if ctx.time_range.custom else None
    data["markers"] = service_markers(ctx.cluster, service.namespace, service.name, since, until)
    return JsonResponse(data)


@require_GET
@login_required
def workload(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    """One workload: its outbound traffic, refusals, pods, the services that select it and the policy about it."""
    ctx = page_context(request)
    try:
        found = workload_for(request, ctx.cluster, namespace, kind, name)
    except NotInSnapshot as exc:
        return _not_found(request, ctx, exc)
    context = {
        "page_ctx": ctx,
        "w": workload_detail(ctx.cluster, found),
        **ctx.freshness(),
    }
    return render(request, "overview/workload.html", context)


@require_GET
@login_required
def workload_series(request: HttpRequest, namespace: str, kind: str, name: str) -> JsonResponse:
    """Chart data for one workload's outbound traffic over the chosen window (cached)."""
    ctx = page_context(request)
    found = workload_for(request, ctx.cluster, namespace, kind, name)
    from apps.metrics.workload_ranges import workload_series as series_of

    ref = found.ref
    source_kind, source_name = ref.source
    labels = found.workload.template_labels if found.workload else found.pod.labels
    app = labels.get("app", "") if isinstance(labels, dict) else ""
    return JsonResponse(
        series_of(
            ctx.cluster,
            ref.namespace,
            source_kind,
            source_name if ref.kind != POD else ref.name,
            ctx.time_range,
            app=app if isinstance(app, str) else "",
        )
    )
