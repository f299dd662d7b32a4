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
ISTIO_SIDECAR_CONTAINER = "istio-proxy"
ISTIO_REVISION_LABEL = "istio.io/rev"
ISTIO_INJECTION_LABEL = "istio-injection"


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
        istio_revision=labels.get(ISTIO_REVISION_LABEL, "")[:63],
        istio_injection=labels.get(ISTIO_INJECTION_LABEL, "")[:32],
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
        # The label is what OSM's own CLI trusts; the container name catches pods whose labels were edited. Istio's
        # sidecar is the istio-proxy container, or (native sidecars) an init container of that name that restarts.
        has_sidecar=bool(proxy_uuid)
        or any(c["name"] in (SIDECAR_CONTAINER, ISTIO_SIDECAR_CONTAINER) for c in containers)
        or _native_istio_sidecar(spec),
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


def _native_istio_sidecar(spec: dict) -> bool:
    return any(
        c.get("name") == ISTIO_SIDECAR_CONTAINER and c.get("restartPolicy") == "Always"
        for c in map(_dict, _list(spec.get("initContainers")))
    )


def istio_config_row(obj: dict) -> Row:
    """An Istio configuration object (VirtualService, AuthorizationPolicy, ...): its spec kept as written."""
    row = base_row(obj)
    row.update(api_version=_str(obj.get("apiVersion"), 64), spec=_dict(obj.get("spec")))
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


# Status fields Flagger fills with whole copies of the spec and the tracked ConfigMaps/Secrets: not kept.
_CANARY_STATUS_DROPPED = ("lastAppliedSpec", "lastPromotedSpec", "trackedConfigs")


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
        provider=_str(spec.get("provider"), 64),
        metrics_server=_str(spec.get("metricsServer"), 512),
        ingress_ref=_str(_dict(spec.get("ingressRef")).get("name")),
        route_ref=_str(_dict(spec.get("routeRef")).get("name")),
        analysis=_dict(spec.get("analysis")) or _dict(spec.get("canaryAnalysis")),
        status={k: v for k, v in status.items() if k not in _CANARY_STATUS_DROPPED},
    )
    return row


def metric_template_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    row.update(provider=_dict(spec.get("provider")), query=_str(spec.get("query"), 65536))
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


# OSM's policy API, its MeshRootCertificate and the networking.k8s.io ingress kinds. Their strings are kept as the
# cluster has them (cut to the column's length), and a field of the wrong type reads as absent, never as an error.

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"  # before spec.ingressClassName (Kubernetes < 1.18)
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


def _number_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _port_ref(value: Any) -> int | str | None:
    """An Ingress backend's `service.port`: its number or its name."""
    port = _dict(value)
    number = _number_or_none(port.get("number"))
    return number if number is not None else (_str(port.get("name"), 63) or None)


def _dicts(value: Any) -> list[dict]:
    """The objects of a list, leaving out what is not one."""
    return [item for item in _list(value) if isinstance(item, dict)]


def _strs(value: Any) -> list[str]:
    return [item for item in _list(value) if isinstance(item, str)]


def _refs(value: Any, fields: tuple[str, ...] = ("kind", "name", "namespace")) -> list[dict[str, str]]:
    return [{f: _str(item.get(f)) for f in fields} for item in _dicts(value)]


def ingress_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    routes = []
    default = _dict(_dict(spec.get("defaultBackend")).get("service"))
    if default:
        routes.append(
            {
                "host": "",
                "path": "",
                "path_type": "",
                "service": _str(default.get("name")),
                "port": _port_ref(default.get("port")),
            }
        )
    for rule in _dicts(spec.get("rules")):
        host = _str(rule.get("host"))
        for path in _dicts(_dict(rule.get("http")).get("paths")):
            service = _dict(_dict(path.get("backend")).get("service"))
            routes.append(
                {
                    "host": host,
                    "path": _str(path.get("path"), 1024),
                    "path_type": _str(path.get("pathType"), 32),
                    "service": _str(service.get("name")),
                    "port": _port_ref(service.get("port")),
                }
            )
    row.update(
        ingress_class=_str(spec.get("ingressClassName")) or row["annotations"].get(INGRESS_CLASS_ANNOTATION, "")[:253],
        routes=routes,
        tls=[{"hosts": _strs(t.get("hosts")), "secret": _str(t.get("secretName"))} for t in _dicts(spec.get("tls"))],
    )
    return row


