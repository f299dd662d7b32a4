"""What a real cluster's API returns beyond the controllers' output: who wrote each object (`metadata.managedFields`,
with their field sets) and what `kubectl apply` remembers (`kubectl.kubernetes.io/last-applied-configuration`).

A collector that lists a real AKS cluster reads these on every object, and they are a third to a half of a pod's
JSON, so a seed without them makes every list look half as big as it is. `as_served()` adds them to expanded objects
the way the writers of a real cluster leave them:

- what was applied (Namespaces, Services, Deployments, StatefulSets, ServiceAccounts, the SMI and OSM objects):
  `kubectl-client-side-apply`, operation Update, owning every field of the manifest plus the defaults the API server
  filled in at create (as field tracking records them), and the `last-applied-configuration` annotation;
- ReplicaSets, Pods, Endpoints: `kube-controller-manager` (the object) and, for status, the writer of the status
  subresource: `kube-controller-manager` for workloads, `kubelet` for pods; EndpointSlices:
  `endpointslice-controller.k8s.io`; a Deployment's revision annotation: `kube-controller-manager`.

The field sets use the real encoding, including keyed list items (`k:{"name":"envoy"}`, `k:{"type":"Ready"}`,
`k:{"containerPort":8080,"protocol":"TCP"}`), which the stand-in's own write tracking (`lab.kubeapi.managedfields`)
simplifies to atomic lists. Shapes as in real pods quoted in public issues and kubectl output (kube-controller-manager
owning the spec, kubelet the status with `"subresource": "status"`, containerStatuses atomic). Nodes are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from apps.core.gc import gc_paused
from lab.seeds.controllers import api_group
from lab.seeds.naming import SEED_TIME

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
KUBECTL = "kubectl-client-side-apply"
CONTROLLER_MANAGER = "kube-controller-manager"
KUBELET = "kubelet"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"

# Merge keys of the built-in types' lists (their `patchMergeKey` / `listMapKeys`); any other list is atomic.
_LIST_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "conditions": ("type",),
    "podIPs": ("ip",),
    "hostIPs": ("ip",),
    "ownerReferences": ("uid",),
    "imagePullSecrets": ("name",),
}
# Not tracked in managedFields (the API server sets them, or they identify the object).
_UNTRACKED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"}
# Set by someone else than the object's writer: the scheduler's binding, the IP allocator (after field tracking).
_NOT_THE_WRITERS = {"Pod": {"nodeName"}, "Service": {"clusterIP", "clusterIPs"}}


def field_set(value: dict[str, Any]) -> dict[str, Any]:
    """FieldsV1 of every field in `value` (a map): `f:<name>` keys, keyed list items, `".": {}` on members that
    have members of their own."""
    return {f"f:{name}": _member(name, child) for name, child in value.items()}


def _member(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        inner = field_set(value)
        return {".": {}, **inner} if inner else {}
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        keys = _list_keys(name, value)
        if keys:
            out: dict[str, Any] = {".": {}}
            for item in value:
                key = ",".join(f'"{k}":{_scalar(item[k])}' for k in keys if k in item)
                out[f"k:{{{key}}}"] = {".": {}, **field_set(item)}
            return out
    return {}


def _scalar(value: Any) -> str:
    """A key value as compact JSON (json.dumps, without its cost for the plain strings and numbers keys hold)."""
    if isinstance(value, str) and value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _list_keys(name: str, items: list[dict]) -> tuple[str, ...]:
    if name == "ports":  # a container's ports by (containerPort, protocol), a Service's by (port, protocol)
        return ("containerPort", "protocol") if "containerPort" in items[0] else ("port", "protocol")
    return _LIST_KEYS.get(name, ())


def _entry(manager: str, api_version: str, fields: dict[str, Any], subresource: str = "") -> dict[str, Any]:
    entry = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": api_version,
        "time": SEED_TIME,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _metadata_fields(meta: dict[str, Any], only: Sequence[str] = ()) -> dict[str, Any]:
    tracked = {k: v for k, v in meta.items() if k not in _UNTRACKED_META and (not only or k in only)}
    return {"f:metadata": field_set(tracked)} if tracked else {}


def _object_fields(obj: dict[str, Any], meta_only: Sequence[str] = ()) -> dict[str, Any]:
    """The object's own fields (not status) with its metadata, as its creator's entry holds them."""
    skip = _NOT_THE_WRITERS.get(obj["kind"], set())
    fields = _metadata_fields(obj["metadata"], meta_only)
    for name, value in obj.items():
        if name in ("apiVersion", "kind", "metadata", "status"):
            continue
        if name == "spec" and isinstance(value, dict):
            fields["f:spec"] = field_set({k: v for k, v in value.items() if k not in skip})
        else:
            fields[f"f:{name}"] = _member(name, value)
    return fields


def _status_fields(obj: dict[str, Any], atomic: Sequence[str] = ()) -> dict[str, Any]:
    status = obj.get("status")
    if not isinstance(status, dict) or not status:
        return {}
    if obj["kind"] == "Pod":  # set by the API server at create, not written by the kubelet
        status = {k: v for k, v in status.items() if k != "qosClass"}
    return {"f:status": {k: ({} if k.removeprefix("f:") in atomic else v) for k, v in field_set(status).items()}}


def _last_applied(manifest: dict[str, Any]) -> str:
    """As kubectl writes it: the applied object (without this annotation), compact JSON and a newline."""
    annotations = (manifest.get("metadata") or {}).get("annotations") or {}
    if LAST_APPLIED in annotations:
        meta = {**manifest["metadata"], "annotations": {k: v for k, v in annotations.items() if k != LAST_APPLIED}}
        manifest = {**manifest, "metadata": meta}
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True) + "\n"


def _key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (api_group(obj), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))


def as_served(objects: list[dict[str, Any]], applied: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`objects` (fresh from `controllers.expand`, changed in place and returned) with the managedFields and
    annotations a real cluster's writers leave; `applied`: the manifests that were applied (what kubectl remembers).
    Objects that bring managedFields keep them."""
    # The cyclic GC off meanwhile: the field sets are a million small acyclic dicts, and every pass it would make
    # scans the whole seed (it doubled the time of this function).
    with gc_paused():
        return _as_served(objects, {_key(m): m for m in applied})


