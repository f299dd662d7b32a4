"""The graph page (a shell) and the one JSON endpoint its script draws from."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.clusters.picker import page_context
from apps.clusters.roles import require_viewer
from apps.core.gc import gc_paused
from apps.overview.overview import namespaces

from .graph import build_graph
from .query import QueryError, parse

MAX_NAMESPACES = 200


def _params(request: HttpRequest) -> tuple[list[str], str, str]:
    chosen = [ns[:253] for ns in request.GET.getlist("ns") if ns][:MAX_NAMESPACES]
    return chosen, request.GET.get("find", "")[:1000], request.GET.get("hide", "")[:1000]


@require_GET
@login_required
def graph(request: HttpRequest) -> HttpResponse:
    require_viewer(request)
    ctx = page_context(request)
    chosen, find, hide = _params(request)
    config = {
        "dataUrl": reverse("graph:data"),
        "cluster": ctx.cluster.name if ctx.cluster else "",
        # Kept positions are per user and cluster: the browser's storage key names both.
        "user": request.user.pk,
        "icons": {"mtls": static("graph/padlock.svg"), "open": static("graph/padlock-open.svg")},
    }
    context = {
        "page_ctx": ctx,
        "config": config,
        "namespaces": namespaces(ctx.cluster) if ctx.cluster else [],
        "chosen": chosen,
        "find": find,
        "hide": hide,
        "show_idle": request.GET.get("idle") == "1",
        **ctx.freshness(),
    }
    return render(request, "graph/graph.html", context)


@require_GET
@login_required
def data(request: HttpRequest) -> JsonResponse:
    """`?ns=a&ns=b&find=...&hide=...` → the graph as JSON; 400 with {"error": ...} for a bad expression."""
    require_viewer(request)
    ctx = page_context(request)
    if ctx.cluster is None:
        return JsonResponse({"error": "no cluster yet"}, status=404)
    chosen, find, hide = _params(request)
    # Thousands of small acyclic dicts: without the pause, generation scans add tens of ms at random requests.
    with gc_paused():
        try:
            graph_data = build_graph(ctx.cluster, namespaces=chosen, find=find, hide=hide)
        except QueryError as exc:
            return JsonResponse({"error": str(exc), "field": "find" if _bad(find) else "hide"}, status=400)
        response = JsonResponse(graph_data)
    response["Cache-Control"] = "no-store"
    return response


def _bad(expression: str) -> bool:
    try:
        parse(expression)
    except QueryError:
        return True
    return False
