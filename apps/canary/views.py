from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps.clusters.models import CollectionRun
from apps.clusters.status import freshness
from apps.core.pages import page_context, render_page
from apps.services.access import require_viewer

from .splits import split_views


@require_GET
@login_required
def splits(request: HttpRequest) -> HttpResponse:
    require_viewer(request)
    ctx = page_context(request)
    context = {
        "page_ctx": ctx,
        "splits": split_views(ctx.cluster) if ctx.cluster else [],
        "objects": freshness(ctx.cluster, CollectionRun.Kind.CLUSTER) if ctx.cluster else None,
        "metrics": freshness(ctx.cluster, CollectionRun.Kind.METRICS) if ctx.cluster else None,
    }
    return render_page(request, "canary/splits.html", "splits", context)
