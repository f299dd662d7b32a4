"""The patch types the stand-in applies: RFC 7386 merge patch, RFC 6902 JSON patch, and the slice of strategic merge
that equals a merge patch (metadata.labels / metadata.annotations of built-ins)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .status import APIError, bad_request, unsupported_media_type

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

BUILTIN_PATCH_TYPES = [JSON_PATCH, MERGE, APPLY, STRATEGIC]
CR_PATCH_TYPES = [JSON_PATCH, MERGE, APPLY]


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_STRATEGIC_METADATA_KEYS = {"labels", "annotations", "resourceVersion"}


def _is_label_map_patch(patch: Any) -> bool:
    if not isinstance(patch, dict) or set(patch) - {"metadata"}:
        return False
    meta = patch.get("metadata")
    if not isinstance(meta, dict) or set(meta) - _STRATEGIC_METADATA_KEYS:
        return False
    return all(
        meta.get(k) is None or (isinstance(meta[k], dict) and not any(str(x).startswith("$") for x in meta[k]))
        for k in ("labels", "annotations")
    )


def apply_patch(obj: dict, content_type: str, patch: Any, builtin: bool) -> dict:
    """The patched copy of `obj`; raises APIError for a body the content type cannot carry."""
    if content_type == MERGE:
        if not isinstance(patch, dict):
            raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
        return merge_patch(obj, patch)
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            return jsonpatch.JsonPatch(patch).apply(copy.deepcopy(obj))
        except jsonpatch.JsonPatchTestFailed as exc:
            raise APIError(422, f"the server rejected our request due to an error in our request: {exc}") from exc
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, TypeError) as exc:
            raise APIError(422, f"the server rejected our request due to an error in our request: {exc}") from exc
    if content_type == STRATEGIC and builtin:
        # Full strategic merge needs each field's patchMergeKey; for maps of strings it is exactly a merge patch,
        # and anything else is refused rather than merged wrongly.
        if not _is_label_map_patch(patch):
            raise APIError(
                415,
                "the stand-in applies strategic merge patches only to metadata.labels and metadata.annotations; "
                "use application/merge-patch+json or application/json-patch+json",
            )
        return merge_patch(obj, patch)
    if content_type == APPLY:
        raise APIError(415, "the stand-in does not implement server-side apply; use merge or JSON patch")
    raise unsupported_media_type(BUILTIN_PATCH_TYPES if builtin else CR_PATCH_TYPES)
