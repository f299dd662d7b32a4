"""The one place Meshboard writes to a cluster: changing a TrafficSplit's weights, safely.

Each attempt: read the live split (its resourceVersion must be the one the form was opened with), a server-side
dry run, then a JSON merge patch of the whole `spec.backends` list carrying `metadata.resourceVersion`, so a
concurrent change gives 409 instead of a lost update. Every attempt leaves a WeightChange record; a success updates
the split's snapshot row at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction

from apps.clusters.kube import ConflictKubeError, KubeError, NotFoundKubeError, gateway_for
from apps.clusters.models import Cluster
from apps.clusters.roles import can_change_weights
from apps.mesh.collector import TRAFFIC_SPLITS
from apps.mesh.decode import traffic_split_row
from apps.mesh.models import TrafficSplit

from .models import WeightChange
from .weights import WeightChangeRequest


@dataclass(frozen=True)
class ChangeOutcome:
    record: WeightChange
    # On a conflict: the split as it is now in the cluster, to show beside the user's weights.
    live_backends: list[dict[str, object]] | None = None
    live_resource_version: str = ""

    @property
    def applied(self) -> bool:
        return self.record.result == WeightChange.Result.APPLIED


def _backends(obj: dict) -> list[dict[str, object]]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    return [b for b in spec.get("backends") or [] if isinstance(b, dict)]


def _record(
    cluster: Cluster, user: AbstractBaseUser, change: WeightChangeRequest, rollback_of: WeightChange | None, **fields
) -> WeightChange:
    return WeightChange.objects.create(
        cluster=cluster,
        namespace=change.namespace,
        split=change.split,
        user=user,
        username=user.get_username(),
        weights_after=change.as_spec(),
        resource_version_sent=change.resource_version,
        flagger_confirmed=change.confirm_flagger,
        rollback_of=rollback_of,
        **fields,
    )


def _refresh_snapshot(cluster: Cluster, obj: dict) -> None:
    """Write the split as the API server returned it, so pages show the new weights before the next poll."""
    row = traffic_split_row(obj)
    TrafficSplit.objects.filter(cluster=cluster, namespace=row["namespace"], name=row["name"]).update(
        backends=row["backends"], resource_version=row["resource_version"], owners=row["owners"]
    )


def change_weights(
    cluster: Cluster,
    user: AbstractBaseUser,
    change: WeightChangeRequest,
    *,
    rollback_of: WeightChange | None = None,
) -> ChangeOutcome:
    if not can_change_weights(user):
        raise PermissionDenied("Only operators may change TrafficSplit weights.")
    before: list[dict[str, object]] = []
    try:
        with gateway_for(cluster) as gateway:
            live = gateway.get_custom(TRAFFIC_SPLITS, change.namespace, change.split)
            before = _backends(live)
            live_rv = str((live.get("metadata") or {}).get("resourceVersion") or "")
            if live_rv != change.resource_version:
                raise ConflictKubeError("the split changed since the form was opened", status=409)
            body = {"metadata": {"resourceVersion": change.resource_version}, "spec": {"backends": change.as_spec()}}
            gateway.merge_patch_custom(TRAFFIC_SPLITS, change.namespace, change.split, body, dry_run=True)
            written = gateway.merge_patch_custom(TRAFFIC_SPLITS, change.namespace, change.split, body)
    except ConflictKubeError:
        return _conflict(cluster, user, change, rollback_of, before)
    except NotFoundKubeError:
        record = _record(
            cluster,
            user,
            change,
            rollback_of,
            weights_before=before,
            result=WeightChange.Result.FAILED,
            reason=f"TrafficSplit {change.namespace}/{change.split} no longer exists in the cluster (deleted?)",
        )
        TrafficSplit.objects.filter(cluster=cluster, namespace=change.namespace, name=change.split).delete()
        return ChangeOutcome(record)
    except KubeError as exc:
        rejected = exc.status in (400, 422)
        record = _record(
            cluster,
            user,
            change,
            rollback_of,
            weights_before=before,
            result=WeightChange.Result.REJECTED if rejected else WeightChange.Result.FAILED,
            reason=f"Nothing was changed: {exc.reason}",
        )
        return ChangeOutcome(record)
    with transaction.atomic():
        record = _record(
            cluster,
            user,
            change,
            rollback_of,
            weights_before=before,
            result=WeightChange.Result.APPLIED,
            resource_version_after=str((written.get("metadata") or {}).get("resourceVersion") or ""),
        )
        _refresh_snapshot(cluster, written)
    return ChangeOutcome(record)


def _conflict(
    cluster: Cluster,
    user: AbstractBaseUser,
    change: WeightChangeRequest,
    rollback_of: WeightChange | None,
    before: list[dict[str, object]],
) -> ChangeOutcome:
    """Record the conflict and fetch the split as it is now (the first read may predate the competing write)."""
    live_rv = ""
    try:
        with gateway_for(cluster) as gateway:
            live = gateway.get_custom(TRAFFIC_SPLITS, change.namespace, change.split)
        before = _backends(live)
        live_rv = str((live.get("metadata") or {}).get("resourceVersion") or "")
        _refresh_snapshot(cluster, live)
    except KubeError:
        pass
    record = _record(
        cluster,
        user,
        change,
        rollback_of,
        weights_before=before,
        result=WeightChange.Result.CONFLICT,
        reason="The split changed since you opened the form; nothing was written.",
    )
    return ChangeOutcome(record, live_backends=before, live_resource_version=live_rv)
