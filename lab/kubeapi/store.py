"""The object store: one lock, one resourceVersion counter, an event history for watches.

Stored objects are never mutated after they are stored (every write stores a fresh dict), so readers may hold
references outside the lock. Objects are kept at their type's storage version; `render` rewrites apiVersion for
other served versions, which is all a CRD with `conversion: None` does.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import schema
from .managedfields import Writer, record_write
from .patching import apply_patch
from .registry import Registry, ResourceType
from .status import (
    already_exists,
    bad_request,
    cause,
    conflict,
    format_value,
    invalid,
    not_found,
)

TypeKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Revisions kept for paged lists in flight; older ones answer 410 as if compacted (kube-apiserver compacts etcd every
# 5 minutes).
PAGED_LIST_REVISIONS = 64
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: TypeKey
    obj: dict
    old: dict | None = None  # the state before a MODIFIED, for selector transitions


@dataclass
class WriteResult:
    obj: dict
    code: int = 200
    warnings: tuple[str, ...] = ()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(obj: dict, rt: ResourceType, version: str) -> dict:
    api_version = rt.api_version(version)
    if obj.get("apiVersion") == api_version:
        return obj
    return {**obj, "apiVersion": api_version}


# Built-in kinds whose Go type has a `spec` struct. A create is compared with the type's zero value, where that struct
# exists already: so their managedFields say `"f:spec": {...}` where a custom resource's say `"f:spec": {".": {}, ...}`.
_SPEC_STRUCT_KINDS = frozenset(
    {"Namespace", "Node", "Service", "Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"}
    | {"Ingress", "IngressClass"}
)


def _zero_value(rt: ResourceType) -> dict:
    """What the field manager compares a create with: `Creater.New(kind)` for built-ins, an empty object for CRs."""
    return {"spec": {}} if rt.builtin and rt.kind in _SPEC_STRUCT_KINDS else {}


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    def __init__(self, registry: Registry, history_size: int = 1000, initial_rv: int = 100):
        self.registry = registry
        self.cond = threading.Condition()
        self.rv = initial_rv
        self.compacted_rv = initial_rv
        self.history: deque[Event] = deque(maxlen=history_size)
        self.objects: dict[TypeKey, dict[ObjKey, dict]] = {}
        self.closed = False
        self._cluster_ip = 10
        # The state a paged list started from, by (group, plural, namespace, rv): what etcd keeps as old revisions
        # until compaction, so that every page of one list reads the revision of its first page.
        self._snapshots: OrderedDict[tuple, list[dict]] = OrderedDict()

    # ---- reading -------------------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> dict:
        with self.cond:
            obj = self.objects.get((rt.group, rt.plural), {}).get((namespace, name))
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        match: Callable[[dict], bool] = lambda o: True,
    ) -> tuple[list[dict], int]:
        with self.cond:
            bucket = self.objects.get((rt.group, rt.plural), {})
            keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
            items = [bucket[k] for k in keys]
            rv = self.rv
        return [o for o in items if match(o)], rv

    def list_snapshot(self, rt: ResourceType, namespace: str | None) -> tuple[list[dict], int]:
        """Every object of a type (in `namespace`, or all) now, kept by resourceVersion for the next pages of a
        paged list (`at_revision`). Objects are replaced on write, never changed in place, so keeping the list
        keeps that state."""
        with self.cond:
            bucket = self.objects.get((rt.group, rt.plural), {})
            items = [bucket[k] for k in sorted(k for k in bucket if namespace is None or k[0] == namespace)]
            key = (rt.group, rt.plural, namespace, self.rv)
            self._snapshots[key] = items
            self._snapshots.move_to_end(key)
            while len(self._snapshots) > PAGED_LIST_REVISIONS:
                self._snapshots.popitem(last=False)
            return items, self.rv

    def at_revision(self, rt: ResourceType, namespace: str | None, rv: int) -> list[dict] | None:
        """The objects as a paged list saw them at `rv`; None once that revision is compacted (or forgotten)."""
        with self.cond:
            if rv < self.compacted_rv:
                return None
            return self._snapshots.get((rt.group, rt.plural, namespace, rv))

    def namespace_exists(self, namespace: str) -> bool:
        with self.cond:
            return ("", namespace) in self.objects.get(("", "namespaces"), {})

    # ---- writing -------------------------------------------------------------------------------------------
    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, event: Event) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted_rv = self.history[0].rv
        self.history.append(event)
        self.cond.notify_all()

    def compact(self) -> None:
        """Forget the watch history, as etcd compaction does; watches from older rvs then get 410."""
        with self.cond:
            self.history.clear()
            self.compacted_rv = self.rv
            self._snapshots.clear()

    def _check_namespace(self, rt: ResourceType, url_namespace: str | None, obj: dict) -> str:
        meta = obj.setdefault("metadata", {})
        if not rt.namespaced:
            meta.pop("namespace", None)
            return ""
        body_ns = meta.get("namespace")
        if body_ns and url_namespace and body_ns != url_namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = url_namespace or body_ns or ""
        return meta["namespace"]

    def _check_body_type(self, rt: ResourceType, version: str, obj: Any) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("Object 'Kind' is missing in '" + str(obj)[:200] + "'")
        if "kind" in obj and obj["kind"] != rt.kind:
            raise bad_request(f"the kind in the data ({obj['kind']}) does not match the expected kind ({rt.kind})")
        if "apiVersion" in obj and obj["apiVersion"] != rt.api_version(version):
            raise bad_request(
                f"the API version in the data ({obj['apiVersion']}) does not match the expected API version "
                f"({rt.api_version(version)})"
            )
        meta = obj.get("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("json: cannot unmarshal into Go struct field Object.metadata of type v1.ObjectMeta")
        for field in ("labels", "annotations"):
            value = meta.get(field)
            if value is not None and (
                not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
            ):
                raise bad_request(
                    f"json: cannot unmarshal into Go struct field ObjectMeta.metadata.{field} of type string"
                )
        return obj

    def _validate(self, rt: ResourceType, version: str, obj: dict) -> tuple[str, ...]:
        """Prunes/defaults CRs in place; raises 422 naming the Kind, as strategy validation does."""
        meta = obj["metadata"]
        name = meta.get("name", "")
        causes = []
        if not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
            causes.append(
                cause(
                    "FieldValueInvalid",
                    "metadata.name",
                    f"Invalid value: {format_value(name)}: a lowercase RFC 1123 subdomain must consist of lower case "
                    "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                )
            )
        dropped: list[str] = []
        if not rt.builtin:
            schema_ = rt.schemas.get(version, {})
            dropped = schema.prune_and_default(obj, schema_)
            causes += schema.validate(obj, schema_)
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)
        return tuple(f'unknown field "{p}"' for p in dropped)

    def _prepare_new(self, rt: ResourceType, obj: dict) -> None:
        """What registry strategies' PrepareForCreate and defaulting do for the kinds we serve."""
        if rt.has_status_subresource:
            obj.pop("status", None)
        if rt.builtin and rt.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        elif rt.builtin and rt.kind == "Pod":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        self._default_service(rt, obj)

    def _default_service(self, rt: ResourceType, obj: dict) -> None:
        if not (rt.builtin and rt.kind == "Service"):
            return
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
            self._cluster_ip += 1
            spec["clusterIP"] = f"10.0.{self._cluster_ip // 250}.{self._cluster_ip % 250 + 1}"
            spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec.get("ports") or ():
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))

    def create(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        body: Any,
        dry_run: bool = False,
        from_seed: bool = False,
        writer: Writer | None = None,
    ) -> WriteResult:
        """`writer` (the request's field manager) gets a managedFields entry; seeds keep the ones they bring."""
        obj = copy.deepcopy(self._check_body_type(rt, version, body))
        meta = obj.setdefault("metadata", {})
        ns = self._check_namespace(rt, namespace, obj)
        if not meta.get("name") and not meta.get("generateName"):
            raise invalid(
                rt.kind,
                rt.group,
                "",
                [
                    cause(
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )
                ],
            )
        with self.cond:
            if rt.namespaced and not self.namespace_exists(ns):
                raise not_found("namespaces", "", ns)
            bucket = self.objects.setdefault((rt.group, rt.plural), {})
            if not meta.get("name"):
                meta["name"] = meta["generateName"] + "".join(secrets.choice(_GENERATE_CHARS) for _ in range(5))
            if not from_seed:
                self._prepare_new(rt, obj)
            else:
                self._default_service(rt, obj)
            warnings = self._validate(rt, version, obj)
            if (ns, meta["name"]) in bucket:
                raise already_exists(rt.plural, rt.group, meta["name"])
            obj["apiVersion"] = rt.api_version(rt.storage_version)
            obj["kind"] = rt.kind
            # A seed stands for objects the cluster already had: their uids are the ones the seed's
            # ownerReferences and endpoint targetRefs point at, so they are kept.
            seed_uid = meta.get("uid") if from_seed else None
            for server_set in (
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ):
                meta.pop(server_set, None)
            meta["uid"] = seed_uid or str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if rt.tracks_generation:
                meta["generation"] = 1
            record_write(_zero_value(rt), obj, writer, meta["creationTimestamp"], rt.has_status_subresource)
            if dry_run:
                return WriteResult(render(obj, rt, version), 201, warnings)
            meta["resourceVersion"] = str(self._bump())
            bucket[(ns, meta["name"])] = obj
            self._record(Event(self.rv, "ADDED", (rt.group, rt.plural), obj))
        return WriteResult(render(obj, rt, version), 201, warnings)

    def update(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        body: Any,
        dry_run: bool = False,
        subresource: str | None = None,
        require_rv: bool = True,
        writer: Writer | None = None,
    ) -> WriteResult:
        obj = copy.deepcopy(self._check_body_type(rt, version, body))
        meta = obj.setdefault("metadata", {})
        ns = self._check_namespace(rt, namespace, obj)
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        meta["name"] = name
        with self.cond:
            bucket = self.objects.get((rt.group, rt.plural), {})
            old = bucket.get((ns, name))
            if old is None:
                if rt.allow_create_on_update and subresource is None:
                    meta.pop("resourceVersion", None)
                    return self.create(rt, version, namespace, obj, dry_run, writer=writer)
                raise not_found(rt.plural, rt.group, name)
            rv = meta.get("resourceVersion")
            if not rv and require_rv and not rt.builtin:
                raise invalid(
                    rt.plural,
                    rt.group,
                    name,
                    [
                        cause(
                            "FieldValueInvalid",
                            "metadata.resourceVersion",
                            "Invalid value: 0x0: must be specified for an update",
                        )
                    ],
                )
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            if meta.get("uid") and meta["uid"] != old["metadata"]["uid"]:
                raise conflict(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: "
                    f"{old['metadata']['uid']}",
                )
            old_meta = old["metadata"]
            if subresource == "status":
                new = dict(copy.deepcopy(old))
                if "status" in obj:
                    new["status"] = obj["status"]
                else:
                    new.pop("status", None)
            else:
                new = obj
                if rt.has_status_subresource:
                    if "status" in old:
                        new["status"] = copy.deepcopy(old["status"])
                    else:
                        new.pop("status", None)
            new_meta = new["metadata"]
            for kept in ("uid", "creationTimestamp", "deletionTimestamp", "generation", "namespace"):
                if kept in old_meta:
                    new_meta[kept] = old_meta[kept]
                else:
                    new_meta.pop(kept, None)
            if not rt.namespaced:
                new_meta.pop("namespace", None)
            self._default_service(rt, new)
            warnings = self._validate(rt, version, new)
            new["apiVersion"] = old["apiVersion"]
            new["kind"] = rt.kind
            new_meta["resourceVersion"] = old_meta["resourceVersion"]
            if rt.tracks_generation and _spec_part(new) != _spec_part(old):
                new_meta["generation"] = old_meta.get("generation", 1) + 1
            ignore_status = rt.has_status_subresource and subresource is None
            record_write(old, new, writer, now(), ignore_status)
            if new == old:
                return WriteResult(render(old, rt, version), 200, warnings)
            if dry_run:
                return WriteResult(render(new, rt, version), 200, warnings)
            if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
                self._remove(rt, ns, name, new)
                return WriteResult(render(new, rt, version), 200, warnings)
            new_meta["resourceVersion"] = str(self._bump())
            bucket[(ns, name)] = new
            self._record(Event(self.rv, "MODIFIED", (rt.group, rt.plural), new, old))
        return WriteResult(render(new, rt, version), 200, warnings)

    def patch(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        dry_run: bool = False,
        subresource: str | None = None,
        writer: Writer | None = None,
    ) -> WriteResult:
        # The lock is re-entrant, so read-patch-write is one atomic step: no write can slip in between.
        with self.cond:
            current = render(self.get(rt, namespace or "", name), rt, version)
            patched = apply_patch(current, content_type, patch, rt.builtin)
            if not isinstance(patched, dict):
                raise bad_request("the patch produced something that is not an object")
            meta = patched.get("metadata")
            if isinstance(meta, dict) and meta.get("resourceVersion") in (None, ""):
                # A patch without an rv is unconditional; it never needs one.
                meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.update(
                rt, version, namespace, name, patched, dry_run, subresource, require_rv=False, writer=writer
            )

    def _remove(self, rt: ResourceType, ns: str, name: str, last: dict) -> dict:
        bucket = self.objects.get((rt.group, rt.plural), {})
        bucket.pop((ns, name), None)
        gone = copy.deepcopy(last)
        gone["metadata"]["resourceVersion"] = str(self._bump())
        self._record(Event(self.rv, "DELETED", (rt.group, rt.plural), gone))
        return gone

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        preconditions: dict | None = None,
        dry_run: bool = False,
    ) -> tuple[dict, bool]:
        """Returns (the object as last seen, still_pending) where pending means finalizers keep it."""
        ns = namespace or ""
        with self.cond:
            old = self.get(rt, ns, name)
            meta = old["metadata"]
            for key, actual in (("uid", meta["uid"]), ("resourceVersion", meta["resourceVersion"])):
                wanted = (preconditions or {}).get(key)
                if wanted and wanted != actual:
                    label = "UID" if key == "uid" else "ResourceVersion"
                    raise conflict(
                        rt.plural,
                        rt.group,
                        name,
                        f"Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}",
                    )
            if dry_run:
                return old, bool(meta.get("finalizers"))
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return old, True
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["metadata"]["resourceVersion"] = str(self._bump())
                self.objects[(rt.group, rt.plural)][(ns, name)] = new
                self._record(Event(self.rv, "MODIFIED", (rt.group, rt.plural), new, old))
                return new, True
            if rt.builtin and rt.kind == "Namespace":
                # No namespace controller: empty the namespace at once instead of leaving it Terminating.
                for (group, plural), bucket in self.objects.items():
                    other = next((t for t in self.registry.types if (t.group, t.plural) == (group, plural)), None)
                    for key in [k for k in bucket if k[0] == name and other is not None]:
                        self._remove(other, key[0], key[1], bucket[key])
                old = copy.deepcopy(old)
                old["status"] = {"phase": "Terminating"}
                old["metadata"]["deletionTimestamp"] = now()
            return self._remove(rt, ns, name, old), False

    def drop_type(self, rt_key: TypeKey) -> None:
        """Forget every object of a type (its CRD was removed), as the apiserver does."""
        with self.cond:
            self.objects.pop(rt_key, None)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
