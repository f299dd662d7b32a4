"""`metadata.managedFields` as kube-apiserver keeps them for writes that are not server-side apply.

The algorithm follows the apiserver's field manager (k8s.io/apimachinery `managedfields/internal`, and
structured-merge-diff's `Updater.Update`), run on every create, update and patch:

1. The starting entries are the ones the request body carries when it carries a non-empty list (so a client can reset
   them with `[{}]`), otherwise the stored ones.
2. The write is compared with the stored object, leaving out what the apiserver strips (apiVersion, kind, metadata's
   name, namespace, uid, resourceVersion, generation, creationTimestamp, managedFields, ...) and the fields the
   strategy resets (`status` of a type with a status subresource, on a main-resource write). That gives the fields
   added, modified and removed.
3. Every entry, the writer's own included, loses the fields this write added, modified or removed.
4. If the write added or modified anything, the writer's entry (one per manager, operation, apiVersion and
   subresource) becomes its remaining fields plus those, stamped with the time of the write. A write that only
   removes fields leaves the writer's entry and time as they were; a write that changes nothing leaves all entries
   exactly as stored.
5. Entries left empty are dropped; past 10 Update entries the oldest are merged into `ancient-changes`; the list is
   sorted by operation, time, manager, apiVersion, subresource, as the apiserver encodes it.

What is simpler than the real thing: every list is atomic (the list is one field, `{"f:ports": {}}`, never
`k:{"port":80,"protocol":"TCP"}` items), since the stand-in has no OpenAPI schema for list keys; SMI TrafficSplit's
`spec.backends` is atomic in the real CRD too. Server-set defaults (a Service's clusterIP too) count as written by the
writer. Paths are kept as tuples of the encoded keys (`("f:spec", "f:backends")`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
EntryKey = tuple[str, str, str, str]  # manager, operation, apiVersion, subresource ("" for the main resource)

FIELD_MANAGER_MAX_LENGTH = 128
MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"
UPDATE = "Update"
APPLY = "Apply"

# The stripMetaManager's set, and the top-level type fields.
_STRIPPED_TOP = ("apiVersion", "kind")
_STRIPPED_META = (
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
)


@dataclass(frozen=True)
class Writer:
    """Who writes, through which apiVersion and subresource. Non-apply writes are always recorded as Update."""

    manager: str
    api_version: str
    subresource: str | None = None

    @property
    def key(self) -> EntryKey:
        return (self.manager, UPDATE, self.api_version, self.subresource or "")


@dataclass
class _Entry:
    key: EntryKey
    fields: set[Path]
    time: str | None

    @property
    def operation(self) -> str:
        return self.key[1]


@dataclass
class Diff:
    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.added or self.modified or self.removed)


# ---- the manager's name ------------------------------------------------------------------------------------------
def manager_from_user_agent(user_agent: str) -> str:
    """The product name of a User-Agent, as `prefixFromUserAgent`: up to the first '/', printable, 128 bytes at most.

    `OpenAPI-Generator/37.0.1/python` gives `OpenAPI-Generator`; `kubectl/v1.31.0 (linux/amd64) kubernetes/abc`
    gives `kubectl`."""
    out, size = [], 0
    for char in user_agent.split("/")[0]:
        if not char.isprintable():
            continue
        if size >= FIELD_MANAGER_MAX_LENGTH:
            break
        out.append(char)
        size += len(char.encode())
    return "".join(out)


def field_manager_problems(value: str) -> list[tuple[str, str]]:
    """(reason, message) of each way `value` breaks ValidateFieldManager: too long, or a non-printable character."""
    problems: list[tuple[str, str]] = []
    if len(value.encode()) > FIELD_MANAGER_MAX_LENGTH:
        problems.append(("FieldValueTooLong", f"Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"))
    position = 0
    for char in value:
        if not char.isprintable():
            problems.append(("FieldValueInvalid", f"invalid character U+{ord(char):04X} (at position {position})"))
        position += len(char.encode())
    return problems


# ---- comparing objects ---------------------------------------------------------------------------------------------
def _all_paths(value: Any, path: Path) -> set[Path]:
    paths = {path}
    if isinstance(value, dict):
        for key, child in value.items():
            paths |= _all_paths(child, (*path, f"f:{key}"))
    return paths


def _compare(old: dict, new: dict, prefix: Path, diff: Diff) -> None:
    for key, value in new.items():
        path = (*prefix, f"f:{key}")
        if key not in old:
            diff.added |= _all_paths(value, path)
        elif isinstance(value, dict) and isinstance(old[key], dict):
            _compare(old[key], value, path, diff)
        elif isinstance(value, dict) or isinstance(old[key], dict):  # a map became a scalar/list, or back
            diff.removed |= _all_paths(old[key], path)
            diff.added |= _all_paths(value, path)
        elif value != old[key]:
            diff.modified.add(path)
    for key, value in old.items():
        if key not in new:
            diff.removed |= _all_paths(value, (*prefix, f"f:{key}"))


def _tracked(obj: dict, ignore_status: bool) -> dict:
    """The object without what the field manager strips or the strategy resets."""
    out = {k: v for k, v in obj.items() if k not in _STRIPPED_TOP and not (ignore_status and k == "status")}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k not in _STRIPPED_META}
    return out


def compare(old: dict, new: dict, ignore_status: bool = False) -> Diff:
    diff = Diff()
    _compare(_tracked(old, ignore_status), _tracked(new, ignore_status), (), diff)
    for paths in (diff.added, diff.modified, diff.removed):
        paths.discard(("f:metadata",))  # metadata itself is stripped; its fields are not
    return diff


# ---- FieldsV1 ------------------------------------------------------------------------------------------------------
def decode_fields(tree: Any, prefix: Path = ()) -> set[Path]:
    """The paths a FieldsV1 tree names: `{}` marks a member leaf, `".": {}` a member that also has children."""
    paths: set[Path] = set()
    if not isinstance(tree, dict):
        return paths
    for key, child in tree.items():
        if key == ".":
            if prefix:
                paths.add(prefix)
        elif isinstance(child, dict) and child:
            paths |= decode_fields(child, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


_ELEMENT_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def _element_order(key: str) -> tuple[int, str]:
    """Field names first, then list keys, values and indexes, each sorted: the apiserver's serialisation order."""
    return (_ELEMENT_ORDER.get(key[:1], 4), key)


