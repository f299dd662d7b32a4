"""The one place Meshboard writes to a cluster: changing a TrafficSplit's weights, and recording what came of it.

Each attempt: read the live split (its resourceVersion must be the one the form was opened with), a server-side
dry run, then a JSON merge patch of the whole `spec.backends` list carrying `metadata.resourceVersion` (so a
concurrent change gives 409 instead of a lost update) and `fieldManager=meshboard` (so the server's managedFields
say who wrote it).

The audit record says only what is known:
- refused before anything was sent (form, permission, stale form, dry-run 4xx, an unreadable split): nothing changed;
- the PATCH answered 2xx: applied, with the new resourceVersion;
- the PATCH answered 409, 422 or another 4xx (429 included): nothing changed, the server said so;
- the PATCH timed out, lost its connection or answered 5xx: the write may or may not have been stored, and may
  still be stored later (a server can hold a request past the client's timeout and then apply it). So the split is
  read again (a consistent GET) until its resourceVersion moves or a short deadline passes, and judged by its
  resourceVersion and managedFields: a newer version with our weights, written by us since the attempt, is
  "applied (confirmed by reading back)"; a newer version by another writer is a conflict (our PATCH carried the
  old resourceVersion, so it can no longer land). An unchanged resourceVersion proves nothing, nor does an
  unreadable split: both are "unknown", which the collections after it resolve (`apps/canary/followup.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from apps.clusters.kube import FIELD_MANAGER, ConflictKubeError, KubeError, NotFoundKubeError, gateway_for
from apps.clusters.models import Cluster
from apps.clusters.roles import OPERATOR, RoleRequired, can_change_weights, weights_refusal
from apps.mesh.collector import TRAFFIC_SPLITS
from apps.mesh.decode import field_managers, k8s_time, traffic_split_row
from apps.mesh.models import TrafficSplit
from apps.mesh.services import snapshot_changed
from apps.mesh.tasks import collect_cluster
from apps.metrics.tasks import collect_metrics

from .models import WeightChange
from .weights import WeightChangeRequest

log = logging.getLogger(__name__)
Result = WeightChange.Result
READ_BACK_SECONDS = 6.0  # how long a read-back after an uncertain write keeps reading (for a change, or at all)
READ_BACK_TIMEOUT = 3.0  # read timeout of each read-back GET
READ_BACK_PAUSE = (0.25, 1.0)  # first and longest pause between two reads


@dataclass(frozen=True)
class ChangeOutcome:
    record: WeightChange
    # On a conflict: the split as it is now in the cluster, to show beside the user's weights.
    live_backends: list[dict[str, object]] | None = None
    live_resource_version: str = ""

    @property
    def applied(self) -> bool:
        return self.record.changed_cluster


class _Attempt:
    """One attempt's facts, as they become known, and the audit row they end in."""

    def __init__(
        self, cluster: Cluster, user: AbstractBaseUser, change: WeightChangeRequest, rollback_of: WeightChange | None
    ) -> None:
        self.cluster, self.user, self.change, self.rollback_of = cluster, user, change, rollback_of
        self.before: list[dict[str, object]] = []
        # managedFields times have second precision: a write of ours made during this attempt is stamped >= this.
        self.started = datetime.now(UTC).replace(microsecond=0)

    def record(self, result: str, reason: str = "", **fields: object) -> WeightChange:
        return WeightChange.objects.create(
            cluster=self.cluster,
            namespace=self.change.namespace,
            split=self.change.split,
            user=self.user,
            username=self.user.get_username(),
            weights_before=self.before,
            weights_after=self.change.as_spec(),
            resource_version_sent=self.change.resource_version,
            flagger_confirmed=self.change.confirm_flagger,
            rollback_of=self.rollback_of,
            started_at=self.started,
            result=result,
            reason=reason,
            **fields,
        )


def _backends(obj: dict) -> list[dict[str, object]]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    return [b for b in spec.get("backends") or [] if isinstance(b, dict)]


