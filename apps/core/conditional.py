"""Conditional GET for answers built from stored data: an entity tag made of the versions the answer is built from, so
that a reload or a refresh that finds nothing new costs a few small queries and sends no body.

The tag must change whenever the answer could: the caller names every stored version it builds from (read before it
reads the rows, so that a row written meanwhile only costs one more full answer next time), and this module adds the
code and the settings that shape any answer (a new release or a changed threshold must not be answered by a body a
browser kept from before).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import get_conditional_response

# A kept body may be reused, but only by this user's browser and only after asking (no-cache is "revalidate first").
REVALIDATE = "private, no-cache"
_SOURCES = ("apps", "meshboard")


@cache
def code_version() -> str:
    """A digest of Meshboard's Python sources: the same on every process and replica of one release, different after
    any change of code (the shape of an answer is code)."""
    digest = hashlib.sha256()
    base = Path(settings.BASE_DIR)
    for folder in _SOURCES:
        for path in sorted((base / folder).rglob("*.py")):
            digest.update(str(path.relative_to(base)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def entity_tag(*parts: Any) -> str:
    """A strong entity tag (quoted) for an answer built from `parts`, with the code version and the health settings
    (MESHBOARD_HEALTH decides colours) added. `parts` must have stable reprs (str, int, tuples, None, UUIDs,
    datetimes)."""
    material = repr((code_version(), sorted(settings.MESHBOARD_HEALTH.items()), parts))
    return '"' + hashlib.sha256(material.encode()).hexdigest()[:40] + '"'


def not_modified(request: HttpRequest, tag: str) -> HttpResponse | None:
    """A 304 when the request's If-None-Match holds `tag`, else None (the caller builds the answer)."""
    response = get_conditional_response(request, etag=tag)
    if response is not None:
        mark(response, tag)
    return response


def mark(response: HttpResponse, tag: str) -> HttpResponse:
    response["ETag"] = tag
    response["Cache-Control"] = REVALIDATE
    return response
