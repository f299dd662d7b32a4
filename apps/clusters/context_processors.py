from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .roles import can_change_weights
from .scope import hidden_note, request_namespaces


def roles(request: HttpRequest) -> dict[str, Any]:
    """What the layout needs to know of the user's role (the nav shows the audit link to operators) and, for a user
    limited to namespaces, the sentence every page shows: that other namespaces are hidden."""
    return {
        "can_change_weights": can_change_weights(request.user),
        "namespace_scope_note": hidden_note(request_namespaces(request)),
    }
