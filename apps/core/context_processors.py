from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from .windows import WINDOWS

# Pages in the navigation, in order.
NAV = [
    ("Overview", "overview:overview"),
    ("Graph", "graph:graph"),
    ("Splits", "canary:splits"),
    ("Audit", "canary:audit"),
    ("Policies", "policies:policies"),
    ("Mesh", "policies:mesh"),
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    items = []
    for label, name in NAV:
        url = reverse(name)
        items.append({"label": label, "url": url, "active": request.path == url})
    return {"nav_items": items, "window_choices": [(w.key, w.label) for w in WINDOWS.values()]}
