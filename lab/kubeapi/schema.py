"""Structural-schema handling of custom resources, as apiextensions-apiserver does it: prune, default, validate.

Pruning drops fields the schema does not know (and nulls of non-nullable fields) and reports them, like the
apiserver's default `fieldValidation=Warn`. Validation returns `details.causes` worded the way
`kubeOpenAPIResultToFieldErrors` words them. CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

from .status import cause, format_value

_ROOT_KEPT = ("apiVersion", "kind", "metadata")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune_and_default(obj: dict, schema: dict) -> list[str]:
    """Mutates `obj` in place; returns the paths of dropped unknown fields."""
    dropped: list[str] = []
    if schema:
        _prune(obj, schema, "", dropped, root=True)
    return dropped


def _prune(value: Any, schema: dict, path: str, dropped: list[str], root: bool = False) -> None:
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        for key in list(value):
            if root and key in _ROOT_KEPT:
                continue
            child = value[key]
            sub = props.get(key) if props else None
            if sub is None and isinstance(additional, dict):
                sub = additional
            if sub is None:
                if not (preserve or additional is True):
                    del value[key]
                    dropped.append(_join(path, key))
                continue
            if child is None and not sub.get("nullable"):
                del value[key]
                continue
            _prune(child, sub, _join(path, key), dropped)
        for key, sub in (props or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
                _prune(value[key], sub, _join(path, key), dropped)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{i}]", dropped)


def validate(obj: dict, schema: dict) -> list[dict]:
    """Causes for every violation; [] when valid. Metadata is the apiserver's business, not the schema's."""
    if not schema:
        return []
    errors: list[dict] = []
    body = {k: v for k, v in obj.items() if k not in _ROOT_KEPT}
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in _ROOT_KEPT}
    root = dict(schema, properties=props)
    root.pop("required", None)
    _validate(body, root, "", errors)
    for key in schema.get("required") or ():
        if key not in _ROOT_KEPT and key not in obj:
            errors.append(cause("FieldValueRequired", key, "Required value"))
    return errors


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, expected: str) -> bool:
    actual = _type_name(value)
    if expected == "number":
        return actual in ("integer", "number")
    return actual == expected


def _invalid(errors: list[dict], path: str, value: Any, detail: str) -> None:
    shown = value if value is not None else ""
    errors.append(cause("FieldValueInvalid", path, f"Invalid value: {format_value(shown)}: {path} in body {detail}"))


def _validate(value: Any, schema: dict, path: str, errors: list[dict]) -> None:
    before = len(errors)
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if _type_name(value) not in ("integer", "string"):
            _invalid(errors, path, _type_name(value), "must be of type integer-or-string")
            return
    elif value is None:
        if not schema.get("nullable") and expected:
            _invalid(errors, path, "null", f'must be of type {expected}: "null"')
        return
    elif expected and not _type_ok(value, expected):
        _invalid(errors, path, _type_name(value), f'must be of type {expected}: "{_type_name(value)}"')
        return

    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(format_value(v) for v in schema["enum"])
        errors.append(
            cause(
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {format_value(value)}: supported values: {allowed}",
            )
        )

    if isinstance(value, str):
        _validate_string(value, schema, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, errors)
    elif isinstance(value, list):
        _validate_array(value, schema, path, errors)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, errors)

    if len(errors) == before:
        _validate_combinators(value, schema, path, errors)


def _validate_string(value: str, schema: dict, path: str, errors: list[dict]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(cause("FieldValueTooLong", path, f"Too long: may not be more than {schema['maxLength']} bytes"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        _invalid(errors, path, value, f"should be at least {schema['minLength']} chars long")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        _invalid(errors, path, value, f"should match '{schema['pattern']}'")
    if schema.get("format") == "date-time" and not _is_datetime(value):
        _invalid(errors, path, value, f'must be of type date-time: "{value}"')


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _validate_number(value: float, schema: dict, path: str, errors: list[dict]) -> None:
    if "minimum" in schema:
        if schema.get("exclusiveMinimum") and value <= schema["minimum"]:
            _invalid(errors, path, value, f"should be greater than {schema['minimum']}")
        elif value < schema["minimum"]:
            _invalid(errors, path, value, f"should be greater than or equal to {schema['minimum']}")
    if "maximum" in schema:
        if schema.get("exclusiveMaximum") and value >= schema["maximum"]:
            _invalid(errors, path, value, f"should be less than {schema['maximum']}")
        elif value > schema["maximum"]:
            _invalid(errors, path, value, f"should be less than or equal to {schema['maximum']}")


def _validate_array(value: list, schema: dict, path: str, errors: list[dict]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            cause(
                "FieldValueTooMany",
                path,
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        _invalid(errors, path, len(value), f"should have at least {schema['minItems']} items")
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", errors)


def _validate_object(value: dict, schema: dict, path: str, errors: list[dict]) -> None:
    for key in schema.get("required") or ():
        if key not in value:
            errors.append(cause("FieldValueRequired", _join(path, key), "Required value"))
    props = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, child in value.items():
        sub = props.get(key)
        if sub is None and isinstance(additional, dict):
            sub = additional
        if sub is not None:
            _validate(child, sub, _join(path, key), errors)


def _matches(value: Any, schema: dict) -> bool:
    found: list[dict] = []
    _validate(value, schema, "x", found)
    return not found


def _validate_combinators(value: Any, schema: dict, path: str, errors: list[dict]) -> None:
    if "oneOf" in schema:
        valid = sum(_matches(value, s) for s in schema["oneOf"])
        if valid != 1:
            found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            _invalid(errors, path, None, f"must validate one and only one schema (oneOf). {found}")
    if "anyOf" in schema and not any(_matches(value, s) for s in schema["anyOf"]):
        _invalid(errors, path, None, "must validate at least one schema (anyOf)")
    if "allOf" in schema and not all(_matches(value, s) for s in schema["allOf"]):
        _invalid(errors, path, None, "must validate all the schemas (allOf)")
    if "not" in schema and _matches(value, schema["not"]):
        _invalid(errors, path, None, "must not validate the schema (not)")
