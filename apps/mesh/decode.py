"""Raw Kubernetes JSON to snapshot rows (plain dicts keyed by model field names).

Objects come from a cluster we do not control: every field may be missing or of the wrong type, so each accessor
tolerates that, and an object that cannot be read at all raises `MalformedObject` for the collector to report.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

Row = dict[str, Any]

SIDECAR_LABEL = "osm-proxy-uuid"
SIDECAR_CONTAINER = "envoy"
MONITORED_BY_LABEL = "openservicemesh.io/monitored-by"
IGNORE_LABEL = "openservicemesh.io/ignore"
INJECTION_ANNOTATION = "openservicemesh.io/sidecar-injection"
METRICS_ANNOTATION = "openservicemesh.io/metrics"


class MalformedObject(ValueError):
    pass


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _str(value: Any, limit: int = 253) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str_map(value: Any) -> dict[str, str]:
    return {k: v for k, v in _dict(value).items() if isinstance(k, str) and isinstance(v, str)}


def object_key(obj: Any) -> tuple[str, str]:
    """(namespace, name) of an object, or MalformedObject when it has no name."""
    meta = _dict(obj.get("metadata")) if isinstance(obj, dict) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedObject("object without metadata.name")
    return _str(meta.get("namespace")), name


def base_row(obj: dict) -> Row:
    namespace, name = object_key(obj)
    meta = _dict(obj.get("metadata"))
    return {
        "namespace": namespace,
        "name": name,
        "uid": _str(meta.get("uid"), 64),
        "labels": _str_map(meta.get("labels")),
        "annotations": _str_map(meta.get("annotations")),
    }


def namespace_row(obj: dict) -> Row:
    row = base_row(obj)
    labels, annotations = row["labels"], row["annotations"]
    row.update(
        monitored_by=labels.get(MONITORED_BY_LABEL, "")[:253],
        sidecar_injection=annotations.get(INJECTION_ANNOTATION, "")[:32],
        metrics_enabled=annotations.get(METRICS_ANNOTATION, "").strip().lower() == "enabled",
        ignored=labels.get(IGNORE_LABEL, "").strip().lower() == "true",
        phase=_str(_dict(obj.get("status")).get("phase"), 32),
    )
    return row


def node_row(obj: dict) -> Row:
    row = base_row(obj)
    status = _dict(obj.get("status"))
    info = _dict(status.get("nodeInfo"))
    labels = row["labels"]
    ready = any(
        _dict(c).get("type") == "Ready" and _dict(c).get("status") == "True" for c in _list(status.get("conditions"))
    )
    row.update(
        os=_str(labels.get("kubernetes.io/os") or info.get("operatingSystem"), 32),
        architecture=_str(labels.get("kubernetes.io/arch") or info.get("architecture"), 32),
        kubelet_version=_str(info.get("kubeletVersion"), 64),
        os_image=_str(info.get("osImage")),
        ready=ready,
    )
    return row


def service_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    cluster_ip = _str(spec.get("clusterIP"), 64)
    ports = [
        {
            "name": _str(p.get("name"), 63),
            "port": _int(p.get("port")),
            "targetPort": p.get("targetPort") if isinstance(p.get("targetPort"), int | str) else None,
            "protocol": _str(p.get("protocol"), 16) or "TCP",
            "appProtocol": _str(p.get("appProtocol"), 63),
        }
        for p in map(_dict, _list(spec.get("ports")))
    ]
    row.update(
        type=_str(spec.get("type"), 32) or "ClusterIP",
        cluster_ip=cluster_ip,
        headless=cluster_ip == "None",
        ports=ports,
        selector=_str_map(spec.get("selector")),
    )
    return row


def service_account_row(obj: dict) -> Row:
    return base_row(obj)


def controller_of(obj: dict) -> tuple[str, str]:
    """(kind, name) of the owner reference marked controller, else ("", "")."""
    for ref in map(_dict, _list(_dict(obj.get("metadata")).get("ownerReferences"))):
        if ref.get("controller") is True:
            return _str(ref.get("kind"), 32), _str(ref.get("name"))
    return "", ""


def workload_row(obj: dict, kind: str) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    template = _dict(spec.get("template"))
    replicas = spec.get("replicas")
    if kind == "DaemonSet":  # one pod per eligible node: the wanted count is the controller's, in its status
        wanted, ready = _int(status.get("desiredNumberScheduled")), _int(status.get("numberReady"))
    else:
        wanted, ready = _int(replicas) if replicas is not None else 1, _int(status.get("readyReplicas"))
    row.update(
        kind=kind,
        replicas=wanted,
        ready_replicas=ready,
        selector=_dict(spec.get("selector")),
        service_account=_str(_dict(template.get("spec")).get("serviceAccountName")),
        template_labels=_str_map(_dict(template.get("metadata")).get("labels")),
    )
    return row


def pod_row(obj: dict, replicaset_owners: dict[tuple[str, str], tuple[str, str]]) -> Row:
    """`replicaset_owners` maps (namespace, replicaset) to its controller, so a pod resolves to its Deployment."""
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    kind, owner = controller_of(obj)
    if kind == "ReplicaSet":
        parent = replicaset_owners.get((row["namespace"], owner))
        if parent and parent[0]:
            kind, owner = parent
    statuses = {_dict(s).get("name"): _dict(s) for s in _list(status.get("containerStatuses")) if isinstance(s, dict)}
    containers = []
    for container in map(_dict, _list(spec.get("containers"))):
        name = _str(container.get("name"), 63)
        cstatus = statuses.get(name, {})
        containers.append(
            {
                "name": name,
                "image": _str(container.get("image"), 512),
                "ready": cstatus.get("ready") is True,
                "restartCount": _int(cstatus.get("restartCount")),
            }
        )
    ready = any(
        _dict(c).get("type") == "Ready" and _dict(c).get("status") == "True" for c in _list(status.get("conditions"))
    )
    proxy_uuid = row["labels"].get(SIDECAR_LABEL, "")
    row.update(
        phase=_str(status.get("phase"), 32),
        ready=ready,
        # The label is what OSM's own CLI trusts; the container name catches pods whose labels were edited.
        has_sidecar=bool(proxy_uuid) or any(c["name"] == SIDECAR_CONTAINER for c in containers),
        proxy_uuid=proxy_uuid[:64],
        service_account=_str(spec.get("serviceAccountName")) or "default",
        node_name=_str(spec.get("nodeName")),
        pod_ip=_str(status.get("podIP"), 64),
        workload_kind=kind,
        workload_name=owner,
        containers=containers,
        restarts=sum(c["restartCount"] for c in containers),
    )
    return row


def endpoint_slice_row(obj: dict) -> Row:
    row = base_row(obj)
    endpoints = []
    for ep in map(_dict, _list(obj.get("endpoints"))):
        target = _dict(ep.get("targetRef"))
        conditions = _dict(ep.get("conditions"))
        endpoints.append(
            {
                "addresses": [a for a in _list(ep.get("addresses")) if isinstance(a, str)],
                # Per the EndpointSlice API, an unknown ready state is to be read as ready.
                "ready": conditions.get("ready") is not False,
                "pod": _str(target.get("name")) if target.get("kind") == "Pod" else "",
                "node": _str(ep.get("nodeName")),
            }
        )
    row.update(
        service_name=row["labels"].get("kubernetes.io/service-name", "")[:253],
        address_type=_str(obj.get("addressType"), 16),
        ports=[
            {
                "name": _str(p.get("name"), 63),
                "port": _int(p.get("port")),
                "protocol": _str(p.get("protocol"), 16),
            }
            for p in map(_dict, _list(obj.get("ports")))
        ],
        endpoints=endpoints,
    )
    return row


def traffic_split_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    row.update(
        root_service=_str(spec.get("service")),
        # Weights are kept exactly as stored (the CRD allows 33.5 or -1); judging them is the canary form's job.
        backends=[
            {"service": _str(b.get("service")), "weight": b.get("weight")}
            for b in map(_dict, _list(spec.get("backends")))
        ],
        resource_version=_str(_dict(obj.get("metadata")).get("resourceVersion"), 64),
        api_version=_str(obj.get("apiVersion"), 64),
        owners=owner_refs(obj),
        managers=field_managers(obj),
    )
    return row


def k8s_time(text: str) -> datetime | None:
    """An RFC 3339 time as the API server writes it ("2026-11-30T17:26:45Z"), or None when absent or malformed."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def field_managers(obj: dict) -> list[dict[str, str]]:
    """[{manager, operation, time}] of the object's managedFields, oldest first: who wrote it, and when."""
    entries = [
        {
            "manager": _str(entry.get("manager"), 128),
            "operation": _str(entry.get("operation"), 16),
            "time": _str(entry.get("time"), 32),
        }
        for entry in map(_dict, _list(_dict(obj.get("metadata")).get("managedFields")))
    ]
    return sorted(entries, key=lambda e: e["time"])


