"""Everything the workload page shows besides its charts, read from the snapshot tables (and the SMI policy in them).

A workload's outbound traffic is the EdgeKPI rows its pods' sidecars reported: those whose source workload labels
name it, and, where those labels are blank (a Prometheus without OSM's relabeling, or a bare pod), those whose source
app label is its pods' `app` label, which every workload with that label shares (the page says so). Its refusals are
the Refusal rows of the same sources. A p99 cannot be added across destinations: each edge keeps its own, and the
chart draws one from the summed histogram.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from apps.clusters import scope
from apps.clusters.models import Cluster
from apps.mesh.models import Pod, Service, Workload, selects
from apps.metrics.models import EdgeKPI, MetricsState, Refusal, success_ratio
from apps.policies import istio_access, smi_access
from apps.policies.smi_access import REFUSAL_WORDS, Grant, Identity, Verdict

from .workloads import PAGE_KINDS, POD, SUMMED, WorkloadIndex, WorkloadRef

# What each refusal counts: connections, or requests for an HTTP route refusal (apps.metrics.catalog.refusals).
REFUSAL_UNITS = {"route": "req/s"}


@dataclass(frozen=True)
class Found:
    ref: WorkloadRef
    workload: Workload | None  # None for a bare pod
    pod: Pod | None  # the bare pod itself


def find_workload(cluster: Cluster, namespace: str, url_kind: str, name: str) -> Found | None:
    """The workload of that URL in the latest snapshot, or None."""
    kind = PAGE_KINDS.get(url_kind)
    if kind is None:
        return None
    if kind == POD:
        pod = Pod.objects.filter(cluster=cluster, namespace=namespace, name=name, workload_kind="").first()
        return Found(WorkloadRef(namespace, POD, name), None, pod) if pod else None
    workload = Workload.objects.filter(cluster=cluster, namespace=namespace, kind=kind, name=name).first()
    return Found(WorkloadRef(namespace, kind, name), workload, None) if workload else None


@dataclass(frozen=True)
class RefusalLine:
    side: str
    kind: str
    rate: float
    by_app: bool

    @property
    def words(self) -> str:
        return REFUSAL_WORDS.get(self.kind, self.kind)

    @property
    def unit(self) -> str:
        return REFUSAL_UNITS.get(self.kind, "conn/s")


@dataclass(frozen=True)
class DestinationVerdict:
    namespace: str
    service: str
    verdict: Verdict | None
    problem: str = ""  # why no verdict (a destination not in the snapshot)


@dataclass
class PolicyView:
    mode: str  # permissive | smi | unknown | istio
    identities: list[Identity]
    grants: list[Grant]  # every TrafficTarget source entry naming one of its service accounts
    verdicts: list[DestinationVerdict]
    not_allowed: list[str]  # destinations refusing traffic that policy denies it (an inference, see smi_access)

    @property
    def allowing(self) -> list[Grant]:
        return [g for g in self.grants if g.allows]

    @property
    def nothing_allows(self) -> bool:
        """In SMI mode (or an unknown mode, judged as SMI) no TrafficTarget lets it call anything."""
        return self.mode not in (smi_access.PERMISSIVE, istio_access.ISTIO) and not self.allowing


@dataclass
class WorkloadDetail:
    found: Found
    pods: list[Pod]
    service_accounts: list[str]
    app_labels: list[str]
    outbound: list[EdgeKPI]
    totals: dict[str, float]
    by_app: bool  # some outbound rows or refusals are attributed by app label only
    sharing: list[WorkloadRef]  # other workloads whose pods carry the same app label
    refusals: list[RefusalLine]
    services: list[Service]
    policy: PolicyView
    metrics_state: MetricsState | None
    # For a namespace-limited user: requests/s it sent to namespaces hidden from them (in no row and no total above);
    # None for everyone else.
    hidden_outbound: float | None = None

    @property
    def ref(self) -> WorkloadRef:
        return self.found.ref

    @property
    def workload(self) -> Workload | None:
        return self.found.workload

    @property
    def pods_ready(self) -> int:
        return sum(1 for p in self.pods if p.ready)

    @property
    def pods_meshed(self) -> int:
        return sum(1 for p in self.pods if p.has_sidecar)

    @property
    def success_rate(self) -> float | None:
        return success_ratio(self.totals.get("request_rate"), self.totals.get("rate_5xx"))

    @property
    def caller_refusals(self) -> list[RefusalLine]:
        return [r for r in self.refusals if r.side == Refusal.Side.CALLER]

    @property
    def destination_refusals(self) -> list[RefusalLine]:
        return [r for r in self.refusals if r.side == Refusal.Side.DESTINATION]

    @property
    def refusals_unavailable(self) -> str:
        state = self.metrics_state
        if state is None:
            return "no metrics collected yet"
        from apps.metrics.catalog import DENIALS_NOT_KEPT
        from apps.metrics.istio_catalog import DENIALS_STATEMENT

        # Istio counts no refusal apart from the 403s in each edge's 4xx rate: say so rather than "none measured".
        reason = state.denials_unavailable_reason
        return reason if DENIALS_NOT_KEPT in reason or reason == DENIALS_STATEMENT else ""


def _sources(ref: WorkloadRef, apps: list[str], fields: tuple[str, str, str, str]) -> Q:
    """Rows whose source labels are this workload's: by its OSM workload labels, or (labels blank) by app label.
    `fields`: the model's namespace, app, workload kind and workload name fields."""
    ns_field, app_field, kind_field, name_field = fields
    kind, name = ref.source
    by_app = Q(**{name_field: "", f"{app_field}__in": apps})
    mine = Q(**{kind_field: kind, name_field: name}) | by_app if name else by_app
    return Q(**{ns_field: ref.namespace}) & mine


