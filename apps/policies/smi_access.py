"""Who may talk to whom: SMI access policy read from the snapshot, as plain data.

- `load_policy(cluster)`: the policy mode and every TrafficTarget turned into grants (source service account →
  destination service account, with the routes it allows, or why OSM ignores it). `load_policy_as_of(cluster, when)`:
  the same from the configuration history's versions at a past time.
- `access_matrix(policy)`: the grants grouped by source and destination, for the matrix on the policies page.
- `pair_policy(policy, sources, destinations)`: allowed / denied / partly between two sets of service accounts (the
  graph's edges).
- `can_talk(cluster, source, destination)`: "can A talk to B?" between services, workloads or pods: yes/no with the
  TrafficTarget and routes that allow it, or what is missing. Permissive mode allows all in-mesh traffic; a pod without
  a sidecar is not in the mesh, so policy does not apply to it.
- `denied_traffic(cluster)`: refused traffic by workload, from the sidecars' refusal counters (metrics.Refusal).

OSM's rules (reference §1.2, §3.3): identity is `<serviceaccount>.<namespace>`; a TrafficTarget is ignored when its
namespace differs from its destination's or a rule is not an HTTPRouteGroup/TCPRoute; routes resolve in the
TrafficTarget's namespace; TrafficTargets only apply when `enablePermissiveTrafficPolicyMode` is false.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from apps.clusters.models import Cluster
from apps.history import services as history
from apps.mesh.models import HTTPRouteGroup, MeshState, Pod, Service, TCPRoute, TrafficTarget, Workload
from apps.metrics import catalog
from apps.metrics.models import MetricsState, Refusal

from .checks import route_problems, selects

PERMISSIVE, SMI, UNKNOWN = "permissive", "smi", "unknown"
KINDS = ("service", "workload", "pod")


@dataclass(frozen=True, order=True)
class Identity:
    """A service account: what OSM authorizes (certificate CN <sa>.<ns>.<trust domain>)."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Route:
    """One allowed route: an HTTPRouteGroup match (path regex, methods, headers) or a TCPRoute's ports."""

    kind: str  # HTTPRouteGroup | TCPRoute
    group: str  # the route object's name
    match: str = ""  # the HTTPRouteGroup match's name
    path_regex: str = ""
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grant:
    """What one TrafficTarget says about one source → destination pair."""

    target: TrafficTarget
    source: Identity
    destination: Identity
    routes: tuple[Route, ...]
    ignored: str = ""  # why OSM does not use this TrafficTarget at all
    problems: tuple[str, ...] = ()  # rules OSM cannot resolve (the rest still apply)

    @property
    def allows(self) -> bool:
        return not self.ignored and bool(self.routes)

    @property
    def route_groups(self) -> list[str]:
        return list(dict.fromkeys(f"{r.kind} {r.group}" for r in self.routes))


@dataclass(frozen=True)
class Policy:
    mode: str  # permissive | smi | unknown (no MeshConfig in the snapshot)
    grants: list[Grant]
    targets: list[TrafficTarget]

    @cached_property
    def allowed_pairs(self) -> frozenset[tuple[Identity, Identity]]:
        """(source, destination) pairs some grant allows, computed once (the graph asks per edge)."""
        return frozenset((g.source, g.destination) for g in self.grants if g.allows)

    def grants_between(self, source: Identity, destination: Identity) -> list[Grant]:
        return [g for g in self.grants if g.source == source and g.destination == destination]

    def grants_to(self, destination: Identity) -> list[Grant]:
        return [g for g in self.grants if g.destination == destination]


def policy_mode(state: MeshState | None) -> str:
    permissive = state.permissive_mode if state is not None else None
    if permissive is None:
        return UNKNOWN
    return PERMISSIVE if permissive else SMI


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    """OSM's list of single-key maps (or the SMI spec's map), as (name, regex) pairs."""
    items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
    return tuple((str(k), str(v)) for item in items if isinstance(item, dict) for k, v in item.items())


