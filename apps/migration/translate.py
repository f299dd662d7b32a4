"""OSM's configuration, as the snapshot holds it, translated into Istio objects, with the fidelity of every item.

What is translated (the mapping of `shared/reference/istio-migration.md`):
- namespaces in the mesh and their injection → the namespace label (`istio.io/rev=<revision>` for the AKS add-on,
  `istio-injection=enabled` for upstream Istio); pod opt-outs and opt-ins → pod template labels;
- mTLS (OSM always uses it between sidecars) → a STRICT PeerAuthentication per namespace;
- SMI mode → an allow-nothing AuthorizationPolicy per namespace, plus one ALLOW policy per TrafficTarget whose rules
  carry the sources, the routes and the header conditions in the same rule; permissive mode → no AuthorizationPolicy;
- TrafficSplits → a VirtualService on the root host with the backends' weights;
- MeshConfig exclusions → per-workload pod annotations (`traffic.sidecar.istio.io/...`).

Not collected yet (issue #21): Egress, IngressBackend, UpstreamTrafficSetting and Retry. `NOT_COLLECTED` says what
each will become; nothing here pretends to translate them.

Names are predictable (`meshboard-tt-<TrafficTarget>`, `meshboard-ts-<TrafficSplit>`, `meshboard-allow-nothing`,
`meshboard-mtls`), and every object carries the labels `app.kubernetes.io/managed-by: meshboard` and
`meshboard.io/generated-from: <Kind>.<name>`, with the full reference and its fidelity in annotations.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from apps.mesh.models import selects, weight_problem
from apps.policies.smi_access import Grant, Identity, Route

from .model import (
    FIDELITY,
    GENERATED_FROM,
    HTTP,
    MANAGED_BY,
    PERMISSIVE,
    SMI,
    TCP,
    UNKNOWN,
    Item,
    Manifest,
    MeshInput,
    NamespaceInfo,
    Port,
    RuleOrigin,
    SplitInfo,
    Target,
    WorkloadGroup,
    WorkloadPatch,
    fqdn,
    label_value,
    object_name,
    principal,
    route_key,
    route_scope,
    sa_key,
    target_key,
)
from .regex import BROADER, EXACT, HEADER, MANUAL, NARROWER, PATH, samples, translate, worst

INJECTION_ANNOTATION = "openservicemesh.io/sidecar-injection"
ISTIO_INJECT_LABEL = "sidecar.istio.io/inject"
# OSM's pod-level interception annotations and MeshConfig lists → Istio's pod annotations.
EXCLUSIONS = (
    ("outboundIPRangeExclusionList", "openservicemesh.io/outbound-ip-range-exclusion-list",
     "traffic.sidecar.istio.io/excludeOutboundIPRanges"),
    ("outboundIPRangeInclusionList", "openservicemesh.io/outbound-ip-range-inclusion-list",
     "traffic.sidecar.istio.io/includeOutboundIPRanges"),
    ("outboundPortExclusionList", "openservicemesh.io/outbound-port-exclusion-list",
     "traffic.sidecar.istio.io/excludeOutboundPorts"),
    ("inboundPortExclusionList", "openservicemesh.io/inbound-port-exclusion-list",
     "traffic.sidecar.istio.io/excludeInboundPorts"),
    ("networkInterfaceExclusionList", "", "traffic.sidecar.istio.io/excludeInterfaces"),
)  # fmt: skip
ANY_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class NotCollected:
    kind: str
    becomes: str
    check: str


NOT_COLLECTED = (
    NotCollected(
        "Egress",
        "ServiceEntry (MESH_EXTERNAL); the source restriction needs an egress gateway with an AuthorizationPolicy, "
        "without one every workload reaches the ServiceEntry (broader)",
        "kubectl get egresses.policy.openservicemesh.io -A",
    ),
    NotCollected(
        "IngressBackend",
        "an ALLOW AuthorizationPolicy on the backend from the ingress controller's principal or ipBlocks (manual "
        "review: Istio's ingress gateway is the idiomatic replacement)",
        "kubectl get ingressbackends.policy.openservicemesh.io -A",
    ),
    NotCollected(
        "UpstreamTrafficSetting",
        "DestinationRule trafficPolicy.connectionPool (exact); a local rate limit needs an EnvoyFilter (manual)",
        "kubectl get upstreamtrafficsettings.policy.openservicemesh.io -A",
    ),
    NotCollected(
        "Retry",
        "VirtualService http.retries on each destination with match.sourceLabels of the source's workloads",
        "kubectl get retries.policy.openservicemesh.io -A",
    ),
)


@dataclass
class NamespacePlan:
    name: str
    info: NamespaceInfo | None
    manifests: list[Manifest] = field(default_factory=list)
    patches: list[WorkloadPatch] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    @property
    def meshed(self) -> bool:
        return bool(self.info and self.info.meshed)

    def counts(self) -> dict[str, int]:
        out = {level: 0 for level in (EXACT, NARROWER, BROADER, MANUAL)}
        for item in self.items:
            out[item.level] += 1
        return out

    @property
    def level(self) -> str:
        return worst([i.level for i in self.items])


@dataclass
class Translation:
    mesh: MeshInput
    target: Target
    namespaces: dict[str, NamespacePlan]
    cluster_items: list[Item]
    origins: dict[tuple[str, str, int], RuleOrigin]
    not_collected: tuple[NotCollected, ...] = NOT_COLLECTED

    @property
    def manifests(self) -> list[Manifest]:
        return [m for plan in self.namespaces.values() for m in plan.manifests]

    @property
    def patches(self) -> list[WorkloadPatch]:
        return [p for plan in self.namespaces.values() for p in plan.patches]

    @property
    def items(self) -> list[Item]:
        return self.cluster_items + [i for plan in self.namespaces.values() for i in plan.items]

    def authorization_policies(self) -> list[dict]:
        return [m.body for m in self.manifests if m.kind == "AuthorizationPolicy"]

    def counts(self) -> dict[str, int]:
        out = {level: 0 for level in (EXACT, NARROWER, BROADER, MANUAL)}
        for item in self.items:
            out[item.level] += 1
        return out


# ---------------------------------------------------------------------------------------------------------------


def _metadata(name: str, namespace: str, kind: str, source_name: str, source_ref: str, level: str) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            GENERATED_FROM: label_value(f"{kind}.{source_name}"),
        },
        "annotations": {GENERATED_FROM: source_ref, FIDELITY: level},
    }


class _Builder:
    def __init__(self, mesh: MeshInput, target: Target, only: set[str] | None):
        self.mesh = mesh
        self.target = target
        self.only = only
        self.plans: dict[str, NamespacePlan] = {}
        self.cluster_items: list[Item] = []
        self.origins: dict[tuple[str, str, int], RuleOrigin] = {}
        self.smi = mesh.mode in (SMI, UNKNOWN)
        self.groups_in: dict[str, list[WorkloadGroup]] = {}
        for g in mesh.groups:
            self.groups_in.setdefault(g.namespace, []).append(g)
        self.grants_between: dict[tuple[Identity, Identity], list[Grant]] = {}
        for grant in mesh.grants:
            self.grants_between.setdefault((grant.source, grant.destination), []).append(grant)

    def wanted(self, namespace: str) -> bool:
        return self.only is None or namespace in self.only

    def plan(self, namespace: str) -> NamespacePlan:
        if namespace not in self.plans:
            self.plans[namespace] = NamespacePlan(namespace, self.mesh.namespace(namespace))
        return self.plans[namespace]

    def item(self, namespace: str, **kw) -> Item:
        found = Item(namespace=namespace, **kw)
        (self.plan(namespace).items if namespace else self.cluster_items).append(found)
        return found

    def meshed(self, namespace: str) -> bool:
        info = self.mesh.namespace(namespace)
        return bool(info and info.meshed)

    # -- the mesh as a whole ------------------------------------------------------------------------------------
    def cluster(self) -> None:
        mode = self.mesh.mode
        if mode == PERMISSIVE:
            self.item(
                "",
                key="mode",
                level=EXACT,
                mapping="MeshConfig enablePermissiveTrafficPolicyMode: true → no AuthorizationPolicy",
                subject="MeshConfig: permissive traffic policy mode",
                reason="Without an AuthorizationPolicy Istio allows all traffic between sidecars, as permissive mode "
                "does, and the STRICT PeerAuthentication keeps it mTLS.",
            )
        else:
            self.item(
                "",
                key="mode",
                level=EXACT if mode == SMI else MANUAL,
                mapping="MeshConfig enablePermissiveTrafficPolicyMode: false → allow-nothing AuthorizationPolicy "
                "per namespace",
                subject="MeshConfig: SMI traffic policy mode"
                if mode == SMI
                else "MeshConfig: not in the snapshot (policy mode unknown)",
                reason="Istio allows everything to a workload that no ALLOW policy selects, so each meshed namespace "
                "gets an allow-nothing policy and OSM's deny-by-default holds."
                if mode == SMI
                else "No MeshConfig was collected, so the mode is unknown: SMI mode (deny by default) was assumed; "
                "check enablePermissiveTrafficPolicyMode before applying.",
            )
        traffic = (self.mesh.meshconfig or {}).get("traffic") or {}
        egress = traffic.get("enableEgress")
        if egress is False:
            self.item(
                "",
                key="egress",
                level=MANUAL,
                mapping="MeshConfig enableEgress: false → mesh outboundTrafficPolicy REGISTRY_ONLY",
                subject="MeshConfig: egress disabled",
                reason=(
                    "Set `outboundTrafficPolicy: {mode: REGISTRY_ONLY}` in the mesh config "
                    + (
                        f"(ConfigMap istio-shared-configmap-{self.target.revision} in aks-istio-system)"
                        if self.target.aks
                        else "(ConfigMap istio in istio-system)"
                    )
                    + "; it is mesh-wide and not part of the bundle."
                ),
            )
        elif egress is True:
            self.item(
                "",
                key="egress",
                level=EXACT,
                mapping="MeshConfig enableEgress: true → outboundTrafficPolicy ALLOW_ANY (Istio's default)",
                subject="MeshConfig: egress enabled",
                reason="Istio's default lets sidecars reach any destination outside the mesh, as OSM's egress does.",
            )
        authz = traffic.get("inboundExternalAuthorization") or {}
        if isinstance(authz, dict) and authz.get("enable") is True:
            self.item(
                "",
                key="ext-authz",
                level=MANUAL,
                mapping="MeshConfig inboundExternalAuthorization → AuthorizationPolicy CUSTOM with an extension "
                "provider",
                subject="MeshConfig: inbound external authorization",
                reason="Istio needs the authorizer declared as an extensionProvider in the mesh config and a CUSTOM "
                "policy; not generated.",
            )
        provider = self.mesh.certificate_provider or "Tresor (OSM's default)"
        self.item(
            "",
            key="certificates",
            level=MANUAL,
            mapping="Certificates (Tresor, cert-manager, Vault) → Istio's CA or a plug-in CA",
            subject=f"Certificate provider: {provider}",
            reason="Workload certificates are issued anew by Istio (the AKS add-on takes plug-in CA certificates "
            "from Azure Key Vault); nothing is generated.",
        )

    # -- namespaces and injection ---------------------------------------------------------------------------------
    def namespaces(self) -> None:
        key, value = self.target.namespace_label
        for ns in self.mesh.namespaces:
            if not ns.meshed or not self.wanted(ns.name):
                continue
            plan = self.plan(ns.name)
            source = f"Namespace {ns.name} (openservicemesh.io/monitored-by={ns.monitored_by})"
            if ns.injection:
                body = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": ns.name,
                        "labels": {key: value},
                        "annotations": {GENERATED_FROM: source + f", {INJECTION_ANNOTATION}: enabled"},
                    },
                }
                plan.manifests.append(Manifest(body, source))
                self.item(
                    ns.name,
                    key=f"ns:{ns.name}",
                    level=EXACT,
                    mapping=f"namespace monitored-by + {INJECTION_ANNOTATION}: enabled → namespace label "
                    f"{self.target.label_text}",
                    subject=source,
                    reason=f"The label {self.target.label_text} makes {self.target.name} inject every new pod of the "
                    "namespace, as OSM's injector did.",
                    generated=(f"Namespace {ns.name}",),
                )
            else:
                self.item(
                    ns.name,
                    key=f"ns:{ns.name}",
                    level=EXACT,
                    mapping=f"namespace monitored-by without {INJECTION_ANNOTATION}: enabled → no namespace label",
                    subject=source,
                    reason="OSM injects only the pods annotated for it here; they get a pod label instead, the "
                    "namespace none.",
                )
            mtls = object_name("mtls")
            plan.manifests.append(
                Manifest(
                    {
                        "apiVersion": "security.istio.io/v1",
                        "kind": "PeerAuthentication",
                        "metadata": _metadata(mtls, ns.name, "Namespace", ns.name, source, EXACT),
                        "spec": {"mtls": {"mode": "STRICT"}},
                    },
                    source,
                )
            )
            self.item(
                ns.name,
                key=f"mtls:{ns.name}",
                level=EXACT,
                mapping="OSM's mTLS between sidecars → PeerAuthentication STRICT",
                subject=source,
                reason="OSM encrypts and authenticates all traffic between sidecars; STRICT refuses plaintext as "
                "OSM's sidecars do (Istio's default PERMISSIVE would accept it).",
                generated=(f"PeerAuthentication {ns.name}/{mtls}",),
            )
            if self.smi:
                name = object_name("allow-nothing")
                plan.manifests.append(
                    Manifest(
                        {
                            "apiVersion": "security.istio.io/v1",
                            "kind": "AuthorizationPolicy",
                            "metadata": _metadata(
                                name,
                                ns.name,
                                "MeshConfig",
                                "osm-mesh-config",
                                "MeshConfig osm-mesh-config (enablePermissiveTrafficPolicyMode: false)",
                                EXACT,
                            ),
                            "spec": {},
                        },
                        "MeshConfig (SMI mode)",
                    )
                )
                self.item(
                    ns.name,
                    key=f"allow-nothing:{ns.name}",
                    level=EXACT,
                    mapping="SMI mode (deny unless a TrafficTarget allows) → allow-nothing AuthorizationPolicy",
                    subject=f"SMI mode in namespace {ns.name}",
                    reason="An ALLOW policy without rules selecting every workload turns on Istio's deny-by-default "
                    "here; without it a workload with no ALLOW policy would accept every caller.",
                    generated=(f"AuthorizationPolicy {ns.name}/{name}",),
                )

    def workloads(self) -> None:
        traffic = (self.mesh.meshconfig or {}).get("traffic") or {}
        for group in self.mesh.groups:
            ns = self.mesh.namespace(group.namespace)
            if ns is None or not ns.meshed or not self.wanted(group.namespace):
                continue
            annotations = dict(group.annotations)
            opt = str(annotations.get(INJECTION_ANNOTATION, "")).strip().lower()
            patch = WorkloadPatch(group.kind, group.namespace, group.name)
            subject = f"{group} ({INJECTION_ANNOTATION}: {opt})" if opt else str(group)
            if ns.injection and opt in ("disabled", "no", "false"):
                patch.labels[ISTIO_INJECT_LABEL] = "false"
                patch.reasons.append("opt out of injection")
                self.item(
                    group.namespace,
                    key=f"optout:{group.key}",
                    level=EXACT,
                    mapping=f"pod annotation {INJECTION_ANNOTATION}: disabled → pod label {ISTIO_INJECT_LABEL}: "
                    '"false"',
                    subject=subject,
                    reason="The pod template label keeps the injector away from these pods, as OSM's annotation did.",
                    generated=(f"patch {group.kind} {group.namespace}/{group.name}",),
                )
            elif not ns.injection and opt in ("enabled", "yes", "true"):
                key, value = self.target.pod_opt_in_label
                patch.labels[key] = value
                patch.reasons.append("opt in to injection")
                self.item(
                    group.namespace,
                    key=f"optin:{group.key}",
                    level=EXACT,
                    mapping=f"pod annotation {INJECTION_ANNOTATION}: enabled in a namespace without injection → pod "
                    f"label {key}={value}",
                    subject=subject,
                    reason="The pod template label asks the injector for these pods only, as OSM's annotation did.",
                    generated=(f"patch {group.kind} {group.namespace}/{group.name}",),
                )
            will_be_meshed = configured_sidecar(ns, group)
            if not will_be_meshed and group.ports:
                self._unmeshed_reach(group, subject)
            if will_be_meshed:
                for field_name, annotation, istio in EXCLUSIONS:
                    values: list[str] = [str(v) for v in traffic.get(field_name) or [] if str(v).strip()]
                    if annotation and annotations.get(annotation):
                        values += [v.strip() for v in str(annotations[annotation]).split(",") if v.strip()]
                    values = list(dict.fromkeys(values))
                    if values:
                        patch.annotations[istio] = ",".join(values)
                        patch.reasons.append(f"{istio.rsplit('/', 1)[1]} from {field_name}")
                if patch.annotations:
                    self.item(
                        group.namespace,
                        key=f"exclusions:{group.key}",
                        level=EXACT,
                        mapping="MeshConfig / pod exclusion lists → pod annotations traffic.sidecar.istio.io/*",
                        subject=f"{group}: interception exclusions",
                        reason="Istio reads interception exclusions per pod: the workload's pod template carries "
                        "OSM's global and pod-level lists (a new workload needs the same annotations).",
                        generated=(f"patch {group.kind} {group.namespace}/{group.name}",),
                    )
            if patch.labels or patch.annotations:
                if group.kind == "Pod":
                    self.item(
                        group.namespace,
                        key=f"bare-pod:{group.key}",
                        level=MANUAL,
                        mapping="a pod no workload owns: labels and annotations take effect at creation only",
                        subject=str(group),
                        reason="Injection happens when a pod is created: re-create this pod from its manifest with "
                        "the patch's labels and annotations.",
                    )
                self.plan(group.namespace).patches.append(patch)

    def _unmeshed_reach(self, group: WorkloadGroup, subject: str) -> None:
        """Who reaches a pod that has no sidecar. Istio's auto mTLS sends it plaintext from every meshed caller, with
        no policy applied. OSM refuses the callers whose sidecars route to it as a mesh service (with mTLS, which it
        cannot answer): all of them in permissive mode, the sources of TrafficTargets to it in SMI mode; the others
        have no route to it and reach it in plaintext through enableEgress's passthrough, or not at all without it."""
        port = group.ports[0].number
        mapping = (
            "a pod without a sidecar in a meshed namespace: OSM refuses the callers that route to it with mTLS, "
            "Istio's auto mTLS reaches it in plaintext"
        )
        refused = self._callers_osm_refuses(group)
        if refused is None:
            self.item(
                group.namespace,
                key=f"unmeshed-reach:{group.key}",
                level=EXACT,
                mapping=mapping,
                subject=subject,
                reason="No TrafficTarget names it, so OSM's sidecars have no route to it and enableEgress passes "
                "their requests through in plaintext, which it answers; Istio's auto mTLS reaches it in plaintext "
                "too, with no policy applied in either mesh (mesh it to protect it).",
                scope=(f"group:{group.key}",),
            )
            return
        if self.mesh.mode == PERMISSIVE:
            why = "In permissive mode every OSM sidecar routes to it as a mesh service, with mTLS"
        elif refused and self.mesh.egress_passthrough:
            why = f"The sidecars of the sources a TrafficTarget to {group.identity} names route to it with mTLS"
        else:
            why = (
                "OSM's sidecars route to it with mTLS when a TrafficTarget to it names them, and refuse it at the "
                "caller otherwise (enableEgress is off)"
            )
        self.item(
            group.namespace,
            key=f"unmeshed-reach:{group.key}",
            level=BROADER,
            mapping=mapping,
            subject=subject,
            reason=f"{why}, which a pod without a sidecar cannot answer; Istio's auto mTLS falls back to plaintext, "
            "so every meshed caller reaches it with no policy applied (mesh it to protect it).",
            example=f"GET / from {refused[0] if refused else 'any meshed caller'} to {group.namespace}/{group.name} "
            f"port {port}",
            scope=(f"group:{group.key}",),
        )

    def _callers_osm_refuses(self, group: WorkloadGroup) -> list[Identity] | None:
        """The meshed callers OSM refuses at `group` (a pod without a sidecar), the first ones to name in an example
        ([] when all of them, none to name); None when OSM refuses none."""
        named = list(dict.fromkeys(g.source for g in self.mesh.grants if g.destination == group.identity and g.allows))
        others = [g.identity for g in self.mesh.groups if g.meshed and g.identity != group.identity]
        if self.mesh.mode == PERMISSIVE or not self.mesh.egress_passthrough:
            return list(dict.fromkeys([*named, *others]))
        return named or None

    # -- TrafficTargets --------------------------------------------------------------------------------------------
    def targets(self) -> None:
        by_target: dict[tuple[str, str], list[Grant]] = {}
        for grant in self.mesh.grants:
            by_target.setdefault((grant.target.namespace, grant.target.name), []).append(grant)
        for (namespace, name), grants in by_target.items():
            if not self.wanted(namespace):
                continue
            self._target(namespace, name, grants)

    def _target(self, namespace: str, name: str, grants: list[Grant]) -> None:
        subject = f"TrafficTarget {namespace}/{name}"
        tkey = target_key(namespace, name)
        first = grants[0]
        mapping = "TrafficTarget → AuthorizationPolicy ALLOW (selector from the destination's pods, principals)"
        if self.mesh.mode == PERMISSIVE:
            self.item(
                namespace,
                key=tkey,
                level=EXACT,
                mapping=mapping,
                subject=subject,
                reason="Permissive mode ignores TrafficTargets, so nothing is generated for it.",
                scope=(tkey,),
            )
            return
        if not self.meshed(namespace):
            self.item(
                namespace,
                key=tkey,
                level=EXACT,
                mapping=mapping,
                subject=subject,
                reason=f"Namespace {namespace} is not in the mesh, so OSM does not use it: nothing is generated.",
                scope=(tkey,),
            )
            return
        if first.ignored:
            self.item(
                namespace,
                key=tkey,
                level=EXACT,
                mapping=mapping,
                subject=subject,
                reason=f"OSM ignores it ({first.ignored}), so nothing is generated.",
                scope=(tkey,),
            )
            return
        if not first.routes:
            self.item(
                namespace,
                key=tkey,
                level=EXACT,
                mapping=mapping,
                subject=subject,
                reason="None of its rules resolves to a route, so OSM allows nothing through it; nothing is generated.",
                scope=(tkey,),
            )
            return
        destination = first.destination
        sources = list(dict.fromkeys(g.source for g in grants))
        own = [g for g in self.groups_in.get(destination.namespace, []) if g.identity == destination]
        dscope = (tkey, sa_key(destination))
        if not own:
            self.item(
                namespace,
                key=tkey,
                level=MANUAL,
                mapping=mapping,
                subject=subject,
                reason=f"No pod or workload runs as {destination}, so no label selector can be derived: nothing is "
                "generated (Istio selects workloads by label, not by service account).",
                scope=dscope,
            )
            return
        selectors = self._selectors(destination, own)
        names = [
            object_name("tt", name) if len(groups) == len(own) else object_name("tt", name, groups[0].name)
            for _selector, groups, _clashes in selectors
        ]
        refs = tuple(f"AuthorizationPolicy {namespace}/{n}" for n in names)
        rules, rule_origins = self._rules(namespace, name, first.routes, sources, destination, own, refs)
        for (selector, groups, clashes), policy_name in zip(selectors, names, strict=True):
            ref = f"AuthorizationPolicy {namespace}/{policy_name}"
            what = ", ".join(f"{k}={v}" for k, v in sorted(selector.items()))
            if not selector:
                self.item(
                    namespace,
                    key=f"{tkey}:selector:{groups[0].key}",
                    level=MANUAL,
                    mapping=mapping,
                    subject=f"{subject}: destination {groups[0]}",
                    reason=f"The pods of {groups[0]} carry no label to select them by, so no policy is generated "
                    "for them (they stay behind the allow-nothing policy).",
                    scope=(*dscope, f"group:{groups[0].key}"),
                )
                continue
            if clashes:
                other = clashes[0]
                level = BROADER
                reason = (
                    f"Istio selects by label: {what} also selects {other} (service account {other.service_account}), "
                    f"which receives this policy's rules although OSM only applies them to {destination}."
                )
                example = f"a request this TrafficTarget allows, from {sources[0]} to {other}"
            else:
                level = EXACT
                if len(groups) == len(own):
                    reason = f"The selector {what} picks exactly the pods that run as {destination}."
                else:
                    reason = (
                        f"No label set picks all of {destination}'s workloads and nothing else, so each gets its own "
                        f"policy; {what} picks exactly {groups[0]}."
                    )
                example = ""
            self.item(
                namespace,
                key=f"{tkey}:selector:{policy_name}",
                level=level,
                mapping=mapping,
                subject=f"{subject} (destination {destination}, sources {', '.join(map(str, sources))})",
                reason=reason,
                example=example,
                generated=(ref,),
                scope=(*dscope, *(f"group:{c.key}" for c in clashes)),
            )
            if not rules:
                continue
            body = {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": _metadata(policy_name, namespace, "TrafficTarget", name, subject, level),
                "spec": {
                    "selector": {"matchLabels": dict(sorted(selector.items()))},
                    "action": "ALLOW",
                    "rules": rules,
                },
            }
            self.plan(namespace).manifests.append(Manifest(body, subject))
            for index, origin in rule_origins.items():
                scope = (*origin.scope, *(f"group:{c.key}" for c in clashes))
                self.origins[(namespace, policy_name, index)] = RuleOrigin(origin.target, origin.route, scope)

    def _set_levels(self, namespace: str) -> None:
        """Each generated object's fidelity annotation: the worst of the items that name it."""
        plan = self.plan(namespace)
        naming: dict[str, list[str]] = {}
        for item in plan.items:
            for ref in item.generated:
                naming.setdefault(ref, []).append(item.level)
        for manifest in plan.manifests:
            levels = naming.get(manifest.ref, [])
            manifest.level = worst(levels)
            annotations = manifest.body["metadata"].get("annotations")
            if annotations is not None and FIDELITY in annotations:
                annotations[FIDELITY] = manifest.level

    def _selectors(
        self, destination: Identity, own: list[WorkloadGroup]
    ) -> list[tuple[dict[str, str], list[WorkloadGroup], list[WorkloadGroup]]]:
        others = [g for g in self.groups_in.get(destination.namespace, []) if g.identity != destination and g.meshed]
        common = dict(own[0].labels)
        for g in own[1:]:
            common = {k: v for k, v in common.items() if g.label_dict.get(k) == v}
        if common and not any(selects(common, o.label_dict) for o in others):
            return [(common, own, [])]
        return [(g.label_dict, [g], [o for o in others if selects(g.label_dict, o.label_dict)]) for g in own]

    def _rules(
        self,
        namespace: str,
        name: str,
        routes: tuple[Route, ...],
        sources: list[Identity],
        destination: Identity,
        own: list[WorkloadGroup],
        refs: tuple[str, ...],
    ) -> tuple[list[dict], dict[int, RuleOrigin]]:
        tkey = target_key(namespace, name)
        subject = f"TrafficTarget {namespace}/{name}"
        from_ = [{"source": {"principals": [principal(s) for s in sources]}}]
        ports: dict[int, Port] = {}
        for g in own:
            for p in g.ports:
                ports.setdefault(p.number, p)
        http_port = next((p.number for p in ports.values() if p.osm_protocol == HTTP), None)
        tcp_ports = sorted(n for n, p in ports.items() if p.osm_protocol == TCP)
        tcp_routes = [r for r in routes if r.kind == "TCPRoute"]
        http_routes = [r for r in routes if r.kind == "HTTPRouteGroup"]
        listed = sorted({int(p) for r in tcp_routes for p in r.ports if str(p).isdigit()})
        rules: list[dict] = []
        origins: dict[int, RuleOrigin] = {}
        # OSM admits a source at L4 on the union of the ports its TrafficTargets to this destination allow (any port
        # when one has no TCPRoute); an HTTP route then applies on those ports. Sources admitted alike share a rule.
        by_ports: dict[frozenset[int] | None, list[Identity]] = {}
        for source in sources:
            by_ports.setdefault(self._admitted_ports(destination, source), []).append(source)
        for route in http_routes:
            made = self._http_rule(namespace, name, route, sources[0], destination, http_port, refs)
            if made is None:
                continue
            operation, conditions = made
            rkey = route_key(namespace, route)
            for admitted, members in by_ports.items():
                rule = self._rule(members, operation, conditions, admitted)
                if rule is not None:
                    origins[len(rules)] = RuleOrigin(f"{namespace}/{name}", rkey, (route_scope(tkey, rkey),))
                    rules.append(rule)
        if tcp_routes:
            http_listed = [p for p in listed if p in ports and ports[p].osm_protocol == HTTP]
            unknown = [p for p in listed if p not in ports]
            rule_ports = [p for p in listed if p not in http_listed]
            notes = []
            if http_listed:
                notes.append(
                    f"port {', '.join(map(str, http_listed))} is an HTTP port, where OSM still requires an HTTP "
                    "route: it only limits the HTTP rules of this TrafficTarget to these ports"
                )
            if unknown:
                notes.append(f"port {', '.join(map(str, unknown))} is no Service port of {destination}'s pods")
            for route in tcp_routes:
                rkey = route_key(namespace, route)
                self.item(
                    namespace,
                    key=f"{tkey}:{rkey}",
                    level=EXACT,
                    mapping="TCPRoute ports → to.operation.ports",
                    subject=f"{subject}: TCPRoute {route.group} (ports {', '.join(route.ports) or 'none'})",
                    reason="The sources may open connections to the listed ports only, as OSM's network RBAC filter "
                    "allows" + (f"; {'; '.join(notes)}." if notes else "."),
                    generated=refs,
                    scope=(route_scope(tkey, rkey),),
                )
            if rule_ports:
                scopes = tuple(route_scope(tkey, route_key(namespace, r)) for r in tcp_routes)
                origins[len(rules)] = RuleOrigin(f"{namespace}/{name}", "", scopes)
                rules.append(
                    {"from": copy.deepcopy(from_), "to": [{"operation": {"ports": [str(p) for p in rule_ports]}}]}
                )
        elif tcp_ports and http_routes:
            origins[len(rules)] = RuleOrigin(f"{namespace}/{name}", "", (f"{tkey}|tcp-ports",))
            rules.append({"from": copy.deepcopy(from_), "to": [{"operation": {"ports": [str(p) for p in tcp_ports]}}]})
            self.item(
                namespace,
                key=f"{tkey}:tcp-ports",
                level=EXACT,
                mapping="TrafficTarget without TCPRoute → its sources on the destination's TCP ports",
                subject=f"{subject}: TCP ports {', '.join(map(str, tcp_ports))} of {destination}",
                reason="OSM admits a TrafficTarget's sources on every port when it has no TCPRoute, and a TCP port "
                "has no HTTP route to check, so they may connect to it: a rule with those ports keeps that.",
                generated=refs,
                scope=(f"{tkey}|tcp-ports",),
            )
        for port in ports.values():
            if port.osm_protocol != port.istio_protocol:
                self.item(
                    namespace,
                    key=f"protocol:{destination}:{port.number}",
                    level=MANUAL,
                    mapping="Service port protocol: OSM reads appProtocol (http without one), Istio also the port name",
                    subject=f"port {port.number} of {destination} (Service {', '.join(port.services)})",
                    reason=f"OSM treats it as {port.osm_protocol} and Istio as {port.istio_protocol}, so HTTP rules "
                    "apply in one mesh and not in the other: set appProtocol on the Service port.",
                    scope=(sa_key(destination),),
                )
        return rules, origins

    def _admitted_ports(self, destination: Identity, source: Identity) -> frozenset[int] | None:
        """The ports OSM's network RBAC admits `source` on at `destination` (None: any port)."""
        found: set[int] = set()
        for grant in self.grants_between.get((source, destination), []):
            if not grant.allows:
                continue
            tcp_routes = [r for r in grant.routes if r.kind == "TCPRoute"]
            if not tcp_routes:
                return None
            found |= {int(p) for r in tcp_routes for p in r.ports if str(p).isdigit()}
        return frozenset(found)

    @staticmethod
    def _rule(
        members: list[Identity], operation: dict, conditions: list[dict], admitted: frozenset[int] | None
    ) -> dict | None:
        operation = dict(operation)
        if admitted is not None:
            if not admitted:
                return None
            operation["ports"] = [str(p) for p in sorted(admitted)]
        rule: dict = {"from": [{"source": {"principals": [principal(m) for m in members]}}]}
        if operation:
            rule["to"] = [{"operation": operation}]
        if conditions:
            rule["when"] = copy.deepcopy(conditions)
        return rule

    def _http_rule(
        self,
        namespace: str,
        name: str,
        route: Route,
        source: Identity,
        destination: Identity,
        port: int | None,
        refs: tuple[str, ...],
    ) -> tuple[dict, list[dict]] | None:
        """The fidelity items of one HTTPRouteGroup match, and its operation and conditions (None: left out)."""
        tkey = target_key(namespace, name)
        rkey = route_key(namespace, route)
        scope = (route_scope(tkey, rkey),)
        subject = f"HTTPRouteGroup {namespace}/{route.group} match {route.match or '(unnamed)'}"
        path = translate(route.path_regex, PATH)
        methods = list(dict.fromkeys(route.methods)) or ["*"]
        any_method = "*" in methods
        headers = [(n, v) for n, v in route.headers if n.lower() not in ("host", ":authority")]
        hosts = [(n, v) for n, v in route.headers if n.lower() in ("host", ":authority")]
        header_translations = [(n, translate(v, HEADER)) for n, v in headers]
        method = "GET" if any_method or "GET" in methods else methods[0]
        base_headers = {n: (samples(v, HEADER) or ("",))[0] for n, v in headers}
        where = f"{destination} port {port}" if port else str(destination)

        def request(path_value: str, header_values: dict[str, str]) -> str:
            text = "".join(f" [{k}: {v!r}]" for k, v in header_values.items())
            return f"{method} {path_value}{text} from {source} to {where}"

        self.item(
            namespace,
            key=f"{tkey}:{rkey}:path",
            level=path.level,
            mapping="HTTPRouteGroup pathRegex → to.operation.paths",
            subject=f"{subject}: pathRegex {route.path_regex or '(none: .*)'}",
            reason=path.reason,
            example=request(path.example, base_headers) if path.example is not None else "",
            generated=refs,
            scope=scope,
        )
        self.item(
            namespace,
            key=f"{tkey}:{rkey}:methods",
            level=EXACT,
            mapping="HTTPRouteGroup methods → to.operation.methods (* → left out)",
            subject=f"{subject}: methods {', '.join(methods)}",
            reason="Methods match exactly in both meshes"
            + (": any method, so no methods are listed." if any_method else "."),
            generated=refs,
            scope=scope,
        )
        if headers:
            levels = [t.level for _, t in header_translations]
            worst_header = next((t for _, t in header_translations if t.level == worst(levels)), None)
            reasons = " ".join(t.reason for _, t in header_translations if t.level != EXACT)
            example = ""
            for header_name, t in header_translations:
                if t.example is not None and t.level != EXACT:
                    example = request(
                        path.values[0]
                        if path.values and "*" not in path.values[0]
                        else (samples(route.path_regex, PATH) or ("/",))[0],
                        {**base_headers, header_name: t.example},
                    )
                    break
            self.item(
                namespace,
                key=f"{tkey}:{rkey}:headers",
                level=worst(levels),
                mapping="HTTPRouteGroup headers → when: request.headers[...] in the same rule as from and to",
                subject=f"{subject}: headers " + ", ".join(f"{n}: {v}" for n, v in headers),
                reason="The header conditions sit in the same rule as the sources and paths, so only these sources "
                "sending these headers match (a separate rule, as in Microsoft's guide, would admit anyone sending "
                "them)." + (f" {reasons}" if reasons else ""),
                example=example if worst_header is not None and worst_header.level != EXACT else "",
                generated=refs,
                scope=scope,
            )
        if hosts:
            self.item(
                namespace,
                key=f"{tkey}:{rkey}:host",
                level=MANUAL,
                mapping="HTTPRouteGroup host header → to.operation.hosts",
                subject=f"{subject}: host {', '.join(v for _, v in hosts)}",
                reason="OSM matches a host header as a regex on :authority; write to.operation.hosts by hand: this "
                "match is left out (its requests are denied).",
                example=request((samples(route.path_regex, PATH) or ("/",))[0], base_headers),
                generated=refs,
                scope=scope,
            )
            return None
        if path.matches_nothing or any(t.matches_nothing for _, t in header_translations):
            return None
        operation: dict = {}
        if not any_method:
            operation["methods"] = methods
        if not path.any:
            operation["paths"] = list(path.values)
            if path.not_values:
                operation["notPaths"] = list(path.not_values)
        conditions = []
        for header_name, t in header_translations:
            condition: dict = {"key": f"request.headers[{header_name}]", "values": list(t.values) or ["*"]}
            if t.not_values:
                condition["notValues"] = list(t.not_values)
            conditions.append(condition)
        return operation, conditions

    # -- TrafficSplits ---------------------------------------------------------------------------------------------
    def splits(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        for split in self.mesh.splits:
            if not self.wanted(split.namespace):
                continue
            self._split(split, seen)

    def _split(self, split: SplitInfo, seen: dict[tuple[str, str], str]) -> None:
        subject = f"TrafficSplit {split.namespace}/{split.name}"
        key = f"ts:{split.namespace}/{split.name}"
        mapping = "TrafficSplit → VirtualService on the root host with weighted routes to the backends"
        if not self.meshed(split.namespace):
            self.item(
                split.namespace,
                key=key,
                level=EXACT,
                mapping=mapping,
                subject=subject,
                reason=f"Namespace {split.namespace} is not in the mesh, so OSM does not use it: nothing is generated.",
            )
            return
        first = seen.get((split.namespace, split.root))
        if first:
            self.item(
                split.namespace,
                key=key,
                level=MANUAL,
                mapping=mapping,
                subject=subject,
                reason=f"OSM uses one TrafficSplit per root service, and {first} has the same root "
                f"({split.root}): merge them by hand.",
            )
            return
        seen[(split.namespace, split.root)] = subject
        root = self.mesh.service(split.namespace, split.root)
        if root is None:
            self.item(
                split.namespace,
                key=key,
                level=MANUAL,
                mapping=mapping,
                subject=subject,
                reason=f"The root service {split.namespace}/{split.root} is not in the snapshot: no "
                "VirtualService is generated.",
            )
            return
        problems = [f"{svc}: {weight_problem(w)}" for svc, w in split.backends if weight_problem(w)]
        if problems:
            self.item(
                split.namespace,
                key=key,
                level=MANUAL,
                mapping=mapping,
                subject=subject,
                reason=f"OSM cannot use these weights ({'; '.join(problems)}), so no VirtualService is generated.",
            )
            return
        routes, notes, partial = [], [], False
        for svc, weight in split.backends:
            backend = self.mesh.service(split.namespace, svc)
            missing = backend.port_gap(root) if backend else ["all"]
            if backend is None or not (backend.port_numbers & root.port_numbers):
                notes.append(f"OSM skips backend {svc} (no Service with the root's ports): left out")
                continue
            if missing:
                partial = True
                notes.append(f"backend {svc} lacks port {', '.join(missing)}: OSM skips it on those ports only")
            routes.append({"destination": {"host": fqdn(svc, split.namespace)}, "weight": int(weight)})
        if not routes or sum(r["weight"] for r in routes) < 1:
            self.item(
                split.namespace,
                key=key,
                level=MANUAL,
                mapping=mapping,
                subject=subject,
                reason="The backends OSM can use weigh nothing in all (OSM needs a total of at least 1): no "
                "VirtualService is generated.",
            )
            return
        protocols = {osm_port_protocol(p) for p in root.ports}
        spec: dict = {"hosts": [fqdn(split.root, split.namespace)]}
        if HTTP in protocols:
            spec["http"] = [{"route": routes}]
        if TCP in protocols:
            spec["tcp"] = [{"route": routes}]
        name = object_name("ts", split.name)
        level = MANUAL if partial else EXACT
        body = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": _metadata(name, split.namespace, "TrafficSplit", split.name, subject, level),
            "spec": spec,
        }
        self.plan(split.namespace).manifests.append(Manifest(body, subject, level))
        weights = ", ".join(f"{r['destination']['host'].split('.', 1)[0]}: {r['weight']}" for r in routes)
        self.item(
            split.namespace,
            key=key,
            level=level,
            mapping=mapping,
            subject=f"{subject} (root {split.root}; {weights})",
            reason="Istio's weights are relative proportions like OSM's, so the integer weights are copied as they "
            "are" + (f"; {'; '.join(notes)}." if notes else "."),
            generated=(f"VirtualService {split.namespace}/{name}",),
        )


