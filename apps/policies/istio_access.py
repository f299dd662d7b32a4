"""Who may talk to whom on an Istio mesh: the live AuthorizationPolicies and PeerAuthentications of the snapshot,
judged by the migration assistant's Istio evaluator (`apps.policies.istio_eval`, the same one that proves the
bundle), so "can A talk to B?" is answered the same way for the bundle before the move and the cluster after it.

- `load_istio_access(cluster)`: the evaluator over the snapshot's AuthorizationPolicies (Istio's root namespace:
  the istiod's, aks-istio-system on the add-on), STRICT mTLS where a PeerAuthentication sets it (the root
  namespace's mesh-wide one covers every namespace; a namespace's own overrides it), the workload groups the
  migration assistant reads (labels, service account, ports, sidecar).
- `IstioAccess.pair(sources, destinations)`: "allowed" / "denied" / "partly" between service accounts, as
  `smi_access.pair_policy` answers for OSM (the graph's edges). A pair is allowed when some request from the source
  reaches a destination workload: one probe per port of the destination (a TCP connection on a TCP port; on an HTTP
  port a GET / and one request shaped after each operation of the ALLOW rules that apply, as the rule's first
  method, path and header forms make it).
- `can_talk(cluster, source, destination)`: the policies page's verdict, with the policy and rule that decided.
Not judged: requests from outside the mesh (the ingress controller's own policies are shown by the migration page).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from apps.clusters.models import Cluster
from apps.mesh.models import IstioAuthorizationPolicy, IstioPeerAuthentication, MeshState
from apps.policies.istio_eval import IstioPolicies, IstioVerdict, Unsupported
from apps.policies.model import HTTP, TCP, Request, WorkloadGroup
from apps.policies.snapshot import load as load_mesh

from .smi_access import Endpoint, Identity, Policy, Verdict, load_policy, resolve

ISTIO = "istio"
DEFAULT_ROOT = "istio-system"


def _concrete(form: object, fallback: str) -> str:
    """A value an Istio string form (`exact`, `prefix*`, `*suffix`, `*`) matches."""
    text = str(form)
    if text == "*" or not text:
        return fallback
    if text.endswith("*"):
        return text[:-1] or fallback
    if text.startswith("*"):
        return fallback.rstrip("/") + text[1:] if fallback.startswith("/") else text[1:]
    return text


def strict_namespaces(peer_authentications: list[dict], root: str, namespaces: Iterable[str]) -> set[str]:
    """The namespaces where plaintext is refused: a namespace-wide (no selector) PeerAuthentication's mode, else
    the root namespace's mesh-wide one; STRICT refuses, PERMISSIVE and DISABLE do not, UNSET inherits."""
    mode_of: dict[str, str] = {}
    for pa in peer_authentications:
        spec = pa.get("spec") or {}
        if (spec.get("selector") or {}).get("matchLabels"):
            continue  # workload-level: not modelled per namespace
        mode = str((spec.get("mtls") or {}).get("mode") or "UNSET").upper()
        if mode != "UNSET":
            mode_of[(pa.get("metadata") or {}).get("namespace", "")] = mode
    mesh = mode_of.get(root, "PERMISSIVE")
    return {ns for ns in namespaces if mode_of.get(ns, mesh) == "STRICT"}


