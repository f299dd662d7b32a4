"""The 403 page names the role a refused action needs.

Django renders 404.html (with the request's context) and 500.html (with no context at all: no request, no context
processors, since whatever failed may be among them) itself; 403.html comes from here so that it can say which role
was missing when the refusal knows it (`apps.clusters.roles.RoleRequired`).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    context = {"reason": str(exception or "") or "You may not do this.", "role": getattr(exception, "role", "")}
    return render(request, "403.html", context, status=403)
