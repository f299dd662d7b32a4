"""OSM's own policy API read against the snapshot: how a service is reached from outside (Ingress host/path ->
IngressBackend -> port), which UpstreamTrafficSettings and Retries apply to it, and the mesh's egress and
certificates. The service page, the Mesh page and the checks (`checks.py`) share these rules, which follow OSM v1.2.4:

- An IngressBackend admits a backend Service when a `backends[]` entry names it and its `port.number` is the
  Service port's *target* port (`pkg/policy` GetIngressBackendPolicy compares it with MeshService.TargetPort); OSM
  builds ingress policy from IngressBackends only (`pkg/catalog/ingress.go`), so an Ingress path to a meshed backend
  that none admits is refused by the backend's sidecar. `http` admits any client of the source IPs (the identity of
  plain HTTP cannot be verified); `https` is mTLS, the client certificate checked unless `skipClientCertValidation`.
- An UpstreamTrafficSetting applies to the Service whose FQDN `<name>.<namespace>.svc.cluster.local` is its host,
  in its own namespace (`pkg/policy` GetUpstreamTrafficSetting).
- A Retry applies to what its source service account's sidecars send to each destination Service
  (ListRetryPolicies), and only with the MeshConfig's `featureFlags.enableRetryPolicy`; Egress only with
  `featureFlags.enableEgressPolicy`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from apps.clusters.models import Cluster
from apps.mesh.models import (
    Egress,
    Ingress,
    IngressBackend,
    MeshRootCertificate,
    MeshState,
    Retry,
    Service,
    UpstreamTrafficSetting,
)

FQDN_SUFFIX = "svc.cluster.local"
INGRESS_PROTOCOLS = ("http", "https")  # what OSM's webhook accepts for an IngressBackend port
HTTP_ROUTE_GROUP_API = "specs.smi-spec.io/v1alpha4"  # the apiGroup an Egress match must name (OSM's webhook)
PROVIDER_NAMES = {"tresor": "Tresor", "certmanager": "cert-manager", "cert-manager": "cert-manager", "vault": "Vault"}


def service_fqdn(namespace: str, name: str) -> str:
    return f"{name}.{namespace}.{FQDN_SUFFIX}"


def fqdn_service(host: str) -> tuple[str, str] | None:
    """(namespace, name) of a Service FQDN as OSM writes it (`service_fqdn`), None for anything else."""
    parts = host.split(".")
    if len(parts) == 5 and ".".join(parts[2:]) == FQDN_SUFFIX and all(parts[:2]):
        return parts[1], parts[0]
    return None


def provider_name(key: str) -> str:
    """How a certificate provider is called: the controller's `--certificate-manager` value or the key a
    MeshRootCertificate's spec.provider sets ("" stays "")."""
    return PROVIDER_NAMES.get(key.strip().lower(), key)


def flag(meshconfig: dict | None, *path: str) -> bool | None:
    """A MeshConfig boolean at `path` (None: no MeshConfig, or not a boolean there)."""
    value: object = meshconfig or {}
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, bool) else None


def target_port(port: dict) -> int | str | None:
    """A Service port's target port as OSM's MeshService has it: the targetPort, else the port itself. A named
    targetPort resolves per pod (its container port of that name), which the snapshot does not keep."""
    target = port.get("targetPort")
    return port.get("port") if target in (None, "", 0) else target


def service_port(service: Service, ref: object) -> dict | None:
    """The Service port an Ingress backend names: by number (an int) or by name (a str)."""
    for port in service.ports or []:
        if isinstance(port, dict) and ((isinstance(ref, int) and port.get("port") == ref) or port.get("name") == ref):
            return port
    return None


def admits(backend: dict, name: str, target: object) -> bool:
    """Whether an IngressBackend's `backends[]` entry admits Service `name` on this target port. A named target
    port cannot be compared with a number here, so it counts (the check says nothing it cannot know)."""
    return backend.get("name") == name and (backend.get("port") == target or isinstance(target, str))


@dataclass(frozen=True)
class Admission:
    """One IngressBackend entry admitting a Service: on which port, over what, from whom."""

    policy: IngressBackend
    port: int | None
    protocol: str
    tls: dict | None
    sources: list[dict]

    @property
    def mtls(self) -> bool:
        return self.protocol.lower() == "https"

    @property
    def client_certificate_checked(self) -> bool:
        return self.mtls and not (self.tls or {}).get("skipClientCertValidation", False)

    @property
    def transport(self) -> str:
        if not self.mtls:
            return "HTTP (no TLS: the ingress controller's identity cannot be checked, only its IP)"
        sni = [h for h in (self.tls or {}).get("sniHosts") or [] if isinstance(h, str)]
        server_names = f", SNI {', '.join(sni)}" if sni else ""
        if self.client_certificate_checked:
            return f"HTTPS with mTLS, client certificate validated{server_names}"
        return f"HTTPS, client certificate not validated (skipClientCertValidation){server_names}"


