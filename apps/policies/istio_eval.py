"""Does Istio let this request through? AuthorizationPolicy evaluation as a sidecar applies it.

From Istio's reference (security/v1 AuthorizationPolicy) and its security concepts page:
- A policy applies to the workloads of its namespace that its `selector` picks (no selector: all of them); a policy
  in the root namespace applies in every namespace.
- DENY before ALLOW: a request that any DENY policy matches is denied; else, with no ALLOW policy for the workload it
  is allowed; else it is allowed when one ALLOW policy matches, and denied otherwise. `spec: {}` (ALLOW without
  rules) matches nothing: "allow-nothing". `rules: [{}]` matches everything. AUDIT changes nothing.
- A rule matches when one of its `from` sources, one of its `to` operations and all its `when` conditions match; the
  fields of a source or an operation are ANDed, the values of a field ORed.
- Values: exact `abc`, prefix `abc*`, suffix `*abc`, presence `*` (not empty); `ports` and condition keys exact.
- `principals` and `namespaces` come from the peer certificate: a plaintext request has neither.
- TCP traffic has no HTTP attributes: an ALLOW rule with any HTTP-only field (methods, paths, hosts, request
  principals, `request.*` conditions) is dropped, so it never allows; in a DENY rule those fields count as matching.

- `ipBlocks` and `remoteIpBlocks` match the caller's address (a sidecar sees no proxy in front of it, so both are the
  connection's source); a request whose address is unknown is in none of them.
- PeerAuthentication: STRICT in the namespaces the bundle covers refuses plaintext, except on the ports a
  workload-selecting PeerAuthentication sets PERMISSIVE (`portLevelMtls`, the workload's port).

Not modelled (the assistant never generates them; a policy using them raises `Unsupported`): CUSTOM, hosts,
serviceAccounts, JWT claims, targetRef(s) (which attach a policy to a gateway, not a sidecar).

Out of the mesh (`IstioEgress`): with the mesh's `outboundTrafficPolicy` ALLOW_ANY a sidecar passes a request to an
unknown destination through; with REGISTRY_ONLY it reaches only hosts (or addresses) of a ServiceEntry exported to the
caller's namespace (`exportTo`: absent or `*` everywhere, `.` its own namespace, else the namespaces listed), on one of
its ports, and answers the rest with a 502 (BlackHoleCluster).
Request principals are modelled as absent (no JWT). Paths are compared as given: Istio normalizes them first, which
only matters for paths with `..`, `//` or escaped characters.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import HTTP, TCP, ExternalRequest, Request, principal
from .policy_api import in_range
from .regex import full_match, istio_match

HTTP_ONLY_OPERATION = ("methods", "notMethods", "paths", "notPaths", "hosts", "notHosts")
UNSUPPORTED_SOURCE = ("serviceAccounts", "notServiceAccounts")
ALLOW_ANY, REGISTRY_ONLY = "ALLOW_ANY", "REGISTRY_ONLY"


class Unsupported(ValueError):
    """A policy uses a field this evaluator does not model."""


@dataclass(frozen=True)
class IstioVerdict:
    allowed: bool
    reason: str
    policy: str = ""  # "namespace/name" of the policy that decided
    rule: int | None = None  # its rule's index


def _name(policy: dict) -> str:
    meta = policy.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _any(forms: list, value: str | None) -> bool:
    return any(istio_match(str(f), value) for f in forms)


class IstioPolicies:
    """A set of AuthorizationPolicies (as dicts) and what Istio's sidecars make of them."""

    def __init__(
        self,
        policies: list[dict],
        root_namespace: str = "istio-system",
        strict_namespaces: set[str] | frozenset[str] = frozenset(),
        sidecars: set[str] | None = None,
        permissive_ports: dict[str, frozenset[int]] | None = None,
    ):
        """`strict_namespaces`: where a STRICT PeerAuthentication refuses plaintext; `sidecars`: the keys of the
        workload groups that run an Istio sidecar (None: all); `permissive_ports`: per workload group key, the ports
        a PeerAuthentication sets PERMISSIVE."""
        self.policies = list(policies)
        self.root_namespace = root_namespace
        self.strict_namespaces = frozenset(strict_namespaces)
        self.sidecars = sidecars
        self.permissive_ports = permissive_ports or {}
        self._applicable: dict[tuple[str, tuple], list[dict]] = {}
        for policy in self.policies:
            spec = policy.get("spec") or {}
            action = spec.get("action", "ALLOW")
            if action == "CUSTOM":
                raise Unsupported(f"{_name(policy)}: the CUSTOM action")
            if spec.get("targetRef") or spec.get("targetRefs"):
                raise Unsupported(f"{_name(policy)}: targetRef")

    def applicable(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        key = (namespace, tuple(sorted(labels.items())))
        found = self._applicable.get(key)
        if found is None:
            found = []
            for policy in self.policies:
                where = (policy.get("metadata") or {}).get("namespace", "")
                if where not in (namespace, self.root_namespace):
                    continue
                selector = ((policy.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                if all(labels.get(k) == v for k, v in selector.items()):
                    found.append(policy)
            self._applicable[key] = found
        return found

    def evaluate(self, request: Request) -> IstioVerdict:
        group = request.destination
        if self.sidecars is not None and group.key not in self.sidecars:
            return IstioVerdict(True, f"{group} has no Istio sidecar: auto mTLS sends plaintext and no policy applies")
        caller = request.istio_source
        who = principal(caller) if caller is not None else None
        if (
            who is None
            and group.namespace in self.strict_namespaces
            and request.port not in self.permissive_ports.get(group.key, ())
        ):
            return IstioVerdict(False, "STRICT mTLS refuses a plaintext request")
        port = group.port(request.port)
        tcp = request.protocol == TCP or (port is not None and port.istio_protocol == TCP)
        policies = self.applicable(group.namespace, group.label_dict)
        source_ns = caller.namespace if caller is not None else None
        for policy in policies:
            spec = policy.get("spec") or {}
            if spec.get("action") != "DENY":
                continue
            for index, rule in enumerate(spec.get("rules") or []):
                if _rule_matches(rule or {}, request, who, source_ns, tcp, deny=True):
                    return IstioVerdict(
                        False, f"DENY policy {_name(policy)} rule {index + 1} matches", _name(policy), index
                    )
        allows = [p for p in policies if (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"]
        if not allows:
            return IstioVerdict(True, "no ALLOW policy selects the workload: Istio allows")
        for policy in allows:
            for index, rule in enumerate((policy.get("spec") or {}).get("rules") or []):
                if _rule_matches(rule or {}, request, who, source_ns, tcp, deny=False):
                    return IstioVerdict(
                        True, f"ALLOW policy {_name(policy)} rule {index + 1} matches", _name(policy), index
                    )
        names = ", ".join(_name(p) for p in allows)
        return IstioVerdict(False, f"no rule of the ALLOW policies ({names}) matches")


def _http_only(rule: dict) -> bool:
    for item in rule.get("to") or []:
        operation = (item or {}).get("operation") or {}
        if any(operation.get(f) for f in HTTP_ONLY_OPERATION):
            return True
    for item in rule.get("from") or []:
        source = (item or {}).get("source") or {}
        if source.get("requestPrincipals") or source.get("notRequestPrincipals"):
            return True
    return any(str((c or {}).get("key", "")).startswith("request.") for c in rule.get("when") or [])


def _rule_matches(rule: dict, request: Request, who: str | None, source_ns: str | None, tcp: bool, deny: bool) -> bool:
    if tcp and not deny and _http_only(rule):
        return False
    sources = rule.get("from") or []
    address = request.address
    if sources and not any(_source_matches((s or {}).get("source") or {}, who, source_ns, address) for s in sources):
        return False
    operations = rule.get("to") or []
    if operations and not any(_operation_matches((o or {}).get("operation") or {}, request, tcp) for o in operations):
        return False
    return all(_condition_matches(c or {}, request, who, source_ns, tcp) for c in rule.get("when") or [])


def _in_blocks(blocks: list, address: str) -> bool:
    return any(in_range(address, str(b)) or str(b) == address for b in blocks) if address else False


def _source_matches(source: dict, who: str | None, namespace: str | None, address: str = "") -> bool:
    for field in UNSUPPORTED_SOURCE:
        if source.get(field):
            raise Unsupported(f"source.{field}")
    for field in ("ipBlocks", "remoteIpBlocks"):
        if source.get(field) and not _in_blocks(source[field], address):
            return False
    for field in ("notIpBlocks", "notRemoteIpBlocks"):
        if source.get(field) and _in_blocks(source[field], address):
            return False
    if source.get("principals") and not _any(source["principals"], who):
        return False
    if source.get("notPrincipals") and _any(source["notPrincipals"], who):
        return False
    if source.get("namespaces") and not _any(source["namespaces"], namespace):
        return False
    if source.get("notNamespaces") and _any(source["notNamespaces"], namespace):
        return False
    # No JWT: `requestPrincipals` never matches, and an absent request principal is in no `notRequestPrincipals`.
    return not source.get("requestPrincipals")


def _operation_matches(operation: dict, request: Request, tcp: bool) -> bool:
    if operation.get("hosts") or operation.get("notHosts"):
        raise Unsupported("operation.hosts")
    port = str(request.port)
    if operation.get("ports") and port not in [str(p) for p in operation["ports"]]:
        return False
    if operation.get("notPorts") and port in [str(p) for p in operation["notPorts"]]:
        return False
    if tcp:
        return True  # HTTP fields: a DENY rule counts them as matching (an ALLOW rule with them was dropped)
    if operation.get("methods") and not _any(operation["methods"], request.method):
        return False
    if operation.get("notMethods") and _any(operation["notMethods"], request.method):
        return False
    if operation.get("paths") and not _any(operation["paths"], request.path):
        return False
    return not (operation.get("notPaths") and _any(operation["notPaths"], request.path))


def _condition_matches(condition: dict, request: Request, who: str | None, namespace: str | None, tcp: bool) -> bool:
    key = str(condition.get("key", ""))
    if key.startswith("request.headers[") and key.endswith("]"):
        if tcp:
            return True
        value = request.header(key[len("request.headers[") : -1])
    elif key == "source.principal":
        value = who
    elif key == "source.namespace":
        value = namespace
    elif key == "destination.port":
        value = str(request.port)
    else:
        raise Unsupported(f"condition {key}")
    values, not_values = condition.get("values") or [], condition.get("notValues") or []
    if values and not _any(values, value):
        return False
    return not (not_values and _any(not_values, value))


class IstioEgress:
    """What Istio's sidecars do with a request out of the mesh: the mesh's outbound traffic policy and the
    ServiceEntries (as dicts)."""

    def __init__(self, mode: str, service_entries: list[dict], virtual_services: list[dict] = ()):
        self.mode = mode
        self.entries = list(service_entries)
        self.virtual_services = list(virtual_services)

    def visible(self, entry: dict, namespace: str) -> bool:
        export = (entry.get("spec") or {}).get("exportTo") or ["*"]
        own = (entry.get("metadata") or {}).get("namespace", "")
        return "*" in export or namespace in export or ("." in export and namespace == own)

    def entry_for(self, request: ExternalRequest) -> dict | None:
        host = request.host.lower()
        for entry in self.entries:
            spec = entry.get("spec") or {}
            if not self.visible(entry, request.source.namespace):
                continue
            if request.port not in [p.get("number") for p in spec.get("ports") or []]:
                continue
            hosts = [str(h).lower() for h in spec.get("hosts") or []]
            named = host and any(h == host or (h.startswith("*.") and host.endswith(h[1:])) for h in hosts)
            addressed = request.address and any(in_range(request.address, str(a)) for a in spec.get("addresses") or [])
            if named or addressed:
                return entry
        return None

    def _http_routes(self, request: ExternalRequest) -> IstioVerdict | None:
        """A plain-HTTP request to a host a VirtualService (visible to the source) routes: the first HTTP route whose
        match takes it, or 404 when none does (None: no VirtualService for the host). Regexes are RE2 whole-value
        matches, as Envoy applies them."""
        host = request.host.lower()
        for vs in self.virtual_services:
            spec = vs.get("spec") or {}
            if host not in [str(h).lower() for h in spec.get("hosts") or []] or not self.visible(
                vs, request.source.namespace
            ):
                continue
            for route in spec.get("http") or []:
                if any(_http_match(m, request) for m in route.get("match") or [{}]):
                    return IstioVerdict(
                        True, f"VirtualService {_name(vs)} routes it (route {route.get('name', '?')})", _name(vs)
                    )
            return IstioVerdict(False, f"no HTTP route of VirtualService {_name(vs)} matches: the sidecar answers 404")
        return None

    def evaluate(self, request: ExternalRequest) -> IstioVerdict:
        entry = self.entry_for(request)
        if entry is not None and request.protocol == HTTP:
            routed = self._http_routes(request)
            if routed is not None:
                return routed
        if entry is not None:
            return IstioVerdict(
                True, f"ServiceEntry {_name(entry)} registers it for {request.source.namespace}", _name(entry)
            )
        if self.mode == REGISTRY_ONLY:
            return IstioVerdict(
                False,
                f"REGISTRY_ONLY: no ServiceEntry for it is exported to {request.source.namespace}, so the sidecar "
                "answers 502 (BlackHoleCluster)",
            )
        return IstioVerdict(True, "ALLOW_ANY: the sidecar passes a request to an unknown destination through")


def _string_match(rule: dict, value: str | None) -> bool:
    """An Istio StringMatch (exact, prefix or regex) against a value (None: absent)."""
    if value is None:
        return False
    if "exact" in rule:
        return value == rule["exact"]
    if "prefix" in rule:
        return value.startswith(rule["prefix"])
    if "regex" in rule:
        return full_match(rule["regex"], value)
    return True


def _http_match(match: dict, request: ExternalRequest) -> bool:
    """A VirtualService HTTPMatchRequest: every condition it sets holds (port, uri, method, headers)."""
    if "port" in match and match["port"] != request.port:
        return False
    if "uri" in match and not _string_match(match["uri"], request.path or "/"):
        return False
    if "method" in match and not _string_match(match["method"], request.method):
        return False
    return all(_string_match(rule, request.header(name)) for name, rule in (match.get("headers") or {}).items())
