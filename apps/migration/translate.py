"""OSM's configuration, as the snapshot holds it, translated into Istio objects, with the fidelity of every item.

What is translated (the mapping of `shared/reference/istio-migration.md`):
- namespaces in the mesh and their injection → the namespace label (`istio.io/rev=<revision>` for the AKS add-on,
  `istio-injection=enabled` for upstream Istio); pod opt-outs and opt-ins → pod template labels;
- mTLS (OSM always uses it between sidecars) → a STRICT PeerAuthentication per namespace;
- SMI mode → an allow-nothing AuthorizationPolicy per namespace, plus one ALLOW policy per TrafficTarget whose rules
  carry the sources, the routes and the header conditions in the same rule; permissive mode → no AuthorizationPolicy;
- TrafficSplits → a VirtualService on the root host with the backends' weights;
- MeshConfig exclusions → per-workload pod annotations (`traffic.sidecar.istio.io/...`);
- OSM's policy API (read by `policy_api.py` as OSM applies it): an IngressBackend → an ALLOW AuthorizationPolicy on
  the backend Service's pods, admitting the ingress controller by principal (it gets an Istio sidecar for its outbound
  traffic only, its Ingresses send to the Service through it) and IPRange sources by ipBlocks (with PERMISSIVE mTLS
  on that port); an Egress → a ServiceEntry exported to its sources' namespaces (Istio cannot say "these service
  accounts" without an egress gateway: said where it matters), with the outbound traffic policy REGISTRY_ONLY when
  OSM's enableEgress is off; an UpstreamTrafficSetting → a DestinationRule's connectionPool (its local rate limits
  need an EnvoyFilter: manual); a Retry → a route of the destination's VirtualService matching the source's pods
  (sourceNamespace and sourceLabels) with its retries.

Names are predictable (`meshboard-tt-<TrafficTarget>`, `meshboard-ts-<TrafficSplit>`, `meshboard-allow-nothing`,
`meshboard-mtls`, `meshboard-ib-<IngressBackend>-<Service>`, `meshboard-egress-<Egress>`, `meshboard-dr-<Service>`,
`meshboard-retry-<Service>`), and every object carries the labels `app.kubernetes.io/managed-by: meshboard` and
`meshboard.io/generated-from: <Kind>.<name>`, with the full reference and its fidelity in annotations.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from apps.mesh.models import selects, weight_problem
from apps.policies.istio_eval import ALLOW_ANY, REGISTRY_ONLY
from apps.policies.model import (
    FIDELITY,
    GENERATED_FROM,
    HTTP,
    MANAGED_BY,
    PERMISSIVE,
    SMI,
    TCP,
    UNKNOWN,
    EgressInfo,
    Item,
    Manifest,
    MeshInput,
    NamespaceInfo,
    ObjectPatch,
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
from apps.policies.osm_policy import go_duration_seconds
from apps.policies.policy_api import Resolved, egress_ignored, resolve_ingress
from apps.policies.regex import BROADER, EXACT, HEADER, MANUAL, NARROWER, PATH, samples, translate, worst
from apps.policies.smi_access import Grant, Identity, Route

from .osm_eval import egress_capture_key, egress_key, ingress_key

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
NGINX_CONTROLLER = "k8s.io/ingress-nginx"
NGINX = "nginx.ingress.kubernetes.io/"
# ingress-nginx's annotations for HTTPS to the backend with a client certificate (OSM's ingress mTLS).
NGINX_BACKEND_TLS = tuple(
    NGINX + a
    for a in ("backend-protocol", "proxy-ssl-secret", "proxy-ssl-verify", "proxy-ssl-name", "proxy-ssl-server-name")
)
UNLISTED_HOST = "meshboard-unlisted.example"  # a host no Egress names (RFC 2606's .example)


def istio_duration(text: object) -> str:
    """A Go duration ("1s", "100ms") as Istio's protobuf duration in seconds ("1s", "0.1s"); "" when it is none."""
    seconds = go_duration_seconds(text)
    if seconds is None or seconds <= 0:
        return ""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


