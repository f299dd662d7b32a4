"""Small builders of the migration assistant's plain data (MeshInput, WorkloadGroup, Grant, Route, Request), so unit
tests state a mesh in a few lines instead of collecting one."""

from __future__ import annotations

from apps.mesh.models import TrafficTarget
from apps.policies.model import (
    HTTP,
    SMI,
    TCP,
    MeshInput,
    NamespaceInfo,
    Port,
    Request,
    ServiceInfo,
    SplitInfo,
    WorkloadGroup,
)
from apps.policies.smi_access import Grant, Identity, Route


def sa(text: str) -> Identity:
    namespace, _, name = text.partition("/")
    return Identity(namespace, name)


def group(
    text: str,
    *,
    labels: dict[str, str] | None = None,
    ports: tuple = ((8080, HTTP),),
    kind: str = "Deployment",
    name: str | None = None,
    meshed: bool = True,
    annotations: dict[str, str] | None = None,
    istio_protocols: dict[int, str] | None = None,
) -> WorkloadGroup:
    """`group("ns/sa")`: a Deployment named after its service account, labelled app=<sa>, with an HTTP port 8080."""
    identity = sa(text)
    port_list = tuple(
        Port(number, proto, (istio_protocols or {}).get(number, proto), (f"{identity.name}",))
        for number, proto in ports
    )
    return WorkloadGroup(
        namespace=identity.namespace,
        kind=kind,
        name=name or identity.name,
        service_account=identity.name,
        labels=tuple(sorted((labels if labels is not None else {"app": identity.name}).items())),
        meshed=meshed,
        pods=(f"{name or identity.name}-0",),
        ports=port_list,
        annotations=tuple(sorted((annotations or {}).items())),
    )


def http(group_name: str, match: str = "m", path: str = "", methods: tuple = (), headers: tuple = ()) -> Route:
    return Route("HTTPRouteGroup", group_name, match, path, tuple(methods), tuple(headers))


def tcp(group_name: str, *ports: int) -> Route:
    return Route("TCPRoute", group_name, ports=tuple(str(p) for p in ports))


def grants(target: str, destination: str, sources: list[str], routes: list[Route], ignored: str = "") -> list[Grant]:
    """The grants one TrafficTarget `ns/name` makes (one per source)."""
    namespace, _, name = target.partition("/")
    row = TrafficTarget(namespace=namespace, name=name)
    dest = sa(destination)
    return [Grant(row, sa(s), dest, tuple(routes), ignored) for s in dict.fromkeys(sources)]


def mesh(
    groups: list[WorkloadGroup],
    grant_list: list[Grant] = (),
    *,
    mode: str = SMI,
    namespaces: list[NamespaceInfo] | None = None,
    services: list[ServiceInfo] = (),
    splits: list[SplitInfo] = (),
    meshconfig: dict | None = None,
    edges: tuple = (),
    **policy_api: tuple,
) -> MeshInput:
    """`policy_api`: MeshInput's ingress_backends, egresses, upstream_settings, retries, ingresses."""
    if namespaces is None:
        names = sorted({g.namespace for g in groups} | {g.destination.namespace for g in grant_list})
        namespaces = [NamespaceInfo(n, True, True, False, "osm") for n in names]
    return MeshInput(
        cluster="unit",
        mode=mode,
        mesh_name="osm",
        namespaces=tuple(namespaces),
        groups=tuple(groups),
        services=tuple(services),
        grants=tuple(grant_list),
        splits=tuple(splits),
        meshconfig=meshconfig if meshconfig is not None else {"traffic": {"enablePermissiveTrafficPolicyMode": False}},
        edges=tuple(edges),
        **{k: tuple(v) for k, v in policy_api.items()},
    )


def service(text: str, selector: dict[str, str] | None = None, ports: tuple = ((8080, 8080, "http"),)) -> ServiceInfo:
    """`service("ns/name")`: selector app=<name>, ports as (port, targetPort, appProtocol)."""
    namespace, _, name = text.partition("/")
    return ServiceInfo(
        namespace,
        name,
        tuple(sorted((selector if selector is not None else {"app": name}).items())),
        tuple({"name": f"p{p}", "port": p, "targetPort": t, "appProtocol": a} for p, t, a in ports),
    )


def meshconfig(*, egress: bool | None = None, **flags: bool) -> dict:
    """SMI mode, `traffic.enableEgress` when given, and feature flags (enableEgressPolicy=True, ...)."""
    traffic: dict = {"enablePermissiveTrafficPolicyMode": False}
    if egress is not None:
        traffic["enableEgress"] = egress
    return {"traffic": traffic, "featureFlags": dict(flags)}


def request(
    source: str | None,
    destination: WorkloadGroup,
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    port: int | None = None,
    protocol: str = HTTP,
) -> Request:
    return Request(
        sa(source) if source else None,
        destination,
        port if port is not None else destination.ports[0].number,
        protocol,
        method if protocol == HTTP else "",
        path if protocol == HTTP else "",
        tuple((headers or {}).items()),
    )


def tcp_request(source: str | None, destination: WorkloadGroup, port: int) -> Request:
    return request(source, destination, port=port, protocol=TCP)
