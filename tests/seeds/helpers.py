"""Small queries over a seed's objects, and a structural check of custom resources against the CRD files."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# Prefer the repo's copy of the CRDs (lab/kubeapi/crds); fall back to the shared reference data next to the repo.
CRD_DIRS = [REPO / "lab" / "kubeapi" / "crds", REPO.parent / "shared" / "osm-data" / "crds-v1.2.4"]


def of_kind(objects: list[dict], kind: str, namespace: str | None = None) -> list[dict]:
    return [
        o for o in objects if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objects: list[dict], kind: str, namespace: str | None, name: str) -> dict:
    found = [o for o in of_kind(objects, kind, namespace) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {namespace}/{name}: {len(found)} found"
    return found[0]


def crd_schemas() -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> openAPIV3Schema of every served version."""
    schemas: dict[tuple[str, str, str], dict] = {}
    for directory in CRD_DIRS:
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if version.get("served"):
                        key = (spec["group"], version["name"], spec["names"]["kind"])
                        schemas.setdefault(key, version["schema"]["openAPIV3Schema"])
    return schemas


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}


def schema_errors(value: object, schema: dict, path: str = "") -> list[str]:
    """Type, required, enum and minimum/maximum violations, the structural checks an apiserver makes."""
    errors: list[str] = []
    expected = schema.get("type")
    if expected:
        ok = isinstance(value, _TYPES[expected]) and not (expected in ("integer", "number") and isinstance(value, bool))
        if not ok:
            return [f"{path}: must be of type {expected}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in enum")
    if isinstance(value, (int, float)) and "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: below minimum")
    if isinstance(value, (int, float)) and "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: above maximum")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: Required value")
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += schema_errors(value[key], sub, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors
