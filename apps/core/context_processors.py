from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

WINDOW_CHOICES = [("15m", "15 min"), ("1h", "1 hour"), ("6h", "6 hours"), ("24h", "24 hours"), ("7d", "7 days")]

# Pages in the navigation, in order; an entry appears once its URL exists.
NAV = [
    ("Overview", "services:overview"),
    ("Graph", "graph:graph"),
    ("Splits", "canary:splits"),
    ("Policies", "policies:policies"),
    ("Mesh", "clusters:status"),
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    items = []
    for label, name in NAV:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        items.append({"label": label, "url": url, "active": request.path == url})
    from apps.clusters.roles import can_change_weights

    return {
        "nav_items": items,
        "window_choices": WINDOW_CHOICES,
        "can_change_weights": can_change_weights(request.user),
    }
