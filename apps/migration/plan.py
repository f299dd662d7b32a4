"""The order to move namespaces in, and the cutover plan around the window in which traffic has no mesh.

Callees before callers: a namespace moves after every namespace it calls, so that each workload restarted into Istio
finds its destinations already there (enforcing STRICT mTLS and their policies at once; a caller not restarted yet is
refused, never served in plaintext by a protected workload). Who calls whom comes from the observed traffic (the
metrics snapshot's edges), from the TrafficTargets (a source namespace calls the destination's) and from the
IngressBackends (the ingress controller's namespace calls the backend's). Namespaces that call each other form one
step.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.policies.model import MeshInput, Target
from apps.policies.policy_api import resolve_ingress


@dataclass(frozen=True)
class Step:
    namespaces: tuple[str, ...]
    calls: tuple[str, ...]  # namespaces this step's namespaces call (moved before it)
    called_by: tuple[str, ...]  # namespaces that call this step's (moved after it)
    evidence: str  # where the edges come from ("traffic", "TrafficTarget"; "" when there are none)


def _calls(mesh: MeshInput, namespaces: set[str]) -> tuple[dict[str, set[str]], dict[tuple[str, str], set[str]]]:
    calls: dict[str, set[str]] = {ns: set() for ns in namespaces}
    why: dict[tuple[str, str], set[str]] = {}
    for source, destination, _rate in mesh.edges:
        if source != destination and source in namespaces and destination in namespaces:
            calls[source].add(destination)
            why.setdefault((source, destination), set()).add("traffic")
    for grant in mesh.grants:
        source, destination = grant.source.namespace, grant.destination.namespace
        if source != destination and source in namespaces and destination in namespaces and not grant.ignored:
            calls[source].add(destination)
            why.setdefault((source, destination), set()).add("TrafficTarget")
    for resolved in resolve_ingress(mesh):
        destination = resolved.policy.namespace
        for group in resolved.source_groups if resolved.admission is not None else ():
            source = group.namespace
            if source != destination and source in namespaces and destination in namespaces:
                calls[source].add(destination)
                why.setdefault((source, destination), set()).add("IngressBackend")
    return calls, why


def _components(calls: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), each sorted; returned callees first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(calls[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            out.append(sorted(component))

    for node in sorted(calls):
        if node not in index:
            visit(node)
    return out  # Tarjan emits a component after every component it reaches: callees first


def move_order(mesh: MeshInput, namespaces: list[str]) -> list[Step]:
    wanted = set(namespaces)
    calls, why = _calls(mesh, wanted)
    steps = []
    for component in _components(calls):
        members = set(component)
        callees = sorted({c for n in component for c in calls[n]} - members)
        callers = sorted({n for n in wanted if calls[n] & members} - members)
        sources = sorted({w for n in component for c in calls[n] for w in why.get((n, c), set())})
        sources += sorted({w for n in callers for c in calls[n] & members for w in why.get((n, c), set())})
        evidence = " and ".join(dict.fromkeys(sources))
        steps.append(Step(tuple(component), tuple(callees), tuple(callers), evidence))
    return steps


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    window: str
    actions: list[str]
    shorten: list[str]


def cutover(mesh: MeshInput, target: Target, namespaces: list[str]) -> Plan:
    steps = move_order(mesh, namespaces)
    control = mesh.control_plane_namespace or ("kube-system" if mesh.is_aks else "osm-system")
    if target.aks:
        window = (
            "The AKS Istio add-on does not run on a cluster with the OSM add-on enabled. From disabling OSM until "
            "the last workload restarts with an Istio sidecar, traffic has no mesh: no mTLS and no policy. A new "
            "cluster (blue/green) avoids the window altogether."
        )
        actions = [
            "Before the window, with OSM still running: review this page (every narrower, broader and manual item), "
            "fix what must be fixed, and validate the bundle; `manage.py export_istio --revision "
            f"{target.revision}` in CI fails while anything is broader than OSM.",
            "Open the window: `az aks disable-addons --addons open-service-mesh -g <group> -n <cluster>`.",
            f"`az aks mesh enable --revision {target.revision} -g <group> -n <cluster>`, then wait for istiod in "
            "aks-istio-system (`kubectl get pods -n aks-istio-system`).",
            "Apply the whole bundle in one step: `kubectl apply -f meshboard-istio.yaml` (namespace labels, "
            "PeerAuthentications, AuthorizationPolicies, VirtualServices), then the workload patches listed at its "
            "end.",
            "Restart the workloads namespace by namespace in the order below (`kubectl rollout restart "
            "deployment,statefulset,daemonset -n <namespace>`): each restart replaces OSM's sidecar with Istio's. The "
            "window closes when the last namespace's pods are ready.",
            "Check: `istioctl proxy-status`, and the Policies and Graph pages once metrics come from Istio's sidecars.",
        ]
    else:
        window = (
            "Upstream Istio and OSM can both be installed, but a pod carries one sidecar: between a namespace's "
            "restart and its callers' restarts, calls between OSM and Istio sidecars fail (each refuses the other's "
            "certificates). Move quickly, callees first; a new cluster (blue/green) avoids the window."
        )
        actions = [
            "Before: review this page and validate the bundle; `manage.py export_istio` in CI fails while anything is "
            "broader than OSM.",
            "Install Istio (istiod in istio-system) and apply the bundle: `kubectl apply -f meshboard-istio.yaml`, "
            "then the workload patches at its end.",
            "Remove OSM's injection from each namespace as it moves (`osm namespace remove <namespace>`), and restart "
            "its workloads in the order below.",
            f"When every namespace has moved, uninstall OSM (`osm uninstall mesh`; its control plane is in {control}).",
        ]
    shorten = [
        "Generate and validate everything beforehand: nothing is written during the window but the bundle.",
        "Apply the bundle in one `kubectl apply`; its objects take effect as pods restart.",
        "Restart whole namespaces at once (`kubectl rollout restart` per namespace), respecting PodDisruptionBudgets.",
        "Keep the images pulled (pre-pull Istio's proxy image on every node) so restarts are quick.",
    ]
    return Plan(steps, window, actions, shorten)