@dataclass(frozen=True)
class IngressRoute:
    """One Ingress path to a Service, and the IngressBackends that let it through the backend's sidecar."""

    ingress: Ingress
    host: str
    path: str
    path_type: str
    port: object  # as the Ingress names it: number or name
    target: object  # the Service port's target port (None: the Service has no such port)
    admitted_by: list[Admission]

    @property
    def address(self) -> str:
        return f"{self.host or '*'}{self.path or '/'}"


@dataclass(frozen=True)
class ServicePolicies:
    """What OSM's policy API says about one Service, for its page."""

    routes: list[IngressRoute] = field(default_factory=list)  # Ingress paths to it
    # IngressBackends admitting it that no Ingress path of the snapshot uses (a controller may still route to it).
    unrouted: list[Admission] = field(default_factory=list)
    upstream_settings: list[UpstreamTrafficSetting] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    retry_policy_enabled: bool | None = None
    meshed: bool = False
    host: str = ""  # the FQDN an UpstreamTrafficSetting names it by
    # IngressBackends that admit traffic from this Service's pods (it is an ingress controller's Service).
    source_of: list[IngressBackend] = field(default_factory=list)

    @property
    def setting_rows(self) -> list[tuple[UpstreamTrafficSetting, list[str], list[tuple[str, str]]]]:
        """Each setting with its connection limits and its rate limits, in words."""
        return [(s, connection_limits(s), rate_limits(s)) for s in self.upstream_settings]

    @property
    def retry_rows(self) -> list[tuple[Retry, str, str]]:
        """Each Retry with who retries and how."""
        return [(r, retry_source(r), retry_text(r)) for r in self.retries]

    @property
    def reachable(self) -> bool:
        return any(r.admitted_by for r in self.routes) or bool(self.unrouted)

    @property
    def not_reachable_reason(self) -> str:
        """Why no request from outside gets in ("" when some does)."""
        if self.reachable:
            return ""
        if self.routes and self.meshed:
            return (
                "Not reachable from outside: an Ingress routes to it, but no IngressBackend admits the ingress "
                "controller, so its sidecar refuses that traffic (OSM 1.2 builds ingress policy from IngressBackends "
                "only)."
            )
        if self.routes:
            return "Reachable through its Ingress as a plain Service: its pods have no sidecar to refuse it."
        return "Not reachable from outside the mesh: no Ingress routes to it and no IngressBackend admits it."


def admissions(policies: Iterable[IngressBackend], service: Service, target: object) -> list[Admission]:
    found = []
    for policy in policies:
        if policy.namespace != service.namespace:
            continue
        for backend in policy.backends or []:
            if isinstance(backend, dict) and admits(backend, service.name, target):
                found.append(
                    Admission(
                        policy,
                        backend.get("port"),
                        str(backend.get("protocol") or ""),
                        backend.get("tls"),
                        policy.sources,
                    )
                )
    return found