def _http_routes(group: HTTPRouteGroup, names: list[str]) -> list[Route]:
    matches = [m for m in group.matches if isinstance(m, dict)]
    if names:  # a rule without match names allows every match of the group [inferred from the SMI spec]
        matches = [m for m in matches if m.get("name") in names]
    return [
        Route(
            kind="HTTPRouteGroup",
            group=group.name,
            match=str(m.get("name", "")),
            path_regex=str(m.get("pathRegex", "")),
            methods=tuple(str(x) for x in m.get("methods") or [] if isinstance(x, str)),
            headers=_headers(m.get("headers")),
        )
        for m in matches
    ]


def _tcp_route(route: TCPRoute) -> Route:
    ports = (route.matches or {}).get("ports") if isinstance(route.matches, dict) else None
    return Route(kind="TCPRoute", group=route.name, ports=tuple(str(p) for p in ports or []))


def _grants(
    target: TrafficTarget,
    http_routes: dict[tuple[str, str], HTTPRouteGroup],
    tcp_routes: dict[tuple[str, str], TCPRoute],
) -> list[Grant]:
    dest = target.destination or {}
    destination = Identity(str(dest.get("namespace") or ""), str(dest.get("name") or ""))
    ignored = ""
    if destination.namespace != target.namespace:
        ignored = (
            f"its namespace ({target.namespace}) differs from its destination's ({destination.namespace or 'none'})"
        )
    problems = route_problems(target, http_routes, tcp_routes)
    if not target.rules or any(r.get("kind") not in ("HTTPRouteGroup", "TCPRoute") for r in target.rules):
        ignored = ignored or problems[0]
    routes: list[Route] = []
    for rule in target.rules:
        key = (target.namespace, str(rule.get("name", "")))
        if rule.get("kind") == "HTTPRouteGroup" and key in http_routes:
            routes += _http_routes(http_routes[key], [str(n) for n in rule.get("matches") or []])
        elif rule.get("kind") == "TCPRoute" and key in tcp_routes:
            routes.append(_tcp_route(tcp_routes[key]))
    sources = [
        Identity(str(s.get("namespace") or ""), str(s.get("name") or ""))
        for s in target.sources
        if s.get("kind", "ServiceAccount") == "ServiceAccount"
    ]
    return [
        Grant(target, source, destination, tuple(routes), ignored, tuple(problems)) for source in dict.fromkeys(sources)
    ]


def _policy(
    state: MeshState | None,
    targets: list[TrafficTarget],  # in the order the page lists them
    http_routes: list[HTTPRouteGroup],
    tcp_routes: list[TCPRoute],
) -> Policy:
    """The one evaluation of a set of policy rows, whether from the snapshot or from the history."""
    http = {(r.namespace, r.name): r for r in http_routes}
    tcp = {(r.namespace, r.name): r for r in tcp_routes}
    grants = [g for t in targets for g in _grants(t, http, tcp)]
    return Policy(mode=policy_mode(state), grants=grants, targets=targets)


def load_policy(cluster: Cluster) -> Policy:
    return _policy(
        MeshState.objects.filter(cluster=cluster).first(),
        list(TrafficTarget.objects.filter(cluster=cluster).order_by("namespace", "name")),
        list(HTTPRouteGroup.objects.filter(cluster=cluster)),
        list(TCPRoute.objects.filter(cluster=cluster)),
    )


def load_policy_as_of(cluster: Cluster, when: datetime) -> Policy:
    """The policy of the configuration the collections had seen at `when`, rebuilt from the history (its MeshConfig,
    TrafficTargets and routes then); check the time first with apps.history.services.as_of_time."""
    rows = history.policy_rows_as_of(cluster, when)
    return _policy(rows.mesh_state, rows.targets, rows.http_routes, rows.tcp_routes)


