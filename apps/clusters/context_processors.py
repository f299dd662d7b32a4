from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .roles import can_change_weights


def roles(request: HttpRequest) -> dict[str, Any]:
    """What the layout needs to know of the user's role (the nav shows the audit link to operators)."""
    return {"can_change_weights": can_change_weights(request.user)}