def _resource_version(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _last_writer(obj: dict) -> dict[str, str]:
    managers = field_managers(obj)
    return managers[-1] if managers else {"manager": "", "operation": "", "time": ""}


def _written_by_us_since(obj: dict, since: datetime) -> bool:
    return any(
        entry["manager"] == FIELD_MANAGER and (stamped := k8s_time(entry["time"])) is not None and stamped >= since
        for entry in field_managers(obj)
    )


def _refresh_snapshot(cluster: Cluster, obj: dict) -> None:
    """Write the split as the API server returned it, so pages show the new weights before the next poll."""
    row = traffic_split_row(obj)
    with transaction.atomic():
        TrafficSplit.objects.filter(cluster=cluster, namespace=row["namespace"], name=row["name"]).update(
            backends=row["backends"],
            resource_version=row["resource_version"],
            owners=row["owners"],
            managers=row["managers"],
        )
        snapshot_changed(cluster)


def _collect_soon(cluster: Cluster) -> None:
    """Fresh data right after a write: both collections now, not at the next poll. The write is done whatever
    happens here: a broker that is down costs the early refresh (logged), never the operator's answer."""
    tasks = [collect_cluster, collect_metrics] if cluster.prometheus_url else [collect_cluster]

    def enqueue() -> None:
        for task in tasks:
            try:
                task.apply_async((cluster.pk,), retry=False)
            except Exception as exc:
                log.warning("no early %s after the write to %s: %s", task.name, cluster.name, exc)

    transaction.on_commit(enqueue)


def record_refusal(
    cluster: Cluster, user: AbstractBaseUser, split: TrafficSplit, result: str, reason: str, weights: list[dict]
) -> WeightChange:
    """Audit an attempt refused before anything was sent: by the form (with its errors) or by permissions."""
    return WeightChange.objects.create(
        cluster=cluster,
        namespace=split.namespace,
        split=split.name,
        user=user,
        username=user.get_username(),
        weights_before=split.backends,
        weights_after=weights,
        resource_version_sent=split.resource_version,
        started_at=datetime.now(UTC),
        result=result,
        reason=reason,
    )


def change_weights(
    cluster: Cluster,
    user: AbstractBaseUser,
    change: WeightChangeRequest,
    *,
    rollback_of: WeightChange | None = None,
) -> ChangeOutcome:
    attempt = _Attempt(cluster, user, change, rollback_of)
    if not can_change_weights(user, change.namespace):
        # Views refuse (and audit) first; this is the last line, for any other caller.
        reason = weights_refusal(user, change.namespace)
        attempt.record(Result.FORBIDDEN, reason)
        raise RoleRequired(reason, role=OPERATOR)
    body = {"metadata": {"resourceVersion": change.resource_version}, "spec": {"backends": change.as_spec()}}
    with gateway_for(cluster) as gateway:
        try:
            live = gateway.get_custom(TRAFFIC_SPLITS, change.namespace, change.split)
            attempt.before = _backends(live)
            if _resource_version(live) != change.resource_version:
                return _conflict(attempt, live, "the split changed since the form was opened")
            gateway.merge_patch_custom(TRAFFIC_SPLITS, change.namespace, change.split, body, dry_run=True)
        except KubeError as exc:
            return _refused_before_write(attempt, exc)
        try:
            written = gateway.merge_patch_custom(TRAFFIC_SPLITS, change.namespace, change.split, body)
        except KubeError as exc:
            if exc.transient and not _answered_4xx(exc):
                return _read_back(attempt, exc)
            return _refused_by_write(attempt, exc)
    with transaction.atomic():
        record = attempt.record(Result.APPLIED, resource_version_after=_resource_version(written))
        _refresh_snapshot(cluster, written)
        _collect_soon(cluster)
    return ChangeOutcome(record)


def _refused_before_write(attempt: _Attempt, exc: KubeError) -> ChangeOutcome:
    """The read or the dry run failed: nothing that writes was sent."""
    change = attempt.change
    if isinstance(exc, ConflictKubeError):
        return _conflict(attempt, None, "the split changed since the form was opened")
    if isinstance(exc, NotFoundKubeError):
        return _gone(attempt)
    if exc.transient:
        reason = f"Nothing was sent, so nothing changed: {exc.reason}"
        return ChangeOutcome(attempt.record(Result.FAILED, reason))
    reason = f"The API server refused the dry run of {change.namespace}/{change.split}; nothing changed: {exc.reason}"
    return ChangeOutcome(attempt.record(Result.REJECTED, reason))


def _refused_by_write(attempt: _Attempt, exc: KubeError) -> ChangeOutcome:
    """The PATCH got a definite 4xx: the server says it stored nothing."""
    if isinstance(exc, ConflictKubeError):
        return _conflict(attempt, None, "another write landed between the dry run and the write")
    if isinstance(exc, NotFoundKubeError):
        return _gone(attempt)
    return ChangeOutcome(
        attempt.record(Result.REJECTED, f"The API server refused the write; nothing changed: {exc.reason}")
    )


def _gone(attempt: _Attempt) -> ChangeOutcome:
    change = attempt.change
    reason = f"TrafficSplit {change.namespace}/{change.split} no longer exists in the cluster (deleted?)"
    record = attempt.record(Result.FAILED, reason)
    with transaction.atomic():
        TrafficSplit.objects.filter(cluster=attempt.cluster, namespace=change.namespace, name=change.split).delete()
        snapshot_changed(attempt.cluster)
    return ChangeOutcome(record)


def _answered_4xx(exc: KubeError) -> bool:
    """The server answered the request with a client error (429 included): it says it stored nothing."""
    return exc.status is not None and 400 <= exc.status < 500


def _read_live(
    cluster: Cluster, change: WeightChangeRequest, *, until: Callable[[dict], bool] | None = None
) -> dict | None:
    """The split as the API server holds it now (a consistent GET), retried on transient errors and, with `until`,
    read again until `until(split)` holds, for READ_BACK_SECONDS at most. Returns the last split read: one that
    may not satisfy `until` when the deadline passed, None when no read succeeded or it is gone (404)."""
    deadline = time.monotonic() + READ_BACK_SECONDS
    pause, longest = READ_BACK_PAUSE
    live = None
    while True:
        try:
            with gateway_for(cluster, read_timeout=READ_BACK_TIMEOUT) as gateway:
                live = gateway.get_custom(TRAFFIC_SPLITS, change.namespace, change.split)
            if until is None or until(live):
                return live
        except KubeError as exc:
            if not exc.transient:
                return None
        if time.monotonic() + pause > deadline:
            return live
        time.sleep(pause)
        pause = min(pause * 2, longest)


def _read_back(attempt: _Attempt, exc: KubeError) -> ChangeOutcome:
    """The PATCH may or may not have been stored, now or later: decide from what the cluster holds."""
    change, cluster = attempt.change, attempt.cluster
    sent = change.resource_version
    # An unchanged resourceVersion proves nothing yet: a server that held the request may still store it.
    live = _read_live(cluster, change, until=lambda obj: _resource_version(obj) != sent)
    where = f"{change.namespace}/{change.split}"
    if live is None:
        reason = (
            f"The write got no clear answer ({exc.reason}) and the split could not be read back. It may or may not "
            f"hold your weights: check {where} in the cluster. The next collection will record what it holds."
        )
        return ChangeOutcome(attempt.record(Result.UNKNOWN, reason))
    rv = _resource_version(live)
    if rv == sent:
        reason = (
            f"The write got no clear answer ({exc.reason}). Reading the split back for {READ_BACK_SECONDS:g} s "
            f"found it unchanged (resourceVersion {rv}): your weights were not stored so far; the API server may "
            f"still apply them: check {where} in the cluster. The next collection will record what it holds."
        )
        return ChangeOutcome(attempt.record(Result.UNKNOWN, reason))
    if _written_by_us_since(live, attempt.started) and _backends(live) == change.as_spec():
        with transaction.atomic():
            reason = f"The write got no clear answer ({exc.reason}); reading the split back shows your weights."
            record = attempt.record(Result.CONFIRMED, reason, resource_version_after=rv)
            _refresh_snapshot(cluster, live)
            _collect_soon(cluster)
        return ChangeOutcome(record)
    writer = _last_writer(live)["manager"] or "another writer"
    return _conflict(attempt, live, f"the write got no clear answer ({exc.reason}) and the split now holds {writer}'s")


def _conflict(attempt: _Attempt, live: dict | None, why: str) -> ChangeOutcome:
    """Record the conflict with the split as it is now and who wrote it last (the first read may predate that)."""
    if live is None:
        live = _read_live(attempt.cluster, attempt.change)
    writer = _last_writer(live) if live is not None else {"manager": "", "time": ""}
    if live is not None:
        attempt.before = _backends(live)
        _refresh_snapshot(attempt.cluster, live)
    who = writer["manager"] or "another writer"
    if writer["manager"] == FIELD_MANAGER:
        who = _meshboard_user(attempt, live) or "Meshboard"
    when = f" at {writer['time']}" if writer["time"] else ""
    reason = f"This split was changed by {who}{when}; nothing was written ({why})."
    record = attempt.record(Result.CONFLICT, reason)
    return ChangeOutcome(
        record,
        live_backends=attempt.before if live is not None else None,
        live_resource_version=_resource_version(live) if live is not None else "",
    )


def _meshboard_user(attempt: _Attempt, live: dict | None) -> str:
    """Our own audit names the person behind a write whose manager is Meshboard."""
    rv = _resource_version(live) if live is not None else ""
    change = attempt.change
    record = (
        WeightChange.objects.filter(
            WeightChange.changed(),
            cluster=attempt.cluster,
            namespace=change.namespace,
            split=change.split,
            resource_version_after=rv,
        )
        .order_by("-created_at")
        .first()
    )
    return f"{record.username} (through Meshboard)" if record else ""
