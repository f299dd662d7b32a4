"""The pieces of the visual language every template uses (registered as builtins in meshboard/settings.py):

- `{% icon "lock" %}`: an icon from the Lucide sprite (static/vendor/lucide/icons.svg), hidden from screen readers:
  the text beside it says the same thing, and colour or icon alone never carries a meaning.
- `{% crumbs "Overview" url "bookstore" url2 "bookstore-v1" %}`: the breadcrumb trail; labels and URLs in pairs (an
  empty URL: the label as text), the last label (the page itself) without one. Labels are cluster names: escaped.
- `{% query_url "overview:overview" namespace=ns as url %}`: a page's URL with a query, each value URL-encoded.
- `{% health_badge status reason %}`: a service's health as an icon and its word.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

register = template.Library()

HEALTH_ICONS = {"healthy": "circle-check", "degraded": "triangle-alert", "failing": "circle-x"}


@register.simple_tag
def icon(name: str, label: str = "") -> SafeString:
    """An icon; with a `label`, it is the only carrier of its meaning and is named for screen readers."""
    sprite = static("vendor/lucide/icons.svg")
    if label:
        return format_html(
            '<svg class="icon" role="img" aria-label="{}"><use href="{}#{}"></use></svg>', label, sprite, name
        )
    return format_html(
        '<svg class="icon" aria-hidden="true" focusable="false"><use href="{}#{}"></use></svg>', sprite, name
    )


@register.simple_tag
def crumbs(*parts: object) -> SafeString:
    """Pairs of (label, url) and the current page's label last."""
    items = list(parts)
    current = items.pop() if len(items) % 2 else None
    links = format_html_join(
        "",
        "<li>{}</li>",
        (
            (format_html('<a href="{}">{}</a>', url, label) if url else label,)
            for label, url in zip(items[::2], items[1::2], strict=True)
        ),
    )
    here = format_html('<li aria-current="page">{}</li>', current) if current is not None else ""
    return format_html('<nav class="crumbs" aria-label="Breadcrumb"><ol>{}{}</ol></nav>', links, here)


@register.simple_tag
def health_icon(status: str) -> SafeString:
    """The icon that goes with a health word (a dashed circle for unknown)."""
    return icon(HEALTH_ICONS.get(str(status), "circle-dashed"))


@register.simple_tag
def query_url(name: str, **params: object) -> str:
    return f"{reverse(name)}?{urlencode({k: '' if v is None else str(v) for k, v in params.items()})}"
