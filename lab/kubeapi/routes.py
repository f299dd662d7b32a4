"""URL → what is being addressed: a discovery document, or a resource (type, version, namespace, name, subresource)."""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Registry, ResourceType
from .status import resource_not_found

SUBRESOURCES = ("status",)


@dataclass(frozen=True)
class ResourceRoute:
    rt: ResourceType
    version: str
    namespace: str | None  # None: cluster-scoped type, or a list across all namespaces
    name: str | None
    subresource: str | None = None


@dataclass(frozen=True)
class DiscoveryRoute:
    what: str  # version | api | apis | group | resources
    group: str = ""
    version: str = ""


def parse(path: str, registry: Registry) -> ResourceRoute | DiscoveryRoute:
    parts = [p for p in path.split("/") if p]
    if parts == ["version"]:
        return DiscoveryRoute("version")
    if parts == ["api"]:
        return DiscoveryRoute("api")
    if parts == ["apis"]:
        return DiscoveryRoute("apis")
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 2:
        if len(parts) == 2:
            return DiscoveryRoute("group", parts[1])
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise resource_not_found()
    if not rest:
        return DiscoveryRoute("resources", group, version)
    return _resource(group, version, rest, registry)


def _resource(group: str, version: str, rest: list[str], registry: Registry) -> ResourceRoute:
    namespace = None
    # /namespaces/{ns}/{plural}/... addresses a namespaced type; /namespaces/{name}[/status] is the Namespace itself.
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise resource_not_found()
    rt = registry.lookup(group, version, rest[0])
    if rt is None:
        raise resource_not_found()
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and (sub not in SUBRESOURCES or not rt.has_status_subresource):
        raise resource_not_found()
    if rt.namespaced and namespace is None and name is not None:
        raise resource_not_found()
    if not rt.namespaced and namespace is not None:
        raise resource_not_found()
    return ResourceRoute(rt, version, namespace, name, sub)


def kube_verb(method: str, route: ResourceRoute | DiscoveryRoute | None, watch: bool) -> str:
    if not isinstance(route, ResourceRoute):
        return "get" if method == "GET" else ""
    if method == "GET":
        if route.name is None:
            return "watch" if watch else "list"
        return "get"
    collection = route.name is None
    return {
        "POST": "create" if collection else "",
        "PUT": "" if collection else "update",
        "PATCH": "" if collection else "patch",
        "DELETE": "deletecollection" if collection else "delete",
    }.get(method, "")
