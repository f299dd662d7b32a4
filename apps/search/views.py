from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
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
    htmx = getattr(request, "htmx", None)
    if not query and htmx and not htmx.boosted:
        # The header's box emptied (Escape clears a search field, and fires a search): its list closes. Were it to
        # get the page's help text, a late answer could reopen the list after Escape closed it.
        response = HttpResponse("")
        patch_vary_headers(response, ("HX-Request",))
        return response
    groups = search(ctx.cluster, query) if ctx.cluster is not None and query else []
    context = {"page_ctx": ctx, "q": query, "groups": groups, "per_kind": PER_KIND}
    return render_page(request, "search/search.html", "results", context)
