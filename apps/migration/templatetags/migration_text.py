"""`{{ text|code_spans }}`: the migration assistant's sentences, escaped, with `backquoted` parts as <code>.

The sentences quote regexes and values from the cluster: everything is escaped first, and only the backquote
pairs become markup."""

from __future__ import annotations

import re

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()
_SPAN = re.compile(r"`([^`\n]+)`")


@register.filter
def code_spans(text: object) -> SafeString:
    escaped = str(conditional_escape(text))
    return mark_safe(_SPAN.sub(r"<code>\1</code>", escaped))  # noqa: S308  (escaped above; only <code> is added)
