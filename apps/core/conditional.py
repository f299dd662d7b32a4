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

import django
import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import get_conditional_response

# A kept body may be reused, but only by this user's browser and only after asking (no-cache is "revalidate first").
REVALIDATE = "private, no-cache"
_SOURCES = ("apps", "meshboard")


@cache
def code_version() -> str:
    """A digest of Meshboard's Python sources, its declared dependencies and the versions of the two libraries that
    write its answers: the same on every process and replica of one release, different after any change of code (the
    shape of an answer is code)."""
    digest = hashlib.sha256(f"django {django.__version__} orjson {orjson.__version__}".encode())
    base = Path(settings.BASE_DIR)
    if (base / "pyproject.toml").is_file():
        digest.update((base / "pyproject.toml").read_bytes())
    for folder in _SOURCES:
        for path in sorted((base / folder).rglob("*.py")):
            digest.update(str(path.relative_to(base)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def entity_tag(*parts: Any) -> str:
    """A weak entity tag for an answer built from `parts`, with the code version and the health settings
    (MESHBOARD_HEALTH decides colours) added. Weak: two answers with one tag mean the same but may differ in bytes
    (sums of floats in the order the database returns rows). `parts` must have reprs that do not change between
    processes (str, int, tuples, None, UUIDs, datetimes; no sets)."""
    material = repr((code_version(), sorted(settings.MESHBOARD_HEALTH.items()), parts))
    return 'W/"' + hashlib.sha256(material.encode()).hexdigest()[:40] + '"'


def not_modified(request: HttpRequest, tag: str) -> HttpResponse | None:
    """A 304 when the request's If-None-Match holds `tag` (compared weakly, as for a GET), else None: the caller
    builds the answer. Only GET and HEAD reach here, so no If-Match precondition applies."""
    if request.method not in ("GET", "HEAD"):
        return None
    response = get_conditional_response(request, etag=tag)
    if response is None or response.status_code != 304:
        return None
    return mark(response, tag)


def mark(response: HttpResponse, tag: str) -> HttpResponse:
    response["ETag"] = tag
    response["Cache-Control"] = REVALIDATE
    return response
