"""Find anything by part of its name in the selected cluster's latest snapshot: services, workloads, TrafficSplits,
policies (SMI and OSM's policy API) and namespaces, grouped by kind, each with the link to its page.

Every query goes through the models' default managers, so a namespace-limited user's search is scoped like every
page (apps/clusters/scope.py): a hidden namespace's objects are never counted, let alone listed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.db.models import Model, QuerySet
from django.urls import reverse

from apps.clusters.models import Cluster
from apps.mesh import models as mesh
from apps.mesh.names import object_url
from apps.overview.workloads import workload_url

PER_KIND = 10  # results listed per kind; the count says how many matched
MIN_LENGTH = 1
MAX_LENGTH = 253


@dataclass(frozen=True)
class Hit:
    kind: str  # the Kubernetes kind, shown beside the name
    namespace: str
    name: str
    url: str  # "" when the name breaks Kubernetes' rules: shown as inert text


@dataclass
class Group:
    label: str
    count: int
    hits: list[Hit] = field(default_factory=list)

    @property
    def more(self) -> int:
        return self.count - len(self.hits)


def _policy_url(kind: str, namespace: str, name: str) -> str:
    """SMI access objects are listed on the Policies page (a TrafficTarget by its anchor); OSM's policy API objects
    on the Mesh page (egress) or nowhere of their own, so the Mesh page."""
    if kind == "TrafficTarget":
        return f"{reverse('policies:policies')}#target-{quote(namespace)}-{quote(name)}"
    if kind in ("HTTPRouteGroup", "TCPRoute"):
        return reverse("policies:policies")
    return reverse("policies:mesh")


def _matching(model: type[Model], cluster: Cluster, query: str) -> QuerySet:
    return model.objects.filter(cluster=cluster, name__icontains=query).order_by("namespace", "name")


def _group(label: str, querysets: list[tuple[str, QuerySet]], hit: Callable[[str, Any], Hit]) -> Group:
    """One group from one or more querysets (one per kind): the first PER_KIND hits over all of them, and the count
    of every match."""
    group = Group(label=label, count=0)
    for kind, qs in querysets:
        group.count += qs.count()
        room = PER_KIND - len(group.hits)
        if room > 0:
            group.hits += [hit(kind, row) for row in qs[:room]]
    return group


def _linked(route: str) -> Callable[[str, Any], Hit]:
    return lambda kind, r: Hit(kind, r.namespace, r.name, object_url(route, kind, r.namespace, r.name))


POLICY_MODELS = [
    ("TrafficTarget", mesh.TrafficTarget),
    ("HTTPRouteGroup", mesh.HTTPRouteGroup),
    ("TCPRoute", mesh.TCPRoute),
    ("IngressBackend", mesh.IngressBackend),
    ("Egress", mesh.Egress),
    ("UpstreamTrafficSetting", mesh.UpstreamTrafficSetting),
    ("Retry", mesh.Retry),
]


def search(cluster: Cluster, query: str) -> list[Group]:
    """The groups with at least one match, in a fixed order: services, workloads, splits, policies, namespaces."""
    query = query.strip()[:MAX_LENGTH]
    if len(query) < MIN_LENGTH:
        return []
    return [
        group
        for group in (
            _group("Services", [("Service", _matching(mesh.Service, cluster, query))], _linked("overview:detail")),
            _group(
                "Workloads",
                [("Workload", _matching(mesh.Workload, cluster, query).order_by("namespace", "name", "kind"))],
                lambda _kind, r: Hit(r.kind, r.namespace, r.name, workload_url(r.namespace, r.kind, r.name)),
            ),
            _group(
                "Traffic splits",
                [("TrafficSplit", _matching(mesh.TrafficSplit, cluster, query))],
                _linked("canary:edit"),
            ),
            _group(
                "Policies",
                [(kind, _matching(model, cluster, query)) for kind, model in POLICY_MODELS],
                lambda kind, r: Hit(kind, r.namespace, r.name, _policy_url(kind, r.namespace, r.name)),
            ),
            _group(
                "Namespaces",
                [("Namespace", _matching(mesh.MeshNamespace, cluster, query))],
                lambda kind, r: Hit(kind, "", r.name, f"{reverse('overview:overview')}?namespace={quote(r.name)}"),
            ),
        )
        if group.count
    ]
