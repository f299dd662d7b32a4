"""Status objects shaped like kube-apiserver's (k8s.io/apimachinery/pkg/api/errors), and the exception carrying them."""

from __future__ import annotations

import json
from typing import Any

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status(code: int, message: str, reason: str | None = None, details: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason if reason is not None else REASONS.get(code, ""),
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def success(details: dict) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


class APIError(Exception):
    """Raised anywhere below the handler; the handler answers `code` with `body`."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.body = status(code, message, reason, details)


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def _details(name: str, plural: str, group: str) -> dict:
    details: dict = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = plural
    return details


def not_found(plural: str, group: str, name: str) -> APIError:
    return APIError(404, f'{qualified(plural, group)} "{name}" not found', details=_details(name, plural, group))


def resource_not_found() -> APIError:
    return APIError(404, "the server could not find the requested resource", details={})


def already_exists(plural: str, group: str, name: str) -> APIError:
    return APIError(
        409,
        f'{qualified(plural, group)} "{name}" already exists',
        "AlreadyExists",
        _details(name, plural, group),
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> APIError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return APIError(
        409,
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        "Conflict",
        _details(name, plural, group),
    )


def bad_request(message: str) -> APIError:
    return APIError(400, message)


def method_not_allowed() -> APIError:
    return APIError(405, "the server does not allow this method on the requested resource", details={})


def unsupported_media_type(accepted: list[str]) -> APIError:
    return APIError(
        415,
        "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted),
    )


def too_large(limit: int) -> APIError:
    return APIError(413, f"Request entity too large: limit is {limit}")


def invalid(kind: str, group: str, name: str, causes: list[dict]) -> APIError:
    """422 the way field.ErrorList.ToAggregate() words it: one cause bare, several in brackets."""
    lines = [f"{c['field']}: {c['message']}" for c in causes]
    joined = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    details: dict = {"name": name} if name else {}  # Go's StatusDetails.Name is omitempty
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = causes
    return APIError(422, f'{qualified(kind, group)} "{name}" is invalid: {joined}', "Invalid", details)


def cause(reason: str, field: str, message: str) -> dict:
    return {"reason": reason, "message": message, "field": field}


def format_value(value: Any) -> str:
    """Go's field.Error value rendering: %q for strings, plain for numbers and bools."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    return str(value)