def owner_refs(obj: dict) -> list[dict[str, str]]:
    """[{kind, name}] of the object's ownerReferences (e.g. a Flagger Canary that manages a TrafficSplit)."""
    return [
        {
            "kind": _str(ref.get("kind"), 63),
            "name": _str(ref.get("name")),
            "apiVersion": _str(ref.get("apiVersion"), 128),
        }
        for ref in map(_dict, _list(_dict(obj.get("metadata")).get("ownerReferences")))
    ]


def traffic_target_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    row.update(
        destination=_dict(spec.get("destination")),
        sources=[s for s in _list(spec.get("sources")) if isinstance(s, dict)],
        rules=[r for r in _list(spec.get("rules")) if isinstance(r, dict)],
    )
    return row


def http_route_group_row(obj: dict) -> Row:
    row = base_row(obj)
    row["matches"] = [m for m in _list(_dict(obj.get("spec")).get("matches")) if isinstance(m, dict)]
    return row


def tcp_route_row(obj: dict) -> Row:
    row = base_row(obj)
    row["matches"] = _dict(_dict(obj.get("spec")).get("matches"))
    return row


def canary_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    weight = status.get("canaryWeight")
    row.update(
        target_ref=_dict(spec.get("targetRef")),
        service=_dict(spec.get("service")),
        phase=_str(status.get("phase"), 64),
        canary_weight=weight if isinstance(weight, int) and not isinstance(weight, bool) else None,
    )
    return row


_ARG = re.compile(r"^--?([a-z0-9-]+)(?:=(.*))?$")


def container_args(deployment: dict) -> dict[str, str]:
    """Flags of every container in a Deployment's pod template, as {flag: value}."""
    flags: dict[str, str] = {}
    pod_spec = _dict(_dict(_dict(deployment.get("spec")).get("template")).get("spec"))
    for container in map(_dict, _list(pod_spec.get("containers"))):
        args = [a for a in _list(container.get("command")) + _list(container.get("args")) if isinstance(a, str)]
        for index, arg in enumerate(args):
            match = _ARG.match(arg)
            if not match:
                continue
            flag, value = match.groups()
            if value is None and index + 1 < len(args) and not args[index + 1].startswith("-"):
                value = args[index + 1]
            flags[flag] = value or ""
    return flags


def image_tag(deployment: dict) -> str:
    pod_spec = _dict(_dict(_dict(deployment.get("spec")).get("template")).get("spec"))
    for container in map(_dict, _list(pod_spec.get("containers"))):
        image = _str(container.get("image"), 512)
        if ":" in image.rsplit("/", 1)[-1]:
            return image.rsplit(":", 1)[-1]
    return ""