def encode_fields(paths: Iterable[Path]) -> dict:
    members = set(paths)
    tree: dict = {}
    for path in members:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    return _sorted_tree(tree, (), members)


def _sorted_tree(node: dict, prefix: Path, members: set[Path]) -> dict:
    out: dict = {}
    if node and prefix in members:
        out["."] = {}
    for key in sorted(node, key=_element_order):
        out[key] = _sorted_tree(node[key], (*prefix, key), members)
    return out


# ---- entries -------------------------------------------------------------------------------------------------------
def _usable(entries: Any) -> bool:
    return isinstance(entries, list) and bool(entries) and all(isinstance(e, dict) for e in entries)


def _decode_entries(entries: list[dict]) -> dict[EntryKey, _Entry]:
    out: dict[EntryKey, _Entry] = {}
    for raw in entries:
        key = (
            str(raw.get("manager") or ""),
            str(raw.get("operation") or ""),
            str(raw.get("apiVersion") or ""),
            str(raw.get("subresource") or ""),
        )
        fields = decode_fields(raw.get("fieldsV1")) if raw.get("fieldsType", "FieldsV1") == "FieldsV1" else set()
        time = raw.get("time") if isinstance(raw.get("time"), str) else None
        if key in out:
            out[key].fields |= fields
        else:
            out[key] = _Entry(key, fields, time)
    return out


