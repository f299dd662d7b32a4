from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps.clusters.picker import page_context
from apps.clusters.roles import require_viewer
from apps.core.pages import render_page

from .finder import MAX_LENGTH, PER_KIND, search


@require_GET
@login_required
def results(request: HttpRequest) -> HttpResponse:
    """`/search/?q=`: a page of its own without JavaScript; the header's box asks for the `results` partial as one
    types (htmx), into the list under the box."""
    require_viewer(request)
    ctx = page_context(request)
    query = request.GET.get("q", "").strip()[:MAX_LENGTH]
    groups = search(ctx.cluster, query) if ctx.cluster is not None and query else []
    context = {"page_ctx": ctx, "q": query, "groups": groups, "per_kind": PER_KIND}
    return render_page(request, "search/search.html", "results", context)
