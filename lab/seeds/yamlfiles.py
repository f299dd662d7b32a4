"""Reading manifests the way `kubectl apply -f` does: multi-document YAML, `kind: List` unwrapped, empty documents
skipped."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_manifests(path: str | Path) -> list[dict]:
    """All objects in a YAML file, in file order. ValueError if the file is unreadable or holds a non-object."""
    path = Path(path)
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read seed file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"seed file {path} is not valid YAML: {exc}") from exc
    objects: list[dict] = []
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ValueError(f"{path}: document {index + 1} is not a Kubernetes object (needs apiVersion and kind)")
        if doc["kind"].endswith("List") and isinstance(doc.get("items"), list):
            objects.extend(doc["items"])
        else:
            objects.append(doc)
    return objects