def service_policies(cluster: Cluster, service: Service, state: MeshState | None = None) -> ServicePolicies:
    """The ingress routes, IngressBackends, UpstreamTrafficSettings and Retries of one Service, and the IngressBackends
    it is a source of: a query per kind, whatever the mesh's size."""
    ns, name = service.namespace, service.name
    policies = list(IngressBackend.objects.filter(cluster=cluster, namespace=ns))
    routes: list[IngressRoute] = []
    used: set[int] = set()  # IngressBackends some Ingress path goes through
    for ingress in Ingress.objects.filter(cluster=cluster, namespace=ns):
        for route in ingress.routes or []:
            if not isinstance(route, dict) or route.get("service") != name:
                continue
            port = service_port(service, route.get("port"))
            target = target_port(port) if port else None
            admitted = admissions(policies, service, target) if port else []
            used.update(a.policy.pk for a in admitted)
            routes.append(
                IngressRoute(
                    ingress,
                    str(route.get("host") or ""),
                    str(route.get("path") or ""),
                    str(route.get("path_type") or ""),
                    route.get("port"),
                    target,
                    admitted,
                )
            )
    targets = dict.fromkeys(target_port(p) for p in service.ports or [] if isinstance(p, dict))
    every = [a for target in targets for a in admissions(policies, service, target)]
    unrouted = list({(a.policy.pk, a.port, a.protocol): a for a in every if a.policy.pk not in used}.values())
    fqdn = service_fqdn(ns, name)
    settings = list(UpstreamTrafficSetting.objects.filter(cluster=cluster, namespace=ns, host=fqdn).order_by("name"))
    retries = [
        r
        for r in Retry.objects.filter(cluster=cluster).order_by("namespace", "name")
        if any(
            isinstance(d, dict) and d.get("kind") == "Service" and d.get("namespace") == ns and d.get("name") == name
            for d in r.destinations or []
        )
    ]
    source_of = [
        p
        for p in IngressBackend.objects.filter(cluster=cluster).order_by("namespace", "name")
        if any(
            isinstance(src, dict)
            and src.get("kind") == "Service"
            and (src.get("namespace"), src.get("name")) == (ns, name)
            for src in p.sources or []
        )
    ]
    if state is None:
        state = MeshState.objects.filter(cluster=cluster).first()
    return ServicePolicies(
        routes=routes,
        unrouted=unrouted,
        upstream_settings=settings,
        retries=retries,
        retry_policy_enabled=flag(state.meshconfig if state else None, "featureFlags", "enableRetryPolicy"),
        meshed=service.pods_meshed > 0,
        host=fqdn,
        source_of=source_of,
    )


# ---------------------------------------------------------------------------------------------------------------
# Describing the settings in words (their values are cluster strings: the templates escape them)


def _limit(settings: dict, key: str, words: str) -> str:
    value = settings.get(key) if isinstance(settings, dict) else None
    return f"{words} {value}" if value not in (None, "") else ""


def connection_limits(setting: UpstreamTrafficSetting) -> list[str]:
    """The circuit-breaking and timeout settings, one phrase each: 'at most 100 connections', ..."""
    conn = setting.connection_settings if isinstance(setting.connection_settings, dict) else {}
    tcp = conn.get("tcp") if isinstance(conn.get("tcp"), dict) else {}
    http = conn.get("http") if isinstance(conn.get("http"), dict) else {}
    phrases = [
        _limit(tcp, "maxConnections", "at most connections:"),
        _limit(tcp, "connectTimeout", "connect timeout:"),
        _limit(http, "maxRequests", "at most requests in flight:"),
        _limit(http, "maxPendingRequests", "at most pending requests:"),
        _limit(http, "maxRequestsPerConnection", "at most requests per connection:"),
        _limit(http, "maxRetries", "at most retries in flight:"),
    ]
    return [p for p in phrases if p]


def _rate(local: object, what: str) -> str:
    if not isinstance(local, dict):
        return ""
    amount = local.get("requests" if what == "requests" else "connections")
    if amount in (None, ""):
        return ""
    text = f"{amount} {what} per {local.get('unit') or '?'}"
    if local.get("burst") not in (None, ""):
        text += f", burst {local.get('burst')}"
    if what == "requests":
        text += f", then HTTP {local.get('responseStatusCode') or 429}"
    return text


def rate_limits(setting: UpstreamTrafficSetting) -> list[tuple[str, str]]:
    """(scope, limit) pairs: the whole upstream's TCP and HTTP local rate limits, then each route's."""
    rate = setting.rate_limit if isinstance(setting.rate_limit, dict) else {}
    local = rate.get("local") if isinstance(rate.get("local"), dict) else {}
    out = []
    if text := _rate(local.get("tcp"), "connections"):
        out.append(("every connection", text))
    if text := _rate(local.get("http"), "requests"):
        out.append(("every request", text))
    for route in setting.http_routes or []:
        if not isinstance(route, dict):
            continue
        route_rate = route.get("rateLimit") if isinstance(route.get("rateLimit"), dict) else {}
        if text := _rate(route_rate.get("local"), "requests"):
            out.append((f"route {route.get('path', '')}", text))
    return out


def retry_text(retry: Retry) -> str:
    """'on 5xx, up to 3 times, 1s per try, backoff from 100ms' from a Retry's retryPolicy."""
    policy = retry.retry_policy if isinstance(retry.retry_policy, dict) else {}
    parts = [f"on {policy.get('retryOn') or '?'}", f"up to {policy.get('numRetries', '?')} times"]
    if policy.get("perTryTimeout"):
        parts.append(f"{policy['perTryTimeout']} per try")
    if policy.get("retryBackoffBaseInterval"):
        parts.append(f"backoff from {policy['retryBackoffBaseInterval']}")
    return ", ".join(parts)


