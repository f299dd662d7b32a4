"""Names in Prometheus → services and sources in the snapshot tables.

- `envoy_cluster_name` `<ns>/<svc>|<port>` → (ns, svc). Also the alt-stat form `<ns>/<pod>_<svc>|<port>`, the dotted
  form `<ns>/<pod>.<svc>|<port>`, and the truncated `<ns>/<pod>` a headless StatefulSet's dotted name becomes after
  Envoy's tag extraction: that pod's Service, found through the Pod and Service selector tables (a headless one first).
- OSM's WASM labels have every `-` and `.` turned into `_`: they are matched against the mangled snapshot names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from apps.mesh.istio_splits import virtual_service_splits
from apps.mesh.kept import KeptPerSnapshot
from apps.mesh.models import Pod, Service, TrafficSplit, Workload, selects

from .catalog import mangle


@dataclass
class Resolver:
    services: set[tuple[str, str]] = field(default_factory=set)
    headless: set[tuple[str, str]] = field(default_factory=set)
    selectors: dict[tuple[str, str, str], list[tuple[str, dict]]] = field(default_factory=dict)  # by one term
    pods: dict[tuple[str, str], dict] = field(default_factory=dict)  # (ns, pod) -> labels
    meshed: dict[tuple[str, str], bool] = field(default_factory=dict)  # (ns, svc) -> some pod has the sidecar
    workloads: dict[tuple[str, str], dict] = field(default_factory=dict)  # (mangled ns, mangled name) -> info
    namespaces: dict[str, str] = field(default_factory=dict)  # mangled -> real
    splits: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (ns, root service) -> backend services
    apps: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, svc) -> its pods' `app` label
    unresolved: set[str] = field(default_factory=set)
    _cache: dict[str, tuple[str, str] | None] = field(default_factory=dict)

    @classmethod
    def current(cls, cluster) -> Resolver:
        """The cluster's resolver, read from the snapshot only when it changed since this process last read it
        (apps.mesh.kept): each metrics cycle needs it, and reading 1,000 services' pods, workloads and selectors
        takes 0.1-0.3 s of the cycle. Each call gets its own `unresolved` (a cycle's warnings)."""
        resolver = _kept.get(cluster, "resolver", lambda: cls.for_cluster(cluster))
        return dataclasses.replace(resolver, unresolved=set())

    @property
    def weight(self) -> int:
        """About how much it holds: its pods, services and workloads."""
        return len(self.pods) + len(self.services) + len(self.workloads)

    @classmethod
    def for_cluster(cls, cluster) -> Resolver:
        r = cls()
        for ns, name, headless, selector in Service.objects.filter(cluster=cluster).values_list(
            "namespace", "name", "headless", "selector"
        ):
            r.services.add((ns, name))
            if headless:
                r.headless.add((ns, name))
            if selector:
                key, value = min(selector.items())
                r.selectors.setdefault((ns, key, value), []).append((name, selector))
            r.namespaces[mangle(ns)] = ns
            r.apps[(ns, name)] = (selector or {}).get("app", name)
        for ns, name, labels, sidecar in Pod.objects.filter(cluster=cluster).values_list(
            "namespace", "name", "labels", "has_sidecar"
        ):
            r.pods[(ns, name)] = labels or {}
            if sidecar:
                for svc in r.services_of_labels(ns, labels or {}):
                    r.meshed[(ns, svc)] = True
        for ns, name, kind, labels in Workload.objects.filter(cluster=cluster).values_list(
            "namespace", "name", "kind", "template_labels"
        ):
            r.namespaces.setdefault(mangle(ns), ns)
            r.workloads[(mangle(ns), mangle(name))] = {
                "namespace": ns,
                "name": name,
                "kind": kind,
                "app": (labels or {}).get("app", name),
                "services": r.services_of_labels(ns, labels or {}),
            }
        # Two splits on one root: the first by name counts, here and on the charts (ranges._routed_backends).
        for split in (
            TrafficSplit.objects.filter(cluster=cluster).only("namespace", "name", "root_service", "backends")
        ).order_by("namespace", "name"):
            r.splits.setdefault((split.namespace, split.root_service_name), split.backend_services)
        # On Istio, a VirtualService's weighted catch-all route splits its root the same way.
        for vs in virtual_service_splits(cluster):
            r.splits.setdefault((vs.namespace, vs.root_service), vs.backend_services)
        return r

    def services_of_labels(self, namespace: str, labels: dict) -> list[str]:
        """Services in `namespace` whose selector picks a pod with `labels`; headless ones first."""
        names = [
            svc
            for key, value in labels.items()
            for svc, sel in self.selectors.get((namespace, key, value), ())
            if selects(sel, labels)
        ]
        return sorted(names, key=lambda s: ((namespace, s) not in self.headless, s))

    def destination(self, cluster_name: str) -> tuple[str, str] | None:
        """(namespace, service) of an outbound `envoy_cluster_name`, or None when it names no known service."""
        if cluster_name in self._cache:
            found = self._cache[cluster_name]
        else:
            found = self._cache[cluster_name] = self._destination(cluster_name)
        if found is None:
            self.unresolved.add(cluster_name)
        return found

    def _destination(self, cluster_name: str) -> tuple[str, str] | None:
        if "/" not in cluster_name:
            return None
        ns, rest = cluster_name.split("/", 1)
        if "|" in rest:
            base = rest.split("|", 1)[0]
            for sep in ("_", "."):  # alt-stat `<pod>_<svc>` or an untruncated dotted `<pod>.<svc>`
                if sep in base:
                    base = base.split(sep, 1)[1]
            return (ns, base) if base else None
        # Truncated `<ns>/<pod>`: the pod's service; or a pre-0.11 `<ns>/<svc>`.
        labels = self.pods.get((ns, rest))
        if labels is not None:
            owners = self.services_of_labels(ns, labels)
            if owners:
                return (ns, owners[0])
        if (ns, rest) in self.services:
            return (ns, rest)
        return None

    def wasm_workload(self, namespace: str, name: str) -> dict | None:
        return self.workloads.get((namespace, name))


# Resolvers kept per cluster, the least recently used dropped first once they hold more than KEPT_OBJECTS pods,
# services and workloads together. A synthetic 1,000-service mesh is ~6,800; a fleet of 50 clusters of 200 services,
# ~50,000.
KEPT_OBJECTS = 60_000
_kept: KeptPerSnapshot[Resolver] = KeptPerSnapshot(KEPT_OBJECTS, lambda resolver: resolver.weight)
