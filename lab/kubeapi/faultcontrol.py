"""The HTTP face of `server.faults`, served only by a server started with `fault_control=True` (`--fault-control`).

    POST   /_lab/faults        {"path": "<regex>", "verb": "patch", "status": 500, "delay": 2, "when": "after",
                                "drop": false, "times": 1, "skip": 0, "message": "...", "user": "..."}
                               -> 201, the fault as JSON with its "id" (only "path" is required)
    GET    /_lab/faults        -> 200 {"items": [...]}, the rule that wins first
    DELETE /_lab/faults        -> 200 {"items": [...]}, the rules removed
    DELETE /_lab/faults/{id}   -> 200, the rule removed; 404 when there is none

A real apiserver serves nothing under `/_lab/`; without the flag those paths 404 like any unknown path. Errors are
Status objects like the rest of the server's (400 for a bad body, 404, 405).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .faults import Faults
from .status import APIError, bad_request, method_not_allowed, resource_not_found

PREFIX = "/_lab/"
_NUMBER = (int, float)
_FIELDS: dict[str, tuple[type, ...]] = {
    "path": (str,),
    "verb": (str, type(None)),
    "status": (int, type(None)),
    "delay": _NUMBER,
    "when": (str,),
    "drop": (bool,),
    "times": (int, type(None)),
    "message": (str, type(None)),
    "user": (str,),
    "skip": (int,),
}


def is_control_path(path: str) -> bool:
    return path == PREFIX.rstrip("/") or path.startswith(PREFIX)


def answer(faults: Faults, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """(status code, JSON body) for a control request; raises APIError for the error answers."""
    parts = [p for p in path.split("/") if p]
    if parts[1:2] != ["faults"] or len(parts) > 3:
        raise resource_not_found()
    if len(parts) == 3:
        return _delete_one(faults, method, parts[2])
    if method == "GET":
        return 200, {"items": faults.snapshot()}
    if method == "DELETE":
        return 200, {"items": [fault.as_json() for fault in faults.clear()]}
    if method == "POST":
        return 201, _add(faults, body)
    raise method_not_allowed()


def _delete_one(faults: Faults, method: str, fault_id: str) -> tuple[int, dict[str, Any]]:
    if method != "DELETE":
        raise method_not_allowed()
    fault = faults.remove_id(fault_id)
    if fault is None:
        raise APIError(404, f'faults "{fault_id}" not found', details={"name": fault_id, "kind": "faults"})
    return 200, fault.as_json()


def _add(faults: Faults, body: bytes) -> dict[str, Any]:
    spec = _spec(body)
    try:
        return faults.add(**spec).as_json()
    except re.error as exc:
        raise bad_request(f"path: not a regular expression: {exc}") from exc
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


def _spec(body: bytes) -> dict[str, Any]:
    try:
        spec = json.loads(body or b"null")
    except ValueError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise bad_request('the body must be a JSON object, e.g. {"path": "/trafficsplits/", "status": 500}')
    unknown = sorted(set(spec) - set(_FIELDS))
    if unknown:
        raise bad_request(f"unknown fields {unknown}; a fault has {sorted(_FIELDS)}")
    if "path" not in spec:
        raise bad_request('"path" (a regex searched in the request path) is required')
    for key, value in spec.items():
        allowed = _FIELDS[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise bad_request(f"{key}: expected {names}, got {json.dumps(value)}")
    return spec
