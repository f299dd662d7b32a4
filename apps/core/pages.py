"""Full-page vs htmx-partial rendering, shared by every page view."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def render_page(request: HttpRequest, template: str, partial: str, context: dict[str, Any]) -> HttpResponse:
    """The whole page, or only the named partial for an htmx request that is not a boosted navigation."""
    htmx = getattr(request, "htmx", None)
    name = f"{template}#{partial}" if htmx and not htmx.boosted else template
    response = render(request, name, context)
    patch_vary_headers(response, ("HX-Request",))
    return response