def retry_source(retry: Retry) -> str:
    source = retry.source if isinstance(retry.source, dict) else {}
    return f"{source.get('kind') or '?'} {source.get('namespace', '')}/{source.get('name', '')}"


# ---------------------------------------------------------------------------------------------------------------
# The Mesh page: egress and certificates


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration_seconds(text: object) -> float | None:
    """A Go duration ("24h", "1h30m", "90s") in seconds, None when it is not one (as time.ParseDuration refuses)."""
    if not isinstance(text, str) or not text.strip():
        return None
    value = text.strip()
    sign = -1 if value.startswith("-") else 1
    value = value.lstrip("+-")
    if value == "0":
        return 0.0
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


@dataclass(frozen=True)
class EgressRow:
    policy: Egress

    @property
    def sources_text(self) -> list[str]:
        return [f"{s.get('kind', '')} {s.get('namespace', '')}/{s.get('name', '')}" for s in self.policy.sources or []]

    @property
    def ports_text(self) -> list[str]:
        return [f"{p.get('number')}/{p.get('protocol') or '?'}" for p in self.policy.ports or [] if isinstance(p, dict)]

    @property
    def matches_text(self) -> list[str]:
        return [f"{m.get('kind', '')} {m.get('name', '')}" for m in self.policy.matches or [] if isinstance(m, dict)]


@dataclass(frozen=True)
class Certificates:
    """The mesh's certificate set-up as the Mesh page shows it."""

    provider: str  # the controller's --certificate-manager, named ("" when unknown)
    validity: str  # MeshConfig certificate.serviceCertValidityDuration, as written
    key_bits: object
    ingress_gateway: dict  # MeshConfig certificate.ingressGateway, as written ({} when absent)
    roots: list[MeshRootCertificate]
    roots_enabled: bool | None  # the controller's --enable-mesh-root-certificate

    @property
    def root_rows(self) -> list[tuple[MeshRootCertificate, str, str]]:
        """Each MeshRootCertificate with its provider's name and where its root comes from."""
        return [(r, provider_name(r.provider), root_provider_detail(r)) for r in self.roots]

    @property
    def roots_note(self) -> str:
        """Whether OSM reads the MeshRootCertificates ("" when it does, or there is nothing to say)."""
        if self.roots and self.roots_enabled is False:
            return (
                "OSM does not use these: osm-controller runs with --enable-mesh-root-certificate=false, so its "
                "--certificate-manager provider issues the certificates."
            )
        return ""


def certificates(cluster: Cluster, state: MeshState | None) -> Certificates:
    meshconfig = state.meshconfig if state and isinstance(state.meshconfig, dict) else {}
    cert = meshconfig.get("certificate") if isinstance(meshconfig.get("certificate"), dict) else {}
    gateway = cert.get("ingressGateway")
    return Certificates(
        provider=provider_name(state.certificate_provider) if state else "",
        validity=str(cert.get("serviceCertValidityDuration") or ""),
        key_bits=cert.get("certKeyBitSize"),
        ingress_gateway=gateway if isinstance(gateway, dict) else {},
        roots=list(MeshRootCertificate.objects.filter(cluster=cluster).order_by("namespace", "name")),
        roots_enabled=state.mesh_root_certificates_enabled if state else None,
    )


def root_provider_detail(root: MeshRootCertificate) -> str:
    """Where a root certificate comes from, in one line: the Tresor CA's Secret, the cert-manager issuer, the Vault."""
    spec = root.provider_spec if isinstance(root.provider_spec, dict) else {}
    if root.provider == "tresor":
        ref = ((spec.get("ca") or {}) if isinstance(spec.get("ca"), dict) else {}).get("secretRef")
        ref = ref if isinstance(ref, dict) else {}
        return f"CA in Secret {ref.get('namespace', '')}/{ref.get('name', '')}"
    if root.provider == "certManager":
        return f"{spec.get('issuerKind', '')} {spec.get('issuerName', '')} ({spec.get('issuerGroup', '')})"
    if root.provider == "vault":
        return (
            f"{spec.get('protocol', '')}://{spec.get('host', '')}:{spec.get('port', '')}, role {spec.get('role', '')}"
        )
    return ""