def pair_policy(policy: Policy, sources: Iterable[Identity], destinations: Iterable[Identity]) -> str:
    """What the policy says of traffic from any of `sources` to any of `destinations` (the service accounts at an
    edge's two ends): "allowed" (permissive mode, or a TrafficTarget with a route for every pair), "denied" (SMI mode
    and none for any pair), "partly" (some pairs only), or "" when it cannot be told (no MeshConfig, or an end whose
    service accounts are unknown)."""
    if policy.mode == PERMISSIVE:
        return "allowed"
    pairs = [(a, b) for a in set(sources) for b in set(destinations)]
    if policy.mode != SMI or not pairs:
        return ""
    hits = sum(pair in policy.allowed_pairs for pair in pairs)
    return "allowed" if hits == len(pairs) else "denied" if hits == 0 else "partly"


@dataclass(frozen=True)
class MatrixRow:
    source: Identity
    destination: Identity
    grants: list[Grant]

    @property
    def allowed(self) -> bool:
        return any(g.allows for g in self.grants)

    @property
    def routes(self) -> list[Route]:
        return list(dict.fromkeys(r for g in self.grants if g.allows for r in g.routes))


def access_matrix(policy: Policy) -> list[MatrixRow]:
    """Source service account → destination service account, with the TrafficTargets and routes between them."""
    pairs: dict[tuple[Identity, Identity], list[Grant]] = {}
    for grant in policy.grants:
        pairs.setdefault((grant.source, grant.destination), []).append(grant)
    return [MatrixRow(s, d, grants) for (s, d), grants in sorted(pairs.items(), key=lambda item: item[0])]


# ---------------------------------------------------------------------------------------------------------------
# "Can A talk to B?"


@dataclass(frozen=True)
class PodFacts:
    name: str
    service_account: str
    has_sidecar: bool


@dataclass(frozen=True)
class Endpoint:
    """A service, workload or pod, with the pods behind it (or, without pods, its workloads' service accounts)."""

    kind: str
    namespace: str
    name: str
    pods: tuple[PodFacts, ...]
    fallback_accounts: tuple[str, ...] = ()  # from workload templates when no pod runs

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def meshed_pods(self) -> list[PodFacts]:
        return [p for p in self.pods if p.has_sidecar]

    @property
    def unmeshed_pods(self) -> list[PodFacts]:
        return [p for p in self.pods if not p.has_sidecar]

    @property
    def in_mesh(self) -> bool | None:
        """True when a pod behind it has the sidecar, False when none has, None when no pod runs."""
        return bool(self.meshed_pods) if self.pods else None

    @property
    def identities(self) -> list[Identity]:
        names = [p.service_account for p in self.meshed_pods] if self.pods else list(self.fallback_accounts)
        return sorted({Identity(self.namespace, n or "default") for n in names})


class UnknownEndpoint(LookupError):
    pass


def parse_endpoint(text: str) -> tuple[str, str, str]:
    """`"[service|workload|pod] namespace/name"` → (kind or "", namespace, name); ValueError when malformed."""
    text = (text or "").strip()
    kind, _, rest = text.partition(" ") if " " in text else ("", "", text)
    kind = kind.lower()
    if kind and kind not in KINDS:
        raise ValueError(f"{kind!r} is not one of {', '.join(KINDS)}")
    namespace, slash, name = rest.strip().partition("/")
    if not slash or not namespace or not name:
        raise ValueError("write namespace/name, optionally after service, workload or pod")
    return kind, namespace, name


def _facts(pods: list[Pod]) -> tuple[PodFacts, ...]:
    return tuple(
        PodFacts(p.name, p.service_account or "default", p.has_sidecar)
        for p in sorted(pods, key=lambda p: p.name)
        if p.phase not in ("Succeeded", "Failed")
    )


