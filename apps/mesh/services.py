"""Collecting a cluster into the snapshot tables."""

from __future__ import annotations

import time

from django.db import models, transaction
from django.utils import timezone

from apps.clusters.kube import KubeError, gateway_for
from apps.clusters.models import Cluster, CollectionRun
from apps.clusters.runs import recorded_run

from .collector import ClusterSnapshot, collect
from .decode import Row
from .models import (
    Canary,
    EndpointSlice,
    HTTPRouteGroup,
    MeshNamespace,
    MeshState,
    Node,
    Pod,
    Service,
    ServiceAccount,
    TCPRoute,
    TrafficSplit,
    TrafficTarget,
    Workload,
)

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
}


def _upsert(cluster: Cluster, key: str, rows: list[Row], run_id: int) -> None:
    model, unique = TABLES[key]
    # Keyed dict: a duplicate key would make PostgreSQL's ON CONFLICT touch a row twice and fail the whole run.
    by_key = {tuple(row[f] for f in unique): row for row in rows}
    objs = [model(cluster=cluster, seen_run=run_id, **row) for row in by_key.values()]
    if objs:
        update_fields = sorted({*rows[0].keys(), "seen_run"} - set(unique))
        model.objects.bulk_create(
            objs,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["cluster", *unique],
            update_fields=update_fields,
        )
    model.objects.filter(cluster=cluster).exclude(seen_run=run_id).delete()


def store_snapshot(cluster: Cluster, snapshot: ClusterSnapshot, run_id: int) -> None:
    """Replace the cluster's snapshot in one transaction; tables the snapshot lacks keep their rows."""
    with transaction.atomic():
        for key, rows in snapshot.rows.items():
            _upsert(cluster, key, rows, run_id)
        MeshState.objects.update_or_create(cluster=cluster, defaults={**snapshot.state, "collected_at": timezone.now()})


def collect_into_snapshot(cluster: Cluster, run: CollectionRun) -> ClusterSnapshot:
    """Read the cluster, write the snapshot, and fill in the run record. KubeError propagates."""
    with gateway_for(cluster) as gateway:
        try:
            snapshot = collect(gateway, control_plane_namespace=cluster.control_plane_namespace)
        finally:
            run.api_requests = gateway.requests
    started = time.perf_counter()
    store_snapshot(cluster, snapshot, run.id)
    snapshot.timings["write"] = time.perf_counter() - started
    run.counts = snapshot.counts
    run.warnings = snapshot.warnings
    run.timings = {phase: round(seconds, 4) for phase, seconds in snapshot.timings.items()}
    run.status = CollectionRun.Status.PARTIAL if snapshot.partial else CollectionRun.Status.OK
    return snapshot


def collect_and_record(cluster: Cluster, *, attempt: int = 1) -> tuple[CollectionRun, KubeError | None]:
    """One recorded collection of `cluster`. A KubeError does not propagate: it is recorded and returned."""
    try:
        with recorded_run(cluster, CollectionRun.Kind.CLUSTER, attempt=attempt) as run:
            collect_into_snapshot(cluster, run)
    except KubeError as exc:
        return run, exc
    return run, None
