"""Helpers every page view uses: the selected cluster and time window, and full-page vs htmx-partial rendering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from apps.clusters.models import Cluster

WINDOWS = {"15m": 15 * 60, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
DEFAULT_WINDOW = "1h"


@dataclass(frozen=True)
class PageContext:
    cluster: Cluster | None
    clusters: list[Cluster]
    window: str


def page_context(request: HttpRequest) -> PageContext:
    """The cluster (query `?cluster=`, else the session's, else the first) and time window (`?window=`)."""
    clusters = list(Cluster.objects.filter(enabled=True).order_by("name"))
    wanted = request.GET.get("cluster") or request.session.get("cluster")
    cluster = next((c for c in clusters if c.name == wanted), clusters[0] if clusters else None)
    if cluster is not None and request.session.get("cluster") != cluster.name:
        request.session["cluster"] = cluster.name
    window = request.GET.get("window") or request.session.get("window") or DEFAULT_WINDOW
    if window not in WINDOWS:
        window = DEFAULT_WINDOW
    if request.session.get("window") != window:
        request.session["window"] = window
    return PageContext(cluster=cluster, clusters=clusters, window=window)


def render_page(request: HttpRequest, template: str, partial: str, context: dict[str, Any]) -> HttpResponse:
    """The whole page, or only the named partial for an htmx request that is not a boosted navigation."""
    htmx = getattr(request, "htmx", None)
    name = f"{template}#{partial}" if htmx and not htmx.boosted else template
    response = render(request, name, context)
    patch_vary_headers(response, ("HX-Request",))
    return response