@dataclass
class IstioAccess:
    evaluator: IstioPolicies
    groups: list[WorkloadGroup]
    mode: str = ISTIO
    unsupported: str = ""  # why the evaluator cannot judge (a policy uses what it does not model)
    _said: dict[tuple[Identity, Identity], IstioVerdict | None] = field(default_factory=dict)

    @property
    def verdicts_said(self) -> int:
        """How many (source, destination) verdicts it keeps (what a kept IstioAccess grows by)."""
        return len(self._said)

    @property
    def strict_namespaces(self) -> list[str]:
        return sorted(self.evaluator.strict_namespaces)

    @property
    def meshed_identities(self) -> set[Identity]:
        return {g.identity for g in self.groups if g.meshed}

    def groups_of(self, identity: Identity) -> list[WorkloadGroup]:
        return [g for g in self.groups if g.namespace == identity.namespace and g.service_account == identity.name]

    def _probes(self, source: Identity | None, group: WorkloadGroup) -> list[Request]:
        out = []
        for port in group.ports or ():
            if port.istio_protocol == TCP:
                out.append(Request(source, group, port.number, protocol=TCP))
                continue
            out.append(Request(source, group, port.number, method="GET", path="/"))
            for policy in self.evaluator.applicable(group.namespace, group.label_dict):
                for rule in (policy.get("spec") or {}).get("rules") or []:
                    headers = tuple(
                        (str(c.get("key"))[len("request.headers[") : -1], _concrete((c.get("values") or ["x"])[0], "x"))
                        for c in (rule or {}).get("when") or []
                        if str(c.get("key", "")).startswith("request.headers[")
                    )
                    for item in (rule or {}).get("to") or [{}]:
                        op = (item or {}).get("operation") or {}
                        method = _concrete((op.get("methods") or ["GET"])[0], "GET")
                        path = _concrete((op.get("paths") or ["/"])[0], "/")
                        out.append(Request(source, group, port.number, HTTP, method, path, headers))
        return out

    def verdict(self, source: Identity, destination: Identity) -> IstioVerdict | None:
        """Some request from `source` reaches a workload of `destination` (its allowing verdict), or the verdict
        that refused the first probe; None when `destination` runs no workload with a port."""
        key = (source, destination)
        if key not in self._said:
            first: IstioVerdict | None = None
            # A caller without a sidecar sends plaintext: it has no principal.
            caller = source if source in self.meshed_identities else None
            for group in self.groups_of(destination):
                for request in self._probes(caller, group):
                    found = self.evaluator.evaluate(request)
                    if found.allowed:
                        self._said[key] = found
                        return found
                    first = first or found
            self._said[key] = first
        return self._said[key]

    def pair(self, sources: Iterable[Identity], destinations: Iterable[Identity]) -> str:
        """allowed / denied / partly over every (source, destination) pair; "" when none can be judged."""
        if self.unsupported:
            return ""
        said = [self.verdict(a, b) for a, b in itertools.product(set(sources), set(destinations))]
        said = [v for v in said if v is not None]
        if not said:
            return ""
        allowed = sum(v.allowed for v in said)
        return "allowed" if allowed == len(said) else "denied" if allowed == 0 else "partly"


def load_istio_access(cluster: Cluster) -> IstioAccess:
    state = MeshState.objects.filter(cluster=cluster).first()
    root = (state.istio_namespace if state else "") or DEFAULT_ROOT
    policies = [p.as_object("AuthorizationPolicy") for p in IstioAuthorizationPolicy.objects.filter(cluster=cluster)]
    peers = [p.as_object("PeerAuthentication") for p in IstioPeerAuthentication.objects.filter(cluster=cluster)]
    mesh = load_mesh(cluster)
    strict = strict_namespaces(peers, root, {g.namespace for g in mesh.groups})
    sidecars = {g.key for g in mesh.groups if g.meshed}
    try:
        evaluator = IstioPolicies(policies, root, strict, sidecars)
        unsupported = ""
    except Unsupported as exc:
        evaluator, unsupported = IstioPolicies([], root, strict, sidecars), str(exc)
    return IstioAccess(evaluator, list(mesh.groups), unsupported=unsupported)


def current_policy(cluster: Cluster) -> Policy | IstioAccess:
    """The access policy of the cluster's mesh: Istio's evaluator when it runs Istio, else OSM's SMI policy."""
    state = MeshState.objects.filter(cluster=cluster).only("istio_revisions", "osm_version", "mesh_name").first()
    return load_istio_access(cluster) if state is not None and state.is_istio else load_policy(cluster)


def can_talk(cluster: Cluster, source: str, destination: str, access: IstioAccess | None = None) -> Verdict:
    """ "Can A talk to B?" on an Istio mesh, between `[service|workload|pod] namespace/name` endpoints.
    Raises smi_access.UnknownEndpoint when either is not in the latest snapshot."""
    access = access or load_istio_access(cluster)
    src, dst = resolve(cluster, source), resolve(cluster, destination)
    return verdict(access, src, dst)


def verdict(access: IstioAccess, source: Endpoint, destination: Endpoint) -> Verdict:
    if access.unsupported:
        reason = f"cannot be judged: an AuthorizationPolicy uses what Meshboard does not model ({access.unsupported})"
        return Verdict(source, destination, ISTIO, "no", reason)
    lines, answers = [], []
    for src, dst in itertools.product(source.identities, destination.identities):
        said = access.verdict(src, dst)
        if said is None:
            continue
        answers.append(said.allowed)
        lines.append(f"{src} → {dst}: {'allowed' if said.allowed else 'denied'}: {said.reason}")
    if not answers:
        return Verdict(source, destination, ISTIO, "no", "no workload with a port found behind one side")
    answer = "yes" if all(answers) else "no" if not any(answers) else "partly"
    reason = lines[0] if len(lines) == 1 else f"{sum(answers)} of {len(answers)} service-account pairs allowed"
    return Verdict(source, destination, ISTIO, answer, reason, notes=lines if len(lines) > 1 else [])
