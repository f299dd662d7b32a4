"""Where browsers report Content-Security-Policy violations: `/csp-report`, one log line per violation.

The policy itself is `CONTENT_SECURITY_POLICY` in meshboard/settings.py, sent by django-csp's middleware on every
response, static files included (the middleware sits before WhiteNoise). A violation on a page of ours is either an
attack that the policy stopped or a bug of ours (an inline script, a style from elsewhere); either way someone
should see it, so each report becomes one line on the `apps.core.csp` logger.

The endpoint takes no login (browsers send reports without one) and no CSRF token, so it trusts nothing it reads:
bodies over 64 KiB are refused, every field is cut to 200 characters and logged with repr() (no forged log lines),
and past 60 lines a minute per process the rest are counted, not logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_FIELD = 200
LINES_PER_MINUTE = 60

# Old-style reports (report-uri, `application/csp-report`) use these keys; Reporting API reports
# (`application/reports+json`) use the camelCase ones.
_FIELDS = (
    ("document", ("document-uri", "documentURL")),
    ("directive", ("effective-directive", "effectiveDirective", "violated-directive")),
    ("blocked", ("blocked-uri", "blockedURL")),
    ("source", ("source-file", "sourceFile")),
    ("line", ("line-number", "lineNumber")),
    ("sample", ("script-sample", "sample")),
    ("disposition", ("disposition",)),
)


class _Budget:
    """At most LINES_PER_MINUTE log lines a minute in this process; the rest are counted and summed up once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window = 0.0
        self._used = 0
        self._dropped = 0

    def take(self) -> tuple[bool, int]:
        """(may log, reports dropped in the previous minute that nobody was told of yet)."""
        now = time.monotonic()
        with self._lock:
            dropped = 0
            if now - self._window >= 60:
                self._window, self._used, dropped, self._dropped = now, 0, self._dropped, 0
            if self._used < LINES_PER_MINUTE:
                self._used += 1
                return True, dropped
            self._dropped += 1
            return False, dropped


_budget = _Budget()


def _violations(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("csp-report"), dict):
        return [body["csp-report"]]
    if isinstance(body, list):
        return [
            item["body"]
            for item in body[:20]
            if isinstance(item, dict) and item.get("type") == "csp-violation" and isinstance(item.get("body"), dict)
        ]
    return []


def _line(violation: dict[str, Any]) -> str:
    parts = []
    for label, keys in _FIELDS:
        value = next((violation[k] for k in keys if violation.get(k) not in (None, "")), None)
        if value is not None:
            parts.append(f"{label}={str(value)[:MAX_FIELD]!r}")
    return " ".join(parts) or "(a report without the usual fields)"


@csrf_exempt
@require_POST
def report(request: HttpRequest) -> HttpResponse:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return HttpResponse(status=413)
    try:
        body = json.loads(request.read(MAX_BODY + 1)[:MAX_BODY] or b"null")
    except (ValueError, UnicodeDecodeError):
        return HttpResponse(status=400)
    client = request.META.get("REMOTE_ADDR", "?")
    for violation in _violations(body):
        allowed, dropped = _budget.take()
        if dropped:
            log.warning("csp violation: %d more reports in the last minute were not logged", dropped)
        if allowed:
            log.warning("csp violation: %s client=%s", _line(violation), client)
    return HttpResponse(status=204)
