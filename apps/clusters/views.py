"""/readyz: whether this web process can serve pages, and what it knows of the collection machinery."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .status import read_machinery, readiness_report

log = logging.getLogger(__name__)


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness for orchestrators: 503 only when this process cannot serve pages (its database is unreachable).

    Redis, beat, the workers and the sources are listed in the body but never make it 503: pages still show the
    last data collected, with a banner, and pulling every web pod out of service would only hide that banner.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report = readiness_report(read_machinery())
    except DatabaseError as exc:
        log.warning("readyz: the database is unreachable: %s", exc)
        report = readiness_report(read_machinery(database=False))
        report.pop("clusters")
        return JsonResponse({"status": "unavailable", "database": "unreachable", **report}, status=503)
    return JsonResponse({"status": "ready", "database": "ok", **report})