def resolve(cluster: Cluster, text: str) -> Endpoint:
    """The endpoint a user typed; without a kind, a service, then a workload, then a pod of that name."""
    try:
        kind, namespace, name = parse_endpoint(text)
    except ValueError as exc:
        raise UnknownEndpoint(f"{text!r}: {exc}") from exc
    pods_in_ns = Pod.objects.filter(cluster=cluster, namespace=namespace)
    for candidate in [kind] if kind else KINDS:
        if candidate == "service":
            service = Service.objects.filter(cluster=cluster, namespace=namespace, name=name).first()
            if service is None:
                continue
            pods = [p for p in pods_in_ns if selects(service.selector, p.labels)]
            accounts = tuple(
                w.service_account
                for w in Workload.objects.filter(cluster=cluster, namespace=namespace)
                if selects(service.selector, w.template_labels)
            )
            return Endpoint("service", namespace, name, _facts(pods), accounts)
        if candidate == "workload":
            workloads = list(Workload.objects.filter(cluster=cluster, namespace=namespace, name=name))
            if not workloads:
                continue
            pods = [p for p in pods_in_ns if p.workload_name == name]
            return Endpoint("workload", namespace, name, _facts(pods), tuple(w.service_account for w in workloads))
        if candidate == "pod":
            pod = pods_in_ns.filter(name=name).first()
            if pod is None:
                continue
            return Endpoint("pod", namespace, name, _facts([pod]))
    raise UnknownEndpoint(f"no {kind or 'service, workload or pod'} {namespace}/{name} in the latest snapshot")


@dataclass(frozen=True)
class PairVerdict:
    source: Identity
    destination: Identity
    allowing: list[Grant]  # effective TrafficTargets (with routes) that allow this pair
    ignored: list[Grant]  # TrafficTargets naming this pair that OSM does not use, or that resolve no route
    others: list[Grant]  # TrafficTargets to this destination for other sources

    @property
    def allowed(self) -> bool:
        return bool(self.allowing)

    @property
    def missing(self) -> str:
        if self.allowed:
            return ""
        text = (
            f"no TrafficTarget in namespace {self.destination.namespace} with destination ServiceAccount"
            f" {self.destination.name} lists source ServiceAccount {self.source} with a route"
        )
        notes = []
        for g in self.ignored:
            why = g.ignored or "; ".join(g.problems) or "no route resolves"
            notes.append(f"TrafficTarget {g.target.namespace}/{g.target.name} names it but OSM ignores it: {why}")
        sources = sorted({str(g.source) for g in self.others})
        if sources:
            notes.append(f"TrafficTargets to {self.destination} allow only {', '.join(sources)}")
        return text + ("; " + "; ".join(notes) if notes else "")


