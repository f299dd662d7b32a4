"""Traffic a service's pods refused, from the destination side's Refusal rows, for the pages that show services.

A destination's sidecar counts what it refuses per pod (hence per workload), never per Service: a service is given
the refusals of the workloads its selector picks. A split root's selector usually picks every backend's pods, so the
root shows what was refused on its way to any of them (bookthief's calls to bookstore in the demo). Where the
Prometheus lacks OSM's workload labels, the rows carry only the app label: they go to the services whose selector
that label alone satisfies (not a v2 service selecting app and version: which pods refused is unknown).
"""

from __future__ import annotations

from apps.clusters.models import Cluster
from apps.mesh.models import Service, Workload, selects

from .models import Refusal

ServiceKey = tuple[str, str]


def refused_by_service(cluster: Cluster, namespace: str = "") -> dict[ServiceKey, dict[str, float]]:
    """Refused per second by kind ("no-mtls", "identity", "route"), per (namespace, service) with any. Three queries
    whatever the mesh size."""
    refusals = Refusal.objects.filter(cluster=cluster, side=Refusal.Side.DESTINATION)
    services = Service.objects.filter(cluster=cluster)
    workloads = Workload.objects.filter(cluster=cluster)
    if namespace:
        refusals, services = refusals.filter(namespace=namespace), services.filter(namespace=namespace)
        workloads = workloads.filter(namespace=namespace)
    rows = list(refusals.values_list("namespace", "app", "workload_kind", "workload_name", "kind", "rate"))
    if not rows:
        return {}
    labels = {(ns, kind, name): tl or {} for ns, kind, name, tl in workloads.values_list(
        "namespace", "kind", "name", "template_labels")}  # fmt: skip
    out: dict[ServiceKey, dict[str, float]] = {}
    for ns, name, selector in services.values_list("namespace", "name", "selector"):
        for r_ns, app, w_kind, w_name, kind, rate in rows:
            if r_ns != ns or not selector:
                continue
            if w_kind:
                picked = selects(selector, labels.get((ns, w_kind, w_name), {}))
            else:  # only the app label is known: services that label alone satisfies
                picked = selects(selector, {"app": app})
            if picked:
                by_kind = out.setdefault((ns, name), {})
                by_kind[kind] = by_kind.get(kind, 0.0) + rate
    return out
