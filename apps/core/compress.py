"""Large JSON answers gzipped on the way out: the graph's is 1.6 MB at 1,000 services and 8 MB at 5,000, about a
tenth of that compressed. Besides the transfer, a browser keeps the compressed body in its cache, and Chromium's
in-memory cache (private windows) keeps no entry above about a megabyte: without compression the 5,000-service graph
was never kept, so its ETag (apps/core/conditional.py) was never sent back and every refresh downloaded it whole.

Only JSON: it carries no secret (no CSRF token, no session), so compressing it beside what a user typed leaks nothing
(BREACH needs a secret in the same body). HTML pages stay as they are. This middleware sits above the one that hides
internal addresses (apps/clusters/addresses.py), so it compresses what that one wrote, never the other way round.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

MIN_BYTES = 8192  # below it the saving is a few kB and not worth a header
# Level 1: 1.6 MB of graph in ~9 ms to 168 kB; level 6 takes twice as long for 121 kB.
LEVEL = 1
_GZIP = re.compile(r"\bgzip\b", re.IGNORECASE)


class CompressJsonMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code != 200
            or getattr(response, "streaming", False)
            or response.has_header("Content-Encoding")
            or not response.get("Content-Type", "").startswith("application/json")
            or len(response.content) < MIN_BYTES
        ):
            return response
        patch_vary_headers(response, ("Accept-Encoding",))  # the same URL answers both ways
        if not _GZIP.search(request.headers.get("Accept-Encoding", "")):
            return response
        response.content = gzip.compress(response.content, compresslevel=LEVEL, mtime=0)
        response["Content-Encoding"] = "gzip"
        response["Content-Length"] = str(len(response.content))
        return response