def _encode_entry(entry: _Entry) -> dict:
    manager, operation, api_version, subresource = entry.key
    out: dict = {"manager": manager, "operation": operation, "apiVersion": api_version}
    if entry.time:
        out["time"] = entry.time
    out["fieldsType"] = "FieldsV1"
    out["fieldsV1"] = encode_fields(entry.fields)
    if subresource:
        out["subresource"] = subresource
    return out


def _sort_key(entry: _Entry) -> tuple[str, str, str, str, str]:
    manager, operation, api_version, subresource = entry.key
    return (operation, entry.time or "", manager, api_version, subresource)


def _release(entries: dict[EntryKey, _Entry], diff: Diff) -> None:
    """Every entry gives up the fields this write added, modified or removed (and what lay under a replaced leaf)."""
    changed = diff.added | diff.modified | diff.removed
    replaced = diff.modified | diff.removed
    for entry in entries.values():
        entry.fields = {
            p for p in entry.fields if p not in changed and not any(p[:i] in replaced for i in range(1, len(p)))
        }


def _claim(entries: dict[EntryKey, _Entry], writer: Writer, diff: Diff, time: str) -> None:
    own = diff.added | diff.modified
    if not own:
        return
    entry = entries.get(writer.key)
    if entry is None:
        entries[writer.key] = _Entry(writer.key, own, time)
    else:
        entry.fields |= own
        entry.time = time


def _cap_update_managers(entries: dict[EntryKey, _Entry]) -> None:
    """Past MAX_UPDATE_MANAGERS Update entries, the oldest are merged, per apiVersion, into `ancient-changes`
    (capmanagers.go: the first of a version waits for a second one, then both go into the bucket)."""
    updaters = sorted((e for e in entries.values() if e.operation == UPDATE), key=lambda e: (e.time or "", e.key))
    count = len(updaters)
    first_of_version: dict[str, EntryKey] = {}
    for entry in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        version = entry.key[2]
        if version not in first_of_version:
            first_of_version[version] = entry.key
            continue
        bucket_key = (ANCIENT_CHANGES, UPDATE, version, "")
        if bucket_key not in entries:
            first = entries.pop(first_of_version[version])
            entries[bucket_key] = _Entry(bucket_key, first.fields, first.time)
        bucket = entries[bucket_key]
        bucket.fields = bucket.fields | entry.fields
        bucket.time = entry.time
        if entry.key != bucket_key:
            del entries[entry.key]
        count -= 1


def _finish(entries: dict[EntryKey, _Entry]) -> list[dict]:
    kept = {k: e for k, e in entries.items() if e.fields}
    _cap_update_managers(kept)
    return [_encode_entry(e) for e in sorted(kept.values(), key=_sort_key)]


def _set(meta: dict, entries: list[dict] | None) -> None:
    if entries:
        meta["managedFields"] = entries
    else:
        meta.pop("managedFields", None)


def record_write(old: dict | None, new: dict, writer: Writer | None, time: str, ignore_status: bool = False) -> None:
    """Sets `new`'s metadata.managedFields for the write of `new` over `old` (None on create), in place.

    With no writer (seed objects) the entries are only carried over: the ones `new` brings, else `old`'s."""
    meta = new.setdefault("metadata", {})
    live = (old or {}).get("metadata", {}).get("managedFields")
    supplied = meta.get("managedFields")
    from_client = _usable(supplied) and supplied != live
    base = supplied if from_client else live
    if writer is None:
        _set(meta, base if _usable(base) else None)
        return
    diff = compare(old or {}, new, ignore_status)
    if diff.empty() and not from_client:
        _set(meta, live if _usable(live) else None)  # nothing changed: the stored entries, verbatim
        return
    entries = _decode_entries(base if _usable(base) else [])
    _release(entries, diff)
    _claim(entries, writer, diff, time)
    _set(meta, _finish(entries))
