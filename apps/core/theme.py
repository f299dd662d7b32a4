"""The colour scheme toggle: light, dark or the system's, remembered per user.

The layout writes the choice as `data-theme` on <html> (none for "system": the CSS then follows
`prefers-color-scheme`), so the first paint is already right. The toggle is a POST form: without JavaScript it
redirects back to the page; through htmx it answers 204 with an `mb:theme` event, and the page switches in place
(static/js/meshboard.js), charts and graph included.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .models import ThemePreference

Theme = ThemePreference.Theme


def theme_of(user: Any) -> str:
    """The user's chosen theme; "system" for anonymous users and those who never chose."""
    if not getattr(user, "is_authenticated", False):
        return Theme.SYSTEM
    chosen = ThemePreference.objects.filter(user=user).values_list("theme", flat=True).first()
    return chosen or Theme.SYSTEM


def theme(request: HttpRequest) -> dict[str, Any]:
    """Context processor: `theme` is "light", "dark" or "system". Looked up lazily: only pages that render the
    layout ask (one query), never JSON or partial responses."""
    cached: dict[str, str] = {}

    def lookup() -> str:
        if "theme" not in cached:
            cached["theme"] = theme_of(getattr(request, "user", None))
        return cached["theme"]

    return {"theme": _Lazy(lookup), "theme_choices": [(t.value, t.label) for t in Theme]}


class _Lazy:
    """A string computed on first use in a template (`{{ theme }}`, `{% if theme == "dark" %}`)."""

    def __init__(self, compute: Any) -> None:
        self._compute = compute

    def __str__(self) -> str:
        return self._compute()

    def __eq__(self, other: object) -> bool:
        return self._compute() == other

    def __hash__(self) -> int:
        return hash(self._compute())


@login_required
@require_POST
def set_theme(request: HttpRequest) -> HttpResponse:
    choice = request.POST.get("theme", "")
    if choice not in Theme.values:
        return HttpResponseBadRequest("theme must be one of: " + ", ".join(Theme.values))
    ThemePreference.objects.update_or_create(user=request.user, defaults={"theme": choice})
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = json.dumps({"mb:theme": {"theme": choice}})
        return response
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = "/"
    return HttpResponseRedirect(back)
