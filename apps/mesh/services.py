"""Collecting a cluster into the snapshot tables."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid

from django.db import models, transaction
from django.utils import timezone

from apps.clusters.kube import KubeError, gateway_for
from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.runs import recorded_run
from apps.core.gc import gc_paused

from .collector import ClusterSnapshot, collect
from .decode import Row
from .models import (
    Canary,
    Egress,
    EndpointSlice,
    HTTPRouteGroup,
    Ingress,
    IngressBackend,
    IngressClass,
    IstioAuthorizationPolicy,
    IstioDestinationRule,
    IstioGateway,
    IstioPeerAuthentication,
    IstioServiceEntry,
    IstioVirtualService,
    MeshNamespace,
    MeshRootCertificate,
    MeshState,
    MetricTemplate,
    Node,
    Pod,
    Retry,
    Service,
    ServiceAccount,
    TCPRoute,
    TrafficSplit,
    TrafficTarget,
    UpstreamTrafficSetting,
    Workload,
)
from .signals import snapshot_stored

log = logging.getLogger(__name__)

# Snapshot key -> (model, the fields besides `cluster` that identify a row).
TABLES: dict[str, tuple[type[models.Model], tuple[str, ...]]] = {
    "namespaces": (MeshNamespace, ("namespace", "name")),
    "nodes": (Node, ("namespace", "name")),
    "services": (Service, ("namespace", "name")),
    "serviceaccounts": (ServiceAccount, ("namespace", "name")),
    "workloads": (Workload, ("namespace", "kind", "name")),
    "pods": (Pod, ("namespace", "name")),
    "endpointslices": (EndpointSlice, ("namespace", "name")),
    "trafficsplits": (TrafficSplit, ("namespace", "name")),
    "traffictargets": (TrafficTarget, ("namespace", "name")),
    "httproutegroups": (HTTPRouteGroup, ("namespace", "name")),
    "tcproutes": (TCPRoute, ("namespace", "name")),
    "canaries": (Canary, ("namespace", "name")),
    "metrictemplates": (MetricTemplate, ("namespace", "name")),
    "ingresses": (Ingress, ("namespace", "name")),
    "ingressclasses": (IngressClass, ("namespace", "name")),
    "ingressbackends": (IngressBackend, ("namespace", "name")),
    "egresses": (Egress, ("namespace", "name")),
    "upstreamtrafficsettings": (UpstreamTrafficSetting, ("namespace", "name")),
    "retries": (Retry, ("namespace", "name")),
    "meshrootcertificates": (MeshRootCertificate, ("namespace", "name")),
    "virtualservices": (IstioVirtualService, ("namespace", "name")),
    "destinationrules": (IstioDestinationRule, ("namespace", "name")),
    "serviceentries": (IstioServiceEntry, ("namespace", "name")),
    "gateways": (IstioGateway, ("namespace", "name")),
    "authorizationpolicies": (IstioAuthorizationPolicy, ("namespace", "name")),
    "peerauthentications": (IstioPeerAuthentication, ("namespace", "name")),
}


def _digest(row: Row) -> str:
    return hashlib.blake2b(json.dumps(row, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def _sync_table(cluster: Cluster, key: str, rows: list[Row]) -> bool:
    """Make the table's rows for `cluster` equal `rows`, writing only what changed; True when anything did."""
    model, unique = TABLES[key]
    existing = {
        tuple(values[:-2]): (values[-2], values[-1])
        for values in model.objects.filter(cluster=cluster).values_list(*unique, "pk", "digest")
    }
    # Keyed dict: a duplicate key would make PostgreSQL's ON CONFLICT touch a row twice and fail the whole run.
    incoming = {tuple(row[f] for f in unique): row for row in rows}
    changed = []
    for row_key, row in incoming.items():
        digest = _digest(row)
        if existing.get(row_key, (None, None))[1] != digest:
            changed.append(model(cluster=cluster, digest=digest, **row))
    if changed:
        model.objects.bulk_create(
            changed,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["cluster", *unique],
            update_fields=sorted({*rows[0].keys(), "digest"} - set(unique)),
        )
    gone = [pk for row_key, (pk, _) in existing.items() if row_key not in incoming]
    for start in range(0, len(gone), 500):
        model.objects.filter(pk__in=gone[start : start + 500]).delete()
    return bool(changed or gone)