@dataclass
class NamespacePlan:
    name: str
    info: NamespaceInfo | None
    manifests: list[Manifest] = field(default_factory=list)
    patches: list[WorkloadPatch] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    object_patches: list[ObjectPatch] = field(default_factory=list)

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
    # Workload groups the bundle gives an Istio sidecar for their outbound traffic only (ingress controllers): their
    # requests carry this identity, while their inbound is not intercepted.
    outbound_only: dict[str, Identity] = field(default_factory=dict)
    outbound_policy: str = ALLOW_ANY  # the mesh's outboundTrafficPolicy the report asks for

    @property
    def object_patches(self) -> list[ObjectPatch]:
        return [p for plan in self.namespaces.values() for p in plan.object_patches]

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
        self.outbound_only: dict[str, Identity] = {}
        self.outbound_policy = ALLOW_ANY
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
        if egress is not True:
            self.item(
                "",
                key="egress",
                level=MANUAL,
                mapping="MeshConfig enableEgress: false → mesh outboundTrafficPolicy REGISTRY_ONLY",
                subject="MeshConfig: egress disabled"
                if egress is False
                else "MeshConfig: enableEgress not set (false to OSM)",
                reason=(
                    "OSM's sidecars pass nothing through to destinations they have no route for; set "
                    "`outboundTrafficPolicy: {mode: REGISTRY_ONLY}` in the mesh config "
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

    # -- OSM's policy API: IngressBackend ------------------------------------------------------------------------
    def ingress(self) -> None:
        resolved = resolve_ingress(self.mesh)
        for r in resolved:
            if self.wanted(r.policy.namespace):
                self._ingress_backend(r)
                self._ingress_patches(r)
        controllers: dict[str, tuple[WorkloadGroup, list[Resolved]]] = {}
        for r in resolved:
            if r.admission is None:
                continue
            for g in r.source_groups:
                controllers.setdefault(g.key, (g, []))[1].append(r)
        for group, uses in controllers.values():
            if self.wanted(group.namespace):
                self._ingress_controller(group, uses)

    def _controller_principals(self, r: Resolved) -> tuple[list[Identity], str]:
        """The service accounts Istio should admit for this backend entry, and why not when it cannot say ("").

        Over HTTPS OSM admits the AuthenticatedPrincipal names on the client certificate. The ingress controller,
        which has no sidecar, presents the one OSM issues it (the MeshConfig's certificate.ingressGateway): under
        Istio its sidecar presents its service account instead. Without a Service source nothing says who presents
        a name: a meshed workload's own identity reaches the pod through the mesh, never through this chain."""
        controllers = list(dict.fromkeys(g.identity for g in r.source_groups))
        admission = r.admission
        assert admission is not None
        if admission.any_principal:
            return controllers, ""
        if controllers:
            presented = set(self.mesh.ingress_gateway_names)
            return (controllers if presented.intersection(admission.principals) else []), ""
        if admission.principals:
            return [], (
                f"OSM admits a client outside the mesh presenting a certificate named "
                f"{', '.join(admission.principals)}, and no Service source says which pods those are: under Istio a "
                "principal is a sidecar's, a different caller"
            )
        return [], ""

    def _ingress_backend(self, r: Resolved) -> None:
        ib = r.policy
        namespace = ib.namespace
        key = f"ib:{namespace}/{ib.name}:{r.entry.get('name', '')}:{r.entry.get('port')}"
        scope = (ingress_key(f"{namespace}/{ib.name}"),)
        mapping = (
            "IngressBackend → AuthorizationPolicy ALLOW on the backend's pods: a Service source → the ingress "
            "controller's principal (its outbound through an Istio sidecar), an IPRange → ipBlocks"
        )
        if r.admission is None:
            self.item(
                namespace,
                key=key,
                level=EXACT,
                mapping=mapping,
                subject=r.text,
                reason=f"OSM builds no ingress for it ({r.problem}), so nothing is generated.",
                scope=scope,
            )
            return
        admission = r.admission
        service = r.service
        assert service is not None
        selector = dict(sorted(service.selector))
        port = str(admission.port)
        name = object_name("ib", ib.name, admission.service)
        replacement = (
            "On the AKS add-on, its managed Istio ingress gateway is the supported replacement (`az aks mesh "
            "enable-ingress-gateway --ingress-gateway-type external` or `internal`: Service "
            "aks-istio-ingressgateway-external in aks-istio-ingress, routed with a Gateway and a VirtualService); "
            "its policy then admits `namespaces: [aks-istio-ingress]`."
            if self.target.aks
            else "Istio's own ingress gateway (a Gateway and a VirtualService) is the idiomatic replacement; its "
            "policy then admits the gateway's principal."
        )
        principals, why_not = self._controller_principals(r)
        permissive = self.mesh.mode == PERMISSIVE
        rules: list[dict] = []  # ALLOW rules (SMI mode, next to the allow-nothing policy)
        denials: list[dict] = []  # DENY rules (permissive mode, where no ALLOW policy may select the pods)
        notes: list[str] = []
        refs: list[str] = []
        level = EXACT
        to = [{"operation": {"ports": [port]}}]
        if why_not:
            level = MANUAL
            notes.append(f"nothing is generated for it: {why_not}")
        elif admission.source_services and not principals:
            notes.append(
                "its AuthenticatedPrincipal sources are not the name on the client certificate OSM issues to the "
                "ingress controller (MeshConfig certificate.ingressGateway), so OSM admits nobody: nothing is generated"
            )
        elif principals and permissive:
            notes.append(
                f"{', '.join(map(str, principals))} reach port {port} over mTLS by Istio's default (permissive mode "
                "generates no AuthorizationPolicy)"
            )
        elif principals:
            rules.append({"from": [{"source": {"principals": [principal(i) for i in principals]}}], "to": to})
            how = "mTLS from its Istio sidecar" if r.source_groups else "mTLS"
            notes.append(f"{', '.join(map(str, principals))} admitted on port {port} by principal ({how})")
        elif not admission.ranges and admission.protocol == "http":
            level = MANUAL
            notes.append(
                "it admits any address in plaintext: Istio could only with PERMISSIVE mTLS and a rule without "
                "sources on that port, which would also admit every meshed caller: write it by hand"
            )
        if admission.ranges and not why_not and admission.tls:
            level = MANUAL
            notes.append(
                f"its IPRange sources ({', '.join(admission.ranges)}) speak TLS with a client certificate from OSM's "
                "CA, which Istio's sidecar cannot check: not generated"
            )
        elif admission.ranges and not why_not:
            ranges = list(admission.ranges)
            mtls = object_name("ib", ib.name, admission.service, "mtls")
            self.plan(namespace).manifests.append(
                Manifest(
                    {
                        "apiVersion": "security.istio.io/v1",
                        "kind": "PeerAuthentication",
                        "metadata": _metadata(mtls, namespace, "IngressBackend", ib.name, ib.ref, level),
                        "spec": {
                            "selector": {"matchLabels": selector},
                            "mtls": {"mode": "STRICT"},
                            "portLevelMtls": {port: {"mode": "PERMISSIVE"}},
                        },
                    },
                    ib.ref,
                )
            )
            refs.append(f"PeerAuthentication {namespace}/{mtls}")
            if permissive:
                denials.append({"from": [{"source": {"notPrincipals": ["*"], "notIpBlocks": ranges}}], "to": to})
                how = "a DENY policy refuses plaintext from elsewhere (permissive mode has no ALLOW policy)"
            else:
                rules.append({"from": [{"source": {"ipBlocks": ranges}}], "to": to})
                how = "an ipBlocks rule admits them"
            notes.append(
                f"plaintext from addresses in {', '.join(ranges)} on port {port}: PeerAuthentication {mtls} accepts "
                f"plaintext on that port only, and {how} (a caller keeps its source address only without a proxy "
                "in between)"
            )
        for action, found, policy_name in (("ALLOW", rules, name), ("DENY", denials, name + "-deny")):
            if not found:
                continue
            body = {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": _metadata(policy_name, namespace, "IngressBackend", ib.name, ib.ref, level),
                "spec": {"selector": {"matchLabels": selector}, "action": action, "rules": found},
            }
            existing = next(
                (
                    m
                    for m in self.plan(namespace).manifests
                    if m.kind == "AuthorizationPolicy" and m.name == policy_name
                ),
                None,
            )
            if existing is None:
                self.plan(namespace).manifests.append(Manifest(body, ib.ref))
                start = 0
            else:
                start = len(existing.body["spec"]["rules"])
                existing.body["spec"]["rules"] += found
            for index in range(len(found)):
                self.origins[(namespace, policy_name, start + index)] = RuleOrigin(f"{namespace}/{ib.name}", "", scope)
            refs.append(f"AuthorizationPolicy {namespace}/{policy_name}")
        transport = (
            "HTTPS with a client certificate" if admission.client_certificate else "HTTPS" if admission.tls else "HTTP"
        )
        self.item(
            namespace,
            key=key,
            level=level,
            mapping=mapping,
            subject=f"{r.text}: {transport} from "
            + ", ".join(
                [f"Service {s}" for s in admission.source_services]
                + [f"IPRange {c}" for c in admission.ranges]
                + [f"AuthenticatedPrincipal {p}" for p in admission.principals]
            ),
            reason=f"Selector {', '.join(f'{k}={v}' for k, v in selector.items())} picks the pods of Service "
            f"{namespace}/{admission.service}, where OSM applies it; " + "; ".join(notes) + ". " + replacement,
            generated=tuple(refs),
            scope=scope,
        )

    def _ingress_controller(self, group: WorkloadGroup, uses: list[Resolved]) -> None:
        """An ingress controller that IngressBackends name by its Service: an Istio sidecar for its outbound only,
        plaintext from in-cluster callers kept, and its Ingresses sent through the sidecar."""
        namespace = group.namespace
        info = self.mesh.namespace(namespace)
        subject = f"{group} (ingress controller of {', '.join(dict.fromkeys(r.policy.ref for r in uses))})"
        scope = tuple(dict.fromkeys(ingress_key(f"{r.policy.namespace}/{r.policy.name}") for r in uses))
        mapping = "ingress controller outside OSM's mesh → Istio sidecar for its outbound traffic only"
        if configured_sidecar(info, group):
            self.item(
                namespace,
                key=f"ingress-controller:{group.key}",
                level=MANUAL,
                mapping=mapping,
                subject=subject,
                reason="It runs OSM's sidecar, so its identity is already its service account's; check that it still "
                "reaches its backends once Istio's sidecar replaces OSM's.",
                scope=scope,
            )
            return
        patch = next(
            (p for p in self.plan(namespace).patches if (p.kind, p.name) == (group.kind, group.name)), None
        ) or WorkloadPatch(group.kind, namespace, group.name)
        if patch not in self.plan(namespace).patches:
            self.plan(namespace).patches.append(patch)
        key, value = self.target.pod_opt_in_label
        patch.labels[key] = value
        patch.annotations["traffic.sidecar.istio.io/includeInboundPorts"] = ""
        patch.reasons.append("ingress controller: Istio sidecar for its outbound traffic only")
        self.outbound_only[group.key] = group.identity
        refs = [f"patch {group.kind} {namespace}/{group.name}"]
        # Callers inside the cluster keep reaching it in plaintext: auto mTLS would send mTLS to a pod that carries
        # Istio's sidecar, which does not intercept its inbound.
        hosts = [
            (svc.namespace, svc.name)
            for svc in self.mesh.services
            if svc.namespace == namespace and svc.selector and selects(dict(svc.selector), group.label_dict)
        ]
        for svc_ns, svc_name in hosts:
            dr = self._destination_rule(svc_ns, fqdn(svc_name, svc_ns), f"Service {svc_ns}/{svc_name}")
            dr["spec"].setdefault("trafficPolicy", {})["tls"] = {"mode": "DISABLE"}
            refs.append(f"DestinationRule {svc_ns}/{dr['metadata']['name']}")
        steps = []
        for r in uses:
            assert r.admission is not None
            for ingress in self._routing_ingresses(r):
                if ingress.controller == NGINX_CONTROLLER:
                    steps.append(
                        f"Ingress {ingress.namespace}/{ingress.name} is patched in its namespace's bundle "
                        "(nginx's service-upstream and upstream-vhost, OSM's HTTPS to the backend removed)"
                    )
                else:
                    steps.append(
                        f"configure Ingress {ingress.namespace}/{ingress.name}'s controller "
                        f"({ingress.controller or 'unknown'}) to send to the Service's cluster IP with its host name, "
                        "so that the sidecar routes it with mTLS"
                    )
        steps = list(dict.fromkeys(steps))
        permissive = self.mesh.mode == PERMISSIVE
        self.item(
            namespace,
            key=f"ingress-controller:{group.key}",
            level=BROADER if permissive else MANUAL,
            mapping=mapping,
            subject=subject,
            reason=f"Its pods get Istio's sidecar ({key}={value}) with inbound interception off "
            '(traffic.sidecar.istio.io/includeInboundPorts: ""): clients outside the cluster reach it as now, and '
            f"its requests to the backends carry its identity {principal(group.identity)} over mTLS, which the "
            "IngressBackends' AuthorizationPolicies admit; a DestinationRule with TLS off keeps in-cluster callers on "
            "plaintext to it (auto mTLS would otherwise speak mTLS to a pod that does not intercept it). Through the "
            "sidecar its requests follow the VirtualServices (a TrafficSplit's weights), where OSM's ingress went to "
            "the root Service's pods directly, and Istio no longer tells its plaintext from its HTTPS: an "
            "IngressBackend that admitted it over HTTPS only now admits whatever it sends. Review: "
            + ("; ".join(steps) if steps else "its Ingresses must send to the Service (not pod addresses)")
            + ". "
            + (
                "In permissive mode no AuthorizationPolicy is generated, so with a sidecar it reaches every meshed "
                "workload, where OSM admitted it only through IngressBackends."
                if permissive
                else "Its principal is named only in those policies."
            ),
            example=f"GET / from {principal(group.identity)} to a meshed workload no IngressBackend names"
            if permissive
            else "",
            generated=tuple(refs),
            scope=(*scope, f"origin:{group.key}"),
        )

    def _routing_ingresses(self, r: Resolved) -> list:
        """The Ingresses that route to the backend Service of an IngressBackend entry."""
        service = r.admission.service if r.admission is not None else ""
        return [
            i
            for i in self.mesh.ingresses
            if i.namespace == r.policy.namespace and any(route.get("service") == service for route in i.routes)
        ]

    def _ingress_patches(self, r: Resolved) -> None:
        """Merge patches of the ingress-nginx Ingresses that route to an admitted backend: send to the Service
        (nginx's service-upstream) with its host name, and drop OSM's HTTPS to the backend (Istio's mTLS replaces
        it); null removes an annotation."""
        if r.admission is None or not r.source_groups:
            return
        namespace = r.policy.namespace
        plan = self.plan(namespace)
        for ingress in self._routing_ingresses(r):
            if ingress.controller != NGINX_CONTROLLER:
                continue
            patch = next((p for p in plan.object_patches if p.name == ingress.name), None)
            if patch is None:
                patch = ObjectPatch("ingress", "Ingress", namespace, ingress.name)
                plan.object_patches.append(patch)
            annotations = patch.patch.setdefault("metadata", {}).setdefault("annotations", {})
            services = {route.get("service") for route in ingress.routes}
            annotations[NGINX + "service-upstream"] = "true"
            reasons = ["service-upstream: the sidecar routes to the Service"]
            if len(services) == 1:
                annotations[NGINX + "upstream-vhost"] = fqdn(r.admission.service, namespace)
                reasons.append("upstream-vhost: the Service's host name, which the sidecar routes by")
            else:
                reasons.append("set the host per backend by hand: this Ingress routes to several Services")
            current = dict(ingress.annotations)
            if str(current.get(NGINX + "backend-protocol", "")).upper() in ("HTTPS", "GRPCS"):
                for name in NGINX_BACKEND_TLS:
                    if name in current:
                        annotations[name] = None
                reasons.append("OSM's HTTPS to the backend removed: Istio's mTLS replaces it")
            patch.reasons = reasons

    def _destination_rule(self, namespace: str, host: str, source: str) -> dict:
        """The one DestinationRule of a host (Istio applies one per host), made on first use."""
        name = object_name("dr", host.split(".", 1)[0] if host.endswith(".svc.cluster.local") else host)
        plan = self.plan(namespace)
        for m in plan.manifests:
            if m.kind == "DestinationRule" and m.body["spec"]["host"] == host:
                if source not in m.source:
                    m.source += f"; {source}"
                    m.body["metadata"]["annotations"][GENERATED_FROM] = m.source
                return m.body
        body = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": _metadata(name, namespace, source.split(" ", 1)[0], source.rsplit("/", 1)[-1], source, EXACT),
            "spec": {"host": host},
        }
        plan.manifests.append(Manifest(body, source))
        return body

    # -- Egress ----------------------------------------------------------------------------------------------------
    def egresses(self) -> None:
        self.outbound_policy = ALLOW_ANY if self._egress_flag() else REGISTRY_ONLY
        captures: dict[tuple[Identity, int], list[str]] = {}
        for egress in self.mesh.egresses:
            if not self.wanted(egress.namespace):
                continue
            self._egress(egress, captures)
        for (source, port), policies in captures.items():
            self.item(
                source.namespace,
                key=egress_capture_key(source, port),
                level=BROADER,
                mapping="Egress HTTP port under enableEgress → nothing in Istio (ALLOW_ANY passes other hosts through)",
                subject=f"{', '.join(policies)}: HTTP port {port} of {source}",
                reason=f"OSM gives {source}'s sidecar a chain for plain HTTP on port {port} that routes only the "
                "Egress's "
                "hosts, so every other plain-HTTP request on that port outside the mesh's routes (another host, a "
                "Service whose pods have no sidecar) gets a 404, while its other traffic passes through "
                "(enableEgress); Istio routes by host and lets the rest through. To keep OSM's restriction, set the "
                "outbound traffic policy to REGISTRY_ONLY, as OSM's documentation asks with Egress policies "
                "(enableEgress: false).",
                example=f"GET / from {source} to http://{UNLISTED_HOST}:{port} (outside the mesh)",
                scope=(egress_capture_key(source, port),),
            )

    def _egress_flag(self) -> bool:
        """OSM's egress passthrough (enableEgress; unset is Go's false)."""
        return self.mesh.egress_passthrough

    def _egress(self, egress: EgressInfo, captures: dict[tuple[Identity, int], list[str]]) -> None:
        namespace = egress.namespace
        key = f"egress:{namespace}/{egress.name}"
        scope = (egress_key(f"{namespace}/{egress.name}"),)
        where = ", ".join(egress.hosts + egress.ip_addresses) or "nothing"
        ports = ", ".join(f"{n}/{p or '?'}" for n, p in egress.ports)
        subject = f"{egress.ref}: {', '.join(map(str, egress.sources)) or 'no source'} → {where} ({ports})"
        mapping = "Egress → ServiceEntry (MESH_EXTERNAL) exported to the sources' namespaces"
        ignored = egress_ignored(self.mesh, egress)
        if ignored:
            self.item(namespace, key=key, level=EXACT, mapping=mapping, subject=subject,
                      reason=f"OSM ignores it ({ignored}), so nothing is generated.", scope=scope)  # fmt: skip
            return
        exported = sorted({s.namespace for s in egress.sources})
        se_ports = []
        notes: list[str] = []
        level = EXACT
        for number, protocol in egress.ports:
            istio = {"http": "HTTP", "https": "TLS"}.get(protocol, "TCP")
            se_ports.append({"number": number, "name": f"{istio.lower()}-{number}", "protocol": istio})
        se_ports = list({p["number"]: p for p in se_ports}.values())
        refs = []
        if egress.hosts and se_ports:
            refs.append(self._service_entry(egress, "", list(egress.hosts), [], se_ports, exported, scope))
        if egress.ip_addresses and se_ports:
            host = f"{egress.name}.{namespace}.meshboard.egress"
            refs.append(self._service_entry(egress, "ip", [host], list(egress.ip_addresses), se_ports, exported, scope))
        if egress.upstream_setting:
            setting = next(
                u for u in self.mesh.upstream_settings if (u.namespace, u.name) == (namespace, egress.upstream_setting)
            )
            for host in egress.hosts:
                dr = self._destination_rule(namespace, host, egress.ref)
                pool = self._connection_pool(setting.connection_settings)
                if pool:
                    dr["spec"].setdefault("trafficPolicy", {})["connectionPool"] = pool
                    refs.append(f"DestinationRule {namespace}/{dr['metadata']['name']}")
            notes.append(f"the connection limits of UpstreamTrafficSetting {egress.upstream_setting} go to each host's "
                         "DestinationRule")  # fmt: skip
        http_ports = [n for n, p in egress.ports if p == "http"]
        if egress.routes and egress.hosts and http_ports:
            for host in egress.hosts:
                refs.append(self._egress_routes(egress, host, http_ports, exported))
            notes.append(
                "its HTTPRouteGroup matches become the HTTP routes of a VirtualService on each host, with no other "
                "route: path and header regexes and methods are matched by Envoy in both meshes (RE2, whole value), "
                "and a request no route matches gets 404 in both"
            )
        elif egress.routes is not None:
            level = BROADER
            notes.append(
                "its HTTPRouteGroup matches name no group that exists, so OSM routes nothing to its hosts, where a "
                "ServiceEntry admits any request to them: fix or remove the match"
                if not egress.routes
                else "its HTTPRouteGroup matches apply to HTTP ports only, and it has none: a ServiceEntry admits any "
                "request"
            )
        if egress.hosts and any(p not in ("http", "https") for _n, p in egress.ports):
            level = MANUAL if level == EXACT else level
            notes.append(
                "its TCP ports name hosts: a TCP connection carries no host name, so OSM matches TCP egress by IP "
                "range and Istio a TCP ServiceEntry with DNS hosts by port alone; review them (not checked here)"
            )
        if egress.other_sources:
            notes.append(f"OSM reads ServiceAccount sources only, so it ignores {', '.join(egress.other_sources)}")
        passthrough = self._egress_flag() is True
        if passthrough:
            notes.append(
                "with enableEgress every OSM sidecar passes traffic out of the mesh anyway, so its sources restrict "
                "nothing more in OSM than in Istio (ALLOW_ANY): the ServiceEntry only registers the host"
            )
            for source in egress.sources:
                for number, protocol in egress.ports:
                    if protocol == "http":
                        captures.setdefault((source, number), []).append(egress.ref)
        else:
            others = sorted(
                {
                    g.identity
                    for g in self.mesh.groups
                    if g.namespace in exported and g.meshed and g.identity not in egress.sources
                },
                key=str,
            )
            if others:
                level = BROADER
                notes.append(
                    "Istio limits a ServiceEntry by namespace (exportTo), not by service account, so "
                    f"{', '.join(map(str, others))} reach it too; per service account only an egress gateway with an "
                    "AuthorizationPolicy on it can say it (a Sidecar's egress hosts are per workload but no security "
                    "boundary): not generated"
                )
            else:
                notes.append(
                    f"with the outbound traffic policy REGISTRY_ONLY (see Mesh-wide), only namespace "
                    f"{', '.join(exported)} sees the ServiceEntry, and only the sources run there"
                )
        example = ""
        if level == BROADER and egress.hosts and egress.ports:
            example = f"from another service account of {', '.join(exported)} to {egress.hosts[0]}:{egress.ports[0][0]}"
        self.item(
            namespace,
            key=key,
            level=level,
            mapping=mapping,
            subject=subject,
            reason="ServiceEntry (MESH_EXTERNAL; DNS resolution for hosts, none for IP ranges) with the Egress's "
            "ports, "
            f"exported to {', '.join(exported)}; " + "; ".join(notes) + ".",
            example=example,
            generated=tuple(refs),
            scope=(*scope, *(f"se:{r.split(' ', 1)[1]}" for r in refs if r.startswith("ServiceEntry"))),
        )

    def _service_entry(
        self,
        egress: EgressInfo,
        suffix: str,
        hosts: list[str],
        addresses: list[str],
        ports: list[dict],
        exported: list[str],
        scope: tuple[str, ...],
    ) -> str:
        name = object_name("egress", egress.name, suffix)
        spec: dict = {"hosts": hosts}
        if addresses:
            spec["addresses"] = addresses
        spec.update(
            ports=ports,
            location="MESH_EXTERNAL",
            resolution="NONE" if addresses else "DNS",
            exportTo=exported,
        )
        body = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": _metadata(name, egress.namespace, "Egress", egress.name, egress.ref, EXACT),
            "spec": spec,
        }
        self.plan(egress.namespace).manifests.append(Manifest(body, egress.ref))
        return f"ServiceEntry {egress.namespace}/{name}"

    def _egress_routes(self, egress: EgressInfo, host: str, ports: list[int], exported: list[str]) -> str:
        """A VirtualService on an Egress host with one HTTP route per HTTPRouteGroup match (and HTTP port): OSM's
        `rds-egress.<port>` virtual host for it, whose routes are those matches and nothing else."""
        name = object_name("egress", egress.name, host)
        http = []
        for route in egress.routes or ():
            for port in ports:
                match: dict = {"port": port}
                if route.path_regex and route.path_regex != ".*":
                    match["uri"] = {"regex": route.path_regex}
                methods = [m for m in route.methods if m != "*"]
                if methods and "*" not in route.methods:
                    match["method"] = {"exact": methods[0]} if len(methods) == 1 else {"regex": "|".join(methods)}
                if route.headers:
                    match["headers"] = {n.lower(): {"regex": v} for n, v in route.headers}
                http.append(
                    {
                        "name": f"{route.group}-{route.match}-{port}",
                        "match": [match],
                        "route": [{"destination": {"host": host, "port": {"number": port}}}],
                    }
                )
        body = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": _metadata(name, egress.namespace, "Egress", egress.name, egress.ref, EXACT),
            "spec": {"hosts": [host], "exportTo": exported, "http": http},
        }
        self.plan(egress.namespace).manifests.append(Manifest(body, egress.ref))
        return f"VirtualService {egress.namespace}/{name}"

    # -- UpstreamTrafficSetting ---------------------------------------------------------------------------------------
    @staticmethod
    def _connection_pool(settings: dict) -> dict:
        tcp = settings.get("tcp") if isinstance(settings.get("tcp"), dict) else {}
        http = settings.get("http") if isinstance(settings.get("http"), dict) else {}
        pool: dict = {}
        if isinstance(tcp.get("maxConnections"), int):
            pool.setdefault("tcp", {})["maxConnections"] = tcp["maxConnections"]
        timeout = istio_duration(tcp.get("connectTimeout"))
        if timeout:
            pool.setdefault("tcp", {})["connectTimeout"] = timeout
        for osm, istio in (
            ("maxRequests", "http2MaxRequests"),
            ("maxPendingRequests", "http1MaxPendingRequests"),
            ("maxRequestsPerConnection", "maxRequestsPerConnection"),
            ("maxRetries", "maxRetries"),
        ):
            if isinstance(http.get(osm), int) and not isinstance(http.get(osm), bool):
                pool.setdefault("http", {})[istio] = http[osm]
        return pool

    def upstream_settings(self) -> None:
        for setting in self.mesh.upstream_settings:
            namespace = setting.namespace
            if not self.wanted(namespace):
                continue
            scope = (f"uts:{namespace}/{setting.name}",)
            service = next(
                (s for s in self.mesh.services if s.namespace == namespace and fqdn(s.name, namespace) == setting.host),
                None,
            )
            used_by_egress = [
                e for e in self.mesh.egresses if e.namespace == namespace and e.upstream_setting == setting.name
            ]
            if service is None:
                self.item(
                    namespace,
                    key=f"uts:{namespace}/{setting.name}",
                    level=EXACT,
                    mapping="UpstreamTrafficSetting → DestinationRule trafficPolicy.connectionPool",
                    subject=f"{setting.ref} (host {setting.host})",
                    reason="Its host is no Service of its namespace, so OSM applies it to no mesh upstream"
                    + (
                        f"; the Egress {', '.join(e.name for e in used_by_egress)} that names it carries its limits."
                        if used_by_egress
                        else ": nothing is generated."
                    ),
                    scope=scope,
                )
                continue
            pool = self._connection_pool(setting.connection_settings)
            refs: tuple[str, ...] = ()
            if pool:
                dr = self._destination_rule(namespace, setting.host, setting.ref)
                dr["spec"].setdefault("trafficPolicy", {})["connectionPool"] = pool
                refs = (f"DestinationRule {namespace}/{dr['metadata']['name']}",)
            limits = [f"{k}: {v}" for part in pool.values() for k, v in part.items()]
            self.item(
                namespace,
                key=f"uts:{namespace}/{setting.name}",
                level=EXACT,
                mapping="UpstreamTrafficSetting connectionSettings → DestinationRule trafficPolicy.connectionPool "
                "(maxRequests → http2MaxRequests, maxPendingRequests → http1MaxPendingRequests)",
                subject=f"{setting.ref} (host {setting.host})",
                reason=(
                    "Both are the circuit-breaker limits every caller's sidecar keeps for this host "
                    f"({', '.join(limits)})"
                    if pool
                    else "It sets no connection limit"
                )
                + "; a request a TrafficSplit sends to a backend goes to the backend's host in both meshes, which this "
                "does not limit. OSM 1.2's UpstreamTrafficSetting has no outlier detection, so none is generated.",
                generated=refs,
                scope=scope,
            )
            self._rate_limits(setting, scope)

    def _rate_limits(self, setting, scope: tuple[str, ...]) -> None:
        rate = setting.rate_limit.get("local") if isinstance(setting.rate_limit.get("local"), dict) else {}
        limits = []
        if isinstance(rate.get("tcp"), dict):
            limits.append(f"{rate['tcp'].get('connections')} connections per {rate['tcp'].get('unit')}")
        if isinstance(rate.get("http"), dict):
            limits.append(f"{rate['http'].get('requests')} requests per {rate['http'].get('unit')}")
        for route in setting.http_routes:
            local = ((route.get("rateLimit") or {}) if isinstance(route.get("rateLimit"), dict) else {}).get("local")
            if isinstance(local, dict):
                limits.append(f"{local.get('requests')} requests per {local.get('unit')} on path {route.get('path')}")
        if not limits:
            return
        self.item(
            setting.namespace,
            key=f"uts-rate:{setting.namespace}/{setting.name}",
            level=MANUAL,
            mapping="UpstreamTrafficSetting rateLimit.local, httpRoutes[].rateLimit → EnvoyFilter (local_ratelimit)",
            subject=f"{setting.ref}: {'; '.join(limits)}",
            reason="OSM enforces these at the upstream's own sidecar. Istio has no field for a local rate limit: it "
            "takes an EnvoyFilter inserting Envoy's local_ratelimit filter on the workload's inbound ("
            + (
                "EnvoyFilter is allowed on the AKS add-on but outside Azure's support"
                if self.target.aks
                else "it patches Envoy's generated configuration, which can change between Istio versions"
            )
            + "), and a per-route limit also needs the route OSM matches by its path regex, which Istio's inbound "
            "configuration does not have (one default route). Not generated: write it by hand, or use a global rate "
            "limit service.",
            scope=scope,
        )

    # -- Retry -----------------------------------------------------------------------------------------------------
    def retries(self) -> None:
        for retry in self.mesh.retries:
            for dest in retry.destinations:
                if self.wanted(str(dest.get("namespace", ""))):
                    self._retry(retry, dest)

    def _retry(self, retry, dest: dict) -> None:
        dest_ns, dest_name = str(dest.get("namespace", "")), str(dest.get("name", ""))
        who = f"{retry.source.get('namespace', '')}/{retry.source.get('name', '')}"
        subject = f"{retry.ref}: {who} → Service {dest_ns}/{dest_name}"
        key = f"retry:{retry.namespace}/{retry.name}:{dest_ns}/{dest_name}"
        mapping = (
            "Retry → VirtualService http.retries on the destination, matched by the source's sourceNamespace and "
            "sourceLabels"
        )
        scope = (f"retry:{retry.namespace}/{retry.name}",)

        def item(level: str, reason: str, **kw) -> None:
            self.item(dest_ns, key=key, level=level, mapping=mapping, subject=subject, reason=reason, scope=scope, **kw)

        if not self.mesh.feature("enableRetryPolicy"):
            item(EXACT, "OSM ignores Retries while the MeshConfig's featureFlags.enableRetryPolicy is off: nothing is "
                 "generated.")  # fmt: skip
            return
        if retry.source.get("kind") != "ServiceAccount" or dest.get("kind") != "Service":
            item(EXACT, "OSM reads a ServiceAccount source and Service destinations only: nothing is generated.")
            return
        service = self.mesh.service(dest_ns, dest_name)
        if service is None or not self.meshed(dest_ns):
            item(EXACT, f"Service {dest_ns}/{dest_name} is not in the mesh's snapshot: OSM retries nothing there.")
            return
        if not any(osm_port_protocol(p) == HTTP for p in service.ports if isinstance(p, dict)):
            item(EXACT, "The Service has TCP ports only, and OSM retries HTTP requests only: nothing is generated.")
            return
        source = Identity(str(retry.source.get("namespace") or retry.namespace), str(retry.source.get("name", "")))
        own = [g for g in self.groups_in.get(source.namespace, []) if g.identity == source]
        if not own:
            item(
                MANUAL,
                f"No pod runs as {source}, so there are no labels to match its requests by; a rule without them would "
                "retry every caller's requests: nothing is generated.",
            )
            return
        selectors = self._selectors(source, own)
        clashes = [c for _sel, _groups, found in selectors for c in found]
        policy = retry.policy
        retries: dict = {}
        if isinstance(policy.get("numRetries"), int):
            retries["attempts"] = policy["numRetries"]
        per_try = istio_duration(policy.get("perTryTimeout"))
        if per_try:
            retries["perTryTimeout"] = per_try
        if policy.get("retryOn"):
            retries["retryOn"] = str(policy["retryOn"])
        backoff = istio_duration(policy.get("retryBackoffBaseInterval"))
        if backoff and backoff != "0.025s":
            retries["backoff"] = backoff
        retries["retryIgnorePreviousHosts"] = False  # OSM's retry policy sets no host predicate
        match = [
            {"sourceNamespace": source.namespace, "sourceLabels": dict(sorted(sel.items()))}
            for sel, _groups, _found in selectors
            if sel
        ]
        host = fqdn(dest_name, dest_ns)
        vs = self._virtual_service(dest_ns, dest_name, retry.ref)
        routes = [r for r in vs["spec"]["http"] if "match" not in r]
        default_route = copy.deepcopy(routes[-1]["route"]) if routes else [{"destination": {"host": host}}]
        retry_rule = {"name": f"retry-{retry.namespace}-{retry.name}"[:255], "match": match, "route": default_route,
                      "retries": retries}  # fmt: skip
        position = len(vs["spec"]["http"]) - len(routes)
        vs["spec"]["http"].insert(position, retry_rule)
        level, notes = EXACT, []
        if clashes:
            level = BROADER
            notes.append(
                f"the labels that pick {source}'s pods also pick {', '.join(map(str, clashes))}, whose requests get "
                "these retries too"
            )
        if "backoff" in retries:
            level = MANUAL if level == EXACT else level
            notes.append(
                f"retryBackoffBaseInterval becomes retries.backoff ({retries['backoff']}), a field of recent Istio "
                "(in 1.29's CRD): check that the target's CRD has it (`kubectl explain "
                "virtualservice.spec.http.retries.backoff`), since an apiserver without it drops it and Envoy's 25 ms "
                "applies"
            )
        ref = f"VirtualService {dest_ns}/{vs['metadata']['name']}"
        item(
            level,
            f"A route matching {source}'s pods (sourceNamespace {source.namespace}, sourceLabels "
            + "; ".join(", ".join(f"{k}={v}" for k, v in sel.items()) for sel, _g, _c in selectors)
            + f") before the default route retries as OSM does: attempts {retries.get('attempts')}, perTryTimeout "
            f"{retries.get('perTryTimeout')}, retryOn {retries.get('retryOn')}, without avoiding hosts already tried "
            "(OSM sets no host predicate); other callers keep Istio's default retry policy (2 attempts on connection "
            "failures), where OSM retries nothing" + ("; " + "; ".join(notes) if notes else "") + ".",
            example=f"a request from {clashes[0]} to {dest_ns}/{dest_name}, retried" if clashes else "",
            generated=(ref,),
        )

    def _virtual_service(self, namespace: str, service: str, source: str) -> dict:
        """The one VirtualService of a Service's host in its namespace: the TrafficSplit's, or a new one."""
        host = fqdn(service, namespace)
        plan = self.plan(namespace)
        for m in plan.manifests:
            if m.kind == "VirtualService" and m.body["spec"]["hosts"] == [host]:
                if source not in m.source:
                    m.source += f"; {source}"
                    m.body["metadata"]["annotations"][GENERATED_FROM] = m.source
                m.body["spec"].setdefault("http", [{"route": [{"destination": {"host": host}}]}])
                return m.body
        name = object_name("retry", service)
        body = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": _metadata(name, namespace, "Retry", source.rsplit("/", 1)[-1], source, EXACT),
            "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]},
        }
        plan.manifests.append(Manifest(body, source))
        return body

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
    builder.ingress()
    builder.egresses()
    builder.upstream_settings()
    builder.retries()
    for namespace in list(builder.plans):
        builder._set_levels(namespace)
    plans = dict(sorted(builder.plans.items()))
    return Translation(
        mesh,
        target,
        plans,
        builder.cluster_items,
        builder.origins,
        outbound_only=builder.outbound_only,
        outbound_policy=builder.outbound_policy,
    )
