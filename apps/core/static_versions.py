"""Static files named with a digest of their content, and kept by browsers for good.

`{% static "js/graph.js" %}` writes `/static/js/graph.js?v=<digest>`. A request carrying the digest of the file it gets
is answered `Cache-Control: max-age=<a year>, public, immutable`, so a browser that has the file never asks again: not
at the next page, nor a minute later, nor at a reload. Without it WhiteNoise tells browsers to keep a file for 60 s
(none with DEBUG), after which every page revalidated each of its ~16 scripts and stylesheets: at a reload of the
graph those round trips held the scripts back by 0.1-0.3 s on loopback, and by one or two round trips per page on a
real network.

Why a digest in the query and not Django's ManifestStaticFilesStorage (a digest in the name): that one serves only
what `collectstatic` wrote (a forgotten step, or a stale STATIC_ROOT, breaks or dates the pages), and with DEBUG it
does not version at all. Here the digest is taken of the very file WhiteNoise serves (the finders' first, as
WhiteNoise with WHITENOISE_USE_FINDERS, then STATIC_ROOT's) and kept until its size or time changes, so an edited
file gets a new URL at once.

"Immutable" is said only when WhiteNoise's answer describes that same file: its ETag (WhiteNoise's own formula, of the
time and size) must be the one of the file hashed. Without DEBUG, WhiteNoise reads each file's size and time once at
start: a file edited under a running server is served with its old length (cut short) until a restart, and such an
answer must not be kept for a year. A change that keeps a file's size and time to the nanosecond keeps its digest
within a process; a new process hashes every file again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from email.utils import formatdate, parsedate
from pathlib import Path
from time import mktime

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import StaticFilesStorage
from django.core.exceptions import SuspiciousFileOperation
from django.http import HttpRequest, HttpResponse

FOREVER = "max-age=31536000, public, immutable"
_DIGESTS: dict[str, tuple[int, int, str]] = {}  # served path → (mtime_ns, size, digest)
_LOCK = threading.Lock()


def served_path(name: str) -> str | None:
    """The file a request for `name` under STATIC_URL gets, as WhiteNoise finds it; None when there is none."""
    try:
        found = finders.find(name)
    except SuspiciousFileOperation:  # a name that leaves the static folders
        return None
    if found:
        return str(found)
    if settings.STATIC_ROOT:
        root = Path(settings.STATIC_ROOT).resolve()
        candidate = (root / name).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return str(candidate)
    return None


def _hashed(name: str) -> tuple[str, os.stat_result] | None:
    path = served_path(name)
    if path is None:
        return None
    try:
        stat = os.stat(path)
        kept = _DIGESTS.get(path)
        if kept is not None and kept[0] == stat.st_mtime_ns and kept[1] == stat.st_size:
            return kept[2], stat
        digest = hashlib.blake2b(Path(path).read_bytes(), digest_size=6).hexdigest()
    except (OSError, ValueError):  # gone meanwhile, a folder, a name with a NUL
        return None
    with _LOCK:
        _DIGESTS[path] = (stat.st_mtime_ns, stat.st_size, digest)
    return digest, stat


def version(name: str) -> str | None:
    """A digest of the content served for `name` (12 hex digits), or None when no file is served for it."""
    hashed = _hashed(name)
    return hashed[0] if hashed else None


def _whitenoise_etag(stat: os.stat_result) -> str:
    """The ETag WhiteNoise gives a file of this time and size (whitenoise.responders.StaticFile.get_headers)."""
    return f'"{int(mktime(parsedate(formatdate(stat.st_mtime, usegmt=True)))):x}-{stat.st_size:x}"'


class VersionedStaticFilesStorage(StaticFilesStorage):
    """StaticFilesStorage whose URLs carry `?v=<digest of the content>` (a name with its own query or fragment, or
    one no file is served for, keeps its plain URL)."""

    def url(self, name: str | None) -> str:
        plain = super().url(name)
        if not name or "?" in name or "#" in name:
            return plain
        digest = version(name)
        return f"{plain}?v={digest}" if digest else plain


class ImmutableStaticMiddleware:
    """Marks a static file asked for with its current digest as immutable. Sits above WhiteNoise, which answers static
    requests itself and knows nothing of the query."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.prefix = "/" + settings.STATIC_URL.lstrip("/") if settings.STATIC_URL else None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        asked = request.GET.get("v")
        if (
            asked
            and self.prefix
            and request.path_info.startswith(self.prefix)
            and response.status_code in (200, 304)
            and (hashed := _hashed(request.path_info[len(self.prefix) :])) is not None
            and asked == hashed[0]
            and response.get("ETag") == _whitenoise_etag(hashed[1])
        ):
            response["Cache-Control"] = FOREVER
        return response