EDGE_SOURCE = ("source_namespace", "source_service", "source_workload_kind", "source_workload_name")
REFUSAL_SOURCE = ("namespace", "app", "workload_kind", "workload_name")


def workload_detail(cluster: Cluster, found: Found) -> WorkloadDetail:
    ref, workload = found.ref, found.workload
    if workload is not None:
        pods = list(
            Pod.objects.filter(cluster=cluster, namespace=ref.namespace, workload_kind=ref.kind, workload_name=ref.name)
        )
        labels = workload.template_labels or {}
    else:
        pods = [found.pod] if found.pod else []
        labels = found.pod.labels if found.pod else {}
    apps = sorted({lbl for lbl in [labels.get("app"), *(p.labels.get("app") for p in pods)] if isinstance(lbl, str)})
    accounts = sorted({p.service_account or "default" for p in pods})
    if workload is not None and not pods:
        accounts = [workload.service_account or "default"]

    outbound = list(
        EdgeKPI.objects.filter(cluster=cluster)
        .filter(_sources(ref, apps, EDGE_SOURCE))
        .order_by("destination_namespace", "destination_service")
    )
    totals: dict[str, float] = {}
    for e in outbound:
        for name in SUMMED:
            value = getattr(e, name)
            if value is not None:
                totals[name] = totals.get(name, 0.0) + value
    refusal_rows = Refusal.objects.filter(cluster=cluster).filter(_sources(ref, apps, REFUSAL_SOURCE))
    refusals = sorted(
        (RefusalLine(r.side, r.kind, r.rate, not r.workload_name) for r in refusal_rows),
        key=lambda r: (r.side, -r.rate, r.kind),
    )
    by_app = any(not e.source_workload_name for e in outbound) or any(r.by_app for r in refusals)
    index = WorkloadIndex.load(cluster, [ref.namespace])
    sharing = sorted({other for app in apps for other in index.by_app.get((ref.namespace, app), []) if other != ref})

    pod_labels = [p.labels for p in pods] or [labels]
    services = [
        s
        for s in Service.objects.filter(cluster=cluster, namespace=ref.namespace)
        if any(selects(s.selector, lbl) for lbl in pod_labels) or selects(s.selector, labels)
    ]
    return WorkloadDetail(
        found=found,
        pods=sorted(pods, key=lambda p: p.name),
        service_accounts=accounts,
        app_labels=apps,
        outbound=outbound,
        totals=totals,
        by_app=by_app,
        sharing=sharing,
        refusals=refusals,
        services=services,
        policy=_policy(cluster, ref, accounts, apps, outbound, refused=any(r.side == "caller" for r in refusals)),
        metrics_state=MetricsState.objects.filter(cluster=cluster).first(),
        hidden_outbound=_hidden_outbound(cluster, ref, apps),
    )


def _hidden_outbound(cluster: Cluster, ref: WorkloadRef, apps: list[str]) -> float | None:
    """What the scoped EdgeKPI rows leave out for a namespace-limited user, summed so that no name shows."""
    allowed = scope.current_namespaces()
    if allowed is None:
        return None
    with scope.unscoped():
        edges = EdgeKPI.objects.filter(cluster=cluster).filter(_sources(ref, apps, EDGE_SOURCE))
        return sum(e.request_rate or 0.0 for e in edges.exclude(destination_namespace__in=allowed))


def _policy(
    cluster: Cluster,
    ref: WorkloadRef,
    accounts: list[str],
    apps: list[str],
    outbound: list[EdgeKPI],
    *,
    refused: bool,
) -> PolicyView:
    """What SMI policy says about this workload as a caller, through the policies app's evaluator; when its sidecars
    sent traffic outside their routes (`refused`), which refusing destinations policy denies it. On Istio, what the
    live AuthorizationPolicies say of each destination it calls (the migration assistant's Istio evaluator, as on
    the Policies page); Istio has no TrafficTargets to list nor refusals counted without the caller."""
    policy = istio_access.current_policy(cluster)
    identities = [Identity(ref.namespace, sa) for sa in accounts]
    istio = isinstance(policy, istio_access.IstioAccess)
    grants = [] if istio else [g for g in policy.grants if g.source in identities]
    verdicts = []
    try:
        source = smi_access.resolve(cluster, ref.endpoint)
    except smi_access.UnknownEndpoint:
        source = None
    for dns, dsvc in dict.fromkeys((e.destination_namespace, e.destination_service) for e in outbound):
        if source is None:
            break
        try:
            destination = smi_access.resolve(cluster, f"service {dns}/{dsvc}")
        except smi_access.UnknownEndpoint:
            verdicts.append(DestinationVerdict(dns, dsvc, None, "not a Service of the latest snapshot"))
            continue
        judge = istio_access.verdict if istio else smi_access.verdict
        verdicts.append(DestinationVerdict(dns, dsvc, judge(policy, source, destination)))
    not_allowed: list[str] = []
    if istio:
        return PolicyView(policy.mode, identities, grants, verdicts, not_allowed)
    kind, name = ref.source
    for party in smi_access.denied_traffic(cluster, policy).callers if refused else []:
        if party.namespace != ref.namespace:
            continue
        if (party.workload_kind, party.name) == (kind, name) if party.by_workload else party.name in apps:
            not_allowed += party.not_allowed
    return PolicyView(policy.mode, identities, grants, verdicts, sorted(set(not_allowed)))
