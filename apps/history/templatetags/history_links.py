"""`{% load history_links %}{% history_url "TrafficTarget" ns name as url %}{% if url %}<a href="{{ url }}">History</a>
{% endif %}`: the URL of an object's configuration history, or "" when it has no page (apps.history.links)."""

from __future__ import annotations

from django import template

from apps.history.links import object_history_url, service_history_url

register = template.Library()


@register.simple_tag
def history_url(kind: str, namespace: object, name: object) -> str:
    if kind == "Service":
        return service_history_url(namespace, name)
    return object_history_url(kind, namespace, name)
