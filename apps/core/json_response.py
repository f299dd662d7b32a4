"""JSON responses encoded with orjson: the graph's answer is 1.7 MB at 1,000 services and 8.6 MB at 5,000, which the
standard library's encoder took ~10 % of the request to write (cProfile, BENCHMARKS.md "2026-12-01 (night)")."""

from __future__ import annotations

from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse

# Dates, decimals, UUIDs and lazy strings as JsonResponse writes them (DjangoJSONEncoder), not in orjson's own forms.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def json_response(data: Any, *, status: int = 200) -> HttpResponse:
    """What `JsonResponse(data)` answers (its content type, the same values), written by orjson: UTF-8 rather than
    \\u escapes, no spaces, and null for a float that is not a number (which JSON.parse would refuse as NaN)."""
    body = orjson.dumps(data, default=DjangoJSONEncoder().default, option=_OPTIONS)
    return HttpResponse(body, content_type="application/json", status=status)
