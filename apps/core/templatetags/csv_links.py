"""`{% csv_url %}`: this page's URL with its filters, asking for the CSV of its table (apps/core/csv_export.py).

{% load csv_links %}<a href="{% csv_url %}" download>Download CSV</a>
"""

from __future__ import annotations

from django import template
from django.template.context import Context

register = template.Library()


@register.simple_tag(takes_context=True)
def csv_url(context: Context) -> str:
    request = context["request"]
    query = request.GET.copy()
    query.pop("page", None)  # the file holds every page of the table
    query["format"] = "csv"
    return f"{request.path}?{query.urlencode()}"