def store_snapshot(cluster: Cluster, snapshot: ClusterSnapshot) -> None:
    """Replace the cluster's snapshot in one transaction; tables the snapshot lacks keep their rows."""
    with transaction.atomic():
        changed = [_sync_table(cluster, key, rows) for key, rows in snapshot.rows.items()]
        # The mesh's state counts as the snapshot too (the MeshConfig's permissive mode, OSM or Istio): readers that
        # keep what they derived (apps.mesh.kept) must see it change.
        before = MeshState.objects.filter(cluster=cluster).values(*snapshot.state).first()
        MeshState.objects.update_or_create(cluster=cluster, defaults={**snapshot.state, "collected_at": timezone.now()})
        if any(changed) or before is None or _digest(before) != _digest(snapshot.state):
            snapshot_changed(cluster)


def snapshot_changed(cluster: Cluster) -> None:
    """A new MeshState.snapshot_version for the cluster, inside the caller's transaction: readers that keep what they
    read of the snapshot (apps.metrics.resolve) read it again."""
    MeshState.objects.filter(cluster=cluster).update(snapshot_version=uuid.uuid4())


def last_counts(cluster: Cluster) -> dict[str, int]:
    """The counts of the cluster's last collection that read something: how many objects each kind had, which decides
    whether it is listed whole or in pages (`apps.mesh.collector.page_size_for`). Empty before the first."""
    counts = (
        CollectionRun.objects.filter(
            cluster=cluster,
            kind=CollectionRun.Kind.CLUSTER,
            status__in=[CollectionRun.Status.OK, CollectionRun.Status.PARTIAL],
        )
        .order_by("-started_at")
        .values_list("counts", flat=True)
        .first()
    )
    return {k: v for k, v in counts.items() if isinstance(v, int)} if isinstance(counts, dict) else {}


def collect_into_snapshot(cluster: Cluster, run: CollectionRun) -> ClusterSnapshot:
    """Read the cluster, write the snapshot, and fill in the run record. KubeError propagates."""
    with gateway_for(cluster) as gateway:
        try:
            snapshot = collect(
                gateway,
                control_plane_namespace=cluster.control_plane_namespace,
                namespaces=cluster.watched_namespaces,
                sizes=last_counts(cluster),
            )
        finally:
            run.api_requests = gateway.requests
    started = time.perf_counter()
    store_snapshot(cluster, snapshot)
    snapshot.timings["write"] = time.perf_counter() - started
    for receiver, result in snapshot_stored.send_robust(sender=Cluster, cluster=cluster):
        if isinstance(result, Exception):  # a follow-up's bug must not fail the collection that fed it
            log.error("after the snapshot of %s: %s failed", cluster.name, receiver, exc_info=result)
    run.counts = snapshot.counts
    run.warnings = snapshot.warnings
    run.timings = {phase: round(seconds, 4) for phase, seconds in snapshot.timings.items()}
    run.status = CollectionRun.Status.PARTIAL if snapshot.partial else CollectionRun.Status.OK
    return snapshot


def collect_and_record(cluster: Cluster, *, attempt: int = 1) -> tuple[CollectionRun, KubeError | None]:
    """One recorded collection of `cluster`. A KubeError does not propagate: it is recorded and returned."""
    try:
        # The cyclic GC stays off for the whole cycle, not only while the lists are decoded (`collect`): switched
        # back on while the rows are alive, its first pass scans every one of them (0.16 s of a 2.4 s cycle at 1,000
        # services); at the end of the cycle they are gone.
        with gc_paused(), recorded_run(cluster, CollectionRun.Kind.CLUSTER, attempt=attempt) as run:
            collect_into_snapshot(cluster, run)
    except KubeError as exc:
        return run, exc
    return run, None