def ingress_class_row(obj: dict) -> Row:
    row = base_row(obj)
    row.update(
        controller=_str(_dict(obj.get("spec")).get("controller")),
        is_default=row["annotations"].get(DEFAULT_CLASS_ANNOTATION, "").strip().lower() == "true",
    )
    return row


def ingress_backend_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    backends = []
    for item in _dicts(spec.get("backends")):
        port, tls = _dict(item.get("port")), item.get("tls")
        backends.append(
            {
                "name": _str(item.get("name")),
                "port": _number_or_none(port.get("number")),
                "protocol": _str(port.get("protocol")),
                "tls": {
                    "skipClientCertValidation": _dict(tls).get("skipClientCertValidation") is True,
                    "sniHosts": _strs(_dict(tls).get("sniHosts")),
                }
                if isinstance(tls, dict)
                else None,
            }
        )
    row.update(
        backends=backends,
        sources=_refs(spec.get("sources")),
        matches=_refs(spec.get("matches"), ("apiGroup", "kind", "name")),
        status=_str(status.get("currentStatus"), 64),
        status_reason=_str(status.get("reason"), 512),
    )
    return row


def egress_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    row.update(
        sources=_refs(spec.get("sources")),
        hosts=_strs(spec.get("hosts")),
        ip_addresses=_strs(spec.get("ipAddresses")),
        ports=[
            {"number": _number_or_none(p.get("number")), "protocol": _str(p.get("protocol"))}
            for p in _dicts(spec.get("ports"))
        ],
        matches=_refs(spec.get("matches"), ("apiGroup", "kind", "name")),
    )
    return row


def upstream_traffic_setting_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    row.update(
        host=_str(spec.get("host")),
        connection_settings=_dict(spec.get("connectionSettings")),
        rate_limit=_dict(spec.get("rateLimit")),
        http_routes=_dicts(spec.get("httpRoutes")),
        status=_str(_dict(obj.get("status")).get("currentStatus"), 64),
    )
    return row


def retry_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    source = _dict(spec.get("source"))
    row.update(
        source={f: _str(source.get(f)) for f in ("kind", "name", "namespace")} if source else {},
        destinations=_refs(spec.get("destinations")),
        retry_policy=_dict(spec.get("retryPolicy")),
    )
    return row


MRC_PROVIDERS = ("tresor", "certManager", "vault")


def mesh_root_certificate_row(obj: dict) -> Row:
    row = base_row(obj)
    spec = _dict(obj.get("spec"))
    provider = _dict(spec.get("provider"))
    kind = next((k for k in MRC_PROVIDERS if isinstance(provider.get(k), dict)), "")
    row.update(
        trust_domain=_str(spec.get("trustDomain")),
        provider=kind,
        provider_spec=_dict(provider.get(kind)) if kind else {},
        state=_str(_dict(obj.get("status")).get("state"), 64),
        state_since=_state_since(obj),
    )
    return row


def _state_since(obj: dict) -> datetime | None:
    """When an object's status was last set (see MeshRootCertificate.state_since)."""
    status, meta = _dict(obj.get("status")), _dict(obj.get("metadata"))
    transitions = [k8s_time(_str(c.get("lastTransitionTime"), 64)) for c in _dicts(status.get("conditions"))]
    status_writes = [
        k8s_time(_str(e.get("time"), 64)) for e in _dicts(meta.get("managedFields")) if e.get("subresource") == "status"
    ]
    for times in (transitions, status_writes, [k8s_time(_str(meta.get("creationTimestamp"), 64))]):
        known = [t for t in times if t is not None and t.tzinfo is not None]
        if known:
            return max(known)
    return None