def _as_served(objects: list[dict[str, Any]], manifests: dict[tuple, dict[str, Any]]) -> list[dict[str, Any]]:
    pod_specs: dict[str, dict[str, Any]] = {}
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if obj["kind"] == "Node" or meta.get("managedFields"):
            continue
        manifest = manifests.get(_key(obj))
        if manifest is not None:
            meta.setdefault("annotations", {})[LAST_APPLIED] = _last_applied(manifest)
        meta["managedFields"] = _pod_entries(obj, pod_specs) if obj["kind"] == "Pod" else _entries(obj, manifest)
    return objects


def _pod_entries(pod: dict[str, Any], by_owner: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The pod's creator owns its spec, the kubelet its status. The replicas of one owner differ only in their
    volumes' names (a random suffix per pod), so the rest of the creator's field set is built once per owner."""
    version, meta, spec = pod["apiVersion"], pod["metadata"], pod.get("spec") or {}
    owner = next((ref.get("uid", "") for ref in meta.get("ownerReferences") or () if ref.get("controller")), "")
    fields = by_owner.get(owner) if owner else None
    if fields is None:
        fields = _metadata_fields(meta)
        fields["f:spec"] = field_set({k: v for k, v in spec.items() if k not in ("nodeName", "volumes")})
        if owner:
            by_owner[owner] = fields
    own = {**fields, "f:spec": {**fields["f:spec"]}}
    if spec.get("volumes"):
        own["f:spec"]["f:volumes"] = _member("volumes", spec["volumes"])
    status = _status_fields(pod, ("containerStatuses", "initContainerStatuses"))
    return [_entry(CONTROLLER_MANAGER, version, own), _entry(KUBELET, version, status, "status")]


def _entries(obj: dict[str, Any], manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    kind, version = obj["kind"], obj["apiVersion"]
    if kind == "EndpointSlice":
        fields = _object_fields(obj)
        fields.update({"f:endpoints": {}, "f:ports": {}})  # atomic lists
        return [_entry(SLICE_CONTROLLER, version, fields)]
    if kind == "Endpoints":
        fields = _object_fields(obj)
        fields["f:subsets"] = {}
        return [_entry(CONTROLLER_MANAGER, version, fields)]
    if kind == "ReplicaSet":
        entries = [_entry(CONTROLLER_MANAGER, version, _object_fields(obj))]
        status = _status_fields(obj)
        return entries + ([_entry(CONTROLLER_MANAGER, version, status, "status")] if status else [])
    writer = KUBECTL if manifest is not None else CONTROLLER_MANAGER
    entries = [_entry(writer, version, _object_fields(obj))]
    if kind == "Deployment":
        revision = {k: v for k, v in (obj["metadata"].get("annotations") or {}).items() if k.startswith("deployment.")}
        if revision:
            entries[0]["fieldsV1"]["f:metadata"]["f:annotations"] = {
                k: v for k, v in entries[0]["fieldsV1"]["f:metadata"]["f:annotations"].items() if k[2:] not in revision
            }
            entries.append(_entry(CONTROLLER_MANAGER, version, {"f:metadata": {"f:annotations": field_set(revision)}}))
    if kind in ("Deployment", "StatefulSet", "DaemonSet") and obj.get("status"):
        entries.append(_entry(CONTROLLER_MANAGER, version, _status_fields(obj), "status"))
    return entries