@dataclass(frozen=True)
class Verdict:
    source: Endpoint
    destination: Endpoint
    mode: str
    answer: str  # yes | no | partly
    reason: str  # one line
    pairs: list[PairVerdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.answer == "yes"

    @property
    def allowing(self) -> list[Grant]:
        return [g for p in self.pairs for g in p.allowing]

    @property
    def missing(self) -> list[str]:
        return [p.missing for p in self.pairs if not p.allowed]


def _not_in_mesh(endpoint: Endpoint) -> str:
    pods = ", ".join(p.name for p in endpoint.pods[:5]) + (" ..." if len(endpoint.pods) > 5 else "")
    return f"{endpoint} is not in the mesh: its pods have no sidecar ({pods})"


def verdict(policy: Policy, source: Endpoint, destination: Endpoint) -> Verdict:
    notes = []
    for end in (source, destination):
        if end.in_mesh and end.unmeshed_pods:
            names = ", ".join(p.name for p in end.unmeshed_pods[:5])
            notes.append(f"{end}: pods without a sidecar are outside the mesh and not covered: {names}")
        if end.in_mesh is None:
            notes.append(f"{end} has no running pod; judged by its workloads' service accounts")
    for end in (source, destination):
        if end.in_mesh is False:
            reason = _not_in_mesh(end) + "; mesh policy does not apply and the other side's sidecar refuses or"
            reason += " cannot route the connection (OSM requires mTLS between sidecars)"
            return Verdict(source, destination, policy.mode, "no", reason, notes=notes)
    if policy.mode == PERMISSIVE:
        reason = "allowed by permissive mode: all traffic inside the mesh is allowed and TrafficTargets are ignored"
        return Verdict(source, destination, policy.mode, "yes", reason, notes=notes)
    if policy.mode == UNKNOWN:
        notes.append("no MeshConfig in the snapshot, so the policy mode is unknown: judged as SMI mode")
    pairs = []
    for src, dst in itertools.product(source.identities, destination.identities):
        named = policy.grants_between(src, dst)
        pairs.append(
            PairVerdict(
                source=src,
                destination=dst,
                allowing=[g for g in named if g.allows],
                ignored=[g for g in named if not g.allows],
                others=[g for g in policy.grants_to(dst) if g.source != src and g.allows],
            )
        )
    if not pairs:
        return Verdict(source, destination, policy.mode, "no", "no service account found behind one side", notes=notes)
    allowed = [p for p in pairs if p.allowed]
    if len(allowed) == len(pairs):
        via = "; ".join(
            f"TrafficTarget {g.target.namespace}/{g.target.name} via {', '.join(g.route_groups)}"
            for g in dict.fromkeys(g for p in pairs for g in p.allowing)
        )
        return Verdict(source, destination, policy.mode, "yes", f"allowed by {via}", pairs, notes)
    answer = "partly" if allowed else "no"
    denied = [p for p in pairs if not p.allowed]
    reason = "denied: no TrafficTarget allows " + "; ".join(f"{p.source} → {p.destination}" for p in denied)
    return Verdict(source, destination, policy.mode, answer, reason, pairs, notes)


def can_talk(cluster: Cluster, source: str, destination: str, policy: Policy | None = None) -> Verdict:
    """ "Can A talk to B?" for two endpoints written as `[service|workload|pod] namespace/name`.

    Raises UnknownEndpoint when either is not in the latest snapshot.
    """
    return verdict(policy or load_policy(cluster), resolve(cluster, source), resolve(cluster, destination))


def endpoint_choices(cluster: Cluster, limit: int = 500) -> list[str]:
    """What the "can A talk to B?" inputs suggest: services and workloads, then pods, at most `limit`."""
    choices = [
        f"service {ns}/{n}" for ns, n in Service.objects.filter(cluster=cluster).values_list("namespace", "name")
    ]
    choices += [
        f"workload {ns}/{n}" for ns, n in Workload.objects.filter(cluster=cluster).values_list("namespace", "name")
    ]
    if len(choices) < limit:
        pods = Pod.objects.filter(cluster=cluster).values_list("namespace", "name")[: limit - len(choices)]
        choices += [f"pod {ns}/{n}" for ns, n in pods]
    return choices[:limit]


def endpoint_placeholders(choices: list[str]) -> tuple[str, str]:
    """Examples for the two inputs from the cluster shown: its first workload and its first service."""
    workload = next((c for c in choices if c.startswith("workload ")), "workload namespace/name")
    service = next((c for c in choices if c.startswith("service ")), "service namespace/name")
    return workload, service


# ---------------------------------------------------------------------------------------------------------------
# Observed denials


REFUSAL_WORDS = {
    "passthrough": "sent outside its routes (egress passthrough)",
    "no-route": "refused by its own sidecar: no route",
    "no-mtls": "refused: arrived without mTLS (a caller with no route, passed through in plaintext)",
    "identity": "refused: no TrafficTarget admits the caller's identity",
    "route": "refused: the caller's identity is admitted, this route is not",
}


@dataclass
class RefusingParty:
    """One workload's refusals (or traffic sent outside its routes), by kind, with who it may be about."""

    namespace: str
    name: str  # the workload's name, or its pods' app label when the Prometheus lacks the workload labels
    workload_kind: str  # blank: attributed by app label only
    service_account: str
    rates: dict[str, float] = field(default_factory=dict)  # by Refusal.kind
    # The other side, inferred from policy (never measured per edge): destinations refusing traffic that policy denies
    # this caller, or callers sending outside their routes that policy denies to reach this destination.
    not_allowed: list[str] = field(default_factory=list)

    @property
    def by_workload(self) -> bool:
        return bool(self.workload_kind)

    @property
    def total(self) -> float:
        return sum(self.rates.values())

    @property
    def lines(self) -> list[tuple[str, float]]:
        return [(REFUSAL_WORDS.get(kind, kind), rate) for kind, rate in sorted(self.rates.items())]


@dataclass(frozen=True)
class Denials:
    callers: list[RefusingParty]  # workloads whose sidecars sent traffic outside their routes or refused it
    destinations: list[RefusingParty]  # workloads whose sidecars refused traffic
    unavailable: str  # why refusals are not observable ("" when they are)
    attribution: str = ""  # how the parties were attributed


def _parties(cluster: Cluster, side: str) -> list[RefusingParty]:
    accounts = {
        (ns, kind, name): sa
        for ns, kind, name, sa in Workload.objects.filter(cluster=cluster).values_list(
            "namespace", "kind", "name", "service_account"
        )
    }
    app_accounts: dict[tuple[str, str], set[str]] = {}
    for ns, labels, sa in Pod.objects.filter(cluster=cluster).values_list("namespace", "labels", "service_account"):
        if isinstance(labels, dict) and labels.get("app"):
            app_accounts.setdefault((ns, labels["app"]), set()).add(sa or "default")
    parties: dict[tuple[str, str, str], RefusingParty] = {}
    for r in Refusal.objects.filter(cluster=cluster, side=side):
        key = (r.namespace, r.workload_kind, r.workload_name or r.app)
        party = parties.get(key)
        if party is None:
            if r.workload_kind:
                sa = accounts.get((r.namespace, r.workload_kind, r.workload_name), "")
            else:
                sa = ", ".join(sorted(app_accounts.get((r.namespace, r.app), ())))
            party = parties[key] = RefusingParty(r.namespace, r.workload_name or r.app, r.workload_kind, sa)
        party.rates[r.kind] = party.rates.get(r.kind, 0.0) + r.rate
    return sorted(parties.values(), key=lambda p: (-p.total, p.namespace, p.name))


def _allowed(policy: Policy, source: RefusingParty, destination: RefusingParty) -> bool:
    if policy.mode != SMI or not source.service_account or not destination.service_account:
        return True  # nothing to infer: permissive, unknown, or an account we cannot name
    sources = [Identity(source.namespace, sa.strip()) for sa in source.service_account.split(",")]
    dests = [Identity(destination.namespace, sa.strip()) for sa in destination.service_account.split(",")]
    return all(any(g.allows for g in policy.grants_between(a, b)) for a in sources for b in dests)


def denied_traffic(cluster: Cluster, policy: Policy | None = None) -> Denials:
    """Refused traffic by workload: what callers sent outside their routes, what destinations refused, and, in SMI
    mode, which pairs of them policy denies (an inference: OSM's sidecars never name the other side)."""
    state = MetricsState.objects.filter(cluster=cluster).first()
    if state is None:
        return Denials([], [], "no metrics collected yet")
    policy = policy or load_policy(cluster)
    callers, destinations = _parties(cluster, Refusal.Side.CALLER), _parties(cluster, Refusal.Side.DESTINATION)
    unavailable = ""
    if catalog.DENIALS_NOT_KEPT in state.denials_unavailable_reason:
        unavailable = f"not observable on this Prometheus: {catalog.DENIALS_NOT_KEPT}"
    for caller in callers:
        caller.not_allowed = [f"{d.namespace}/{d.name}" for d in destinations if not _allowed(policy, caller, d)]
    for dest in destinations:
        dest.not_allowed = [f"{c.namespace}/{c.name}" for c in callers if not _allowed(policy, c, dest)]
    parties = callers + destinations
    if not parties:
        attribution = ""
    elif all(p.by_workload for p in parties):
        attribution = "by workload, from OSM's source_workload_kind/name labels on each sidecar's metrics"
    else:
        attribution = (
            "by the pods' app label where this Prometheus lacks OSM's source_workload_* labels: workloads sharing "
            "an app label (a canary's v1 and v2) cannot be told apart"
        )
    return Denials(callers, destinations, unavailable, attribution)