def opt_annotation(group: WorkloadGroup) -> str:
    return str(dict(group.annotations).get(INJECTION_ANNOTATION, "")).strip().lower()


def configured_sidecar(namespace: NamespaceInfo | None, group: WorkloadGroup) -> bool:
    """Whether the configuration gives the group's pods a sidecar (OSM's rules, which the translation keeps): in a
    meshed namespace with injection unless the pod opts out, without it only when the pod opts in."""
    if namespace is None or not namespace.meshed:
        return False
    opt = opt_annotation(group)
    if namespace.injection:
        return opt not in ("disabled", "no", "false")
    return opt in ("enabled", "yes", "true")


def osm_port_protocol(port: dict) -> str:
    app = str(port.get("appProtocol") or "").lower()
    return TCP if app.startswith("tcp") else HTTP


def translate_mesh(mesh: MeshInput, target: Target, namespaces: set[str] | None = None) -> Translation:
    """Translate the whole mesh (or only `namespaces`) for `target`."""
    builder = _Builder(mesh, target, namespaces)
    builder.cluster()
    builder.namespaces()
    builder.workloads()
    builder.targets()
    builder.splits()
    for namespace in list(builder.plans):
        builder._set_levels(namespace)
    plans = dict(sorted(builder.plans.items()))
    return Translation(mesh, target, plans, builder.cluster_items, builder.origins)
