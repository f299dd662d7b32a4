"""Recording the configuration's history after each collection, trimming it, and reading it back.

- After each collection (the mesh's `snapshot_stored` signal), `record_snapshot(cluster)` compares the snapshot's
  TrafficSplits, TrafficTargets, HTTPRouteGroups, TCPRoutes and MeshConfig with what the history last saw: rows whose
  snapshot digest is unchanged are not even read, and a row whose digest changed only adds a version when its content
  (spec, labels, annotations, owners: not its resourceVersion nor its managedFields) changed.
- `record(cluster, present, observed, at)`: the same from plain observations (the benchmark writes through it).
- Retention (`MESHBOARD_HISTORY_DAYS`, `MESHBOARD_HISTORY_MAX_VERSIONS`): `trim()` deletes versions older than the
  days kept, except each object's last version before that cut (the state the rest builds on), and an object's
  oldest versions past the maximum count. The receiver trims the objects it just changed and, once an hour, by age;
  `manage.py trim_history` does it all.
- Reading: `timeline(...)` for the pages, `diff(...)` of two contents, `policy_rows_as_of(cluster, when)` for the
  Policies page's "as of", `splits_as_of(cluster, when)` for the overview's and the graph's (with the policy rows:
  `CONFIG_KINDS` is what those two pages rebuild, so `as_of_time(..., CONFIG_KINDS)` checks the time for them).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import yaml
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q, QuerySet, Subquery
from django.dispatch import receiver
from django.utils import timezone

from apps.clusters.models import Cluster
from apps.mesh.decode import k8s_time
from apps.mesh.models import (
    HTTPRouteGroup,
    MeshState,
    Pod,
    Service,
    TCPRoute,
    TrafficSplit,
    TrafficTarget,
    Workload,
    root_service_name,
    selects,
)
from apps.mesh.signals import snapshot_stored

from .models import POLICY_KINDS, Change, HistoryState, Kind, Tracked, Version

log = logging.getLogger(__name__)

MESH_CONFIG_NAME = "osm-mesh-config"  # OSM reads the MeshConfig of this name in its control-plane namespace
AGE_TRIM_EVERY = timedelta(hours=1)  # how often the receiver trims by age (the per-object cap is checked each time)

Key = tuple[str, str]  # (namespace, name)


# ---------------------------------------------------------------------------------------------------------------
# What a version holds: the object's content as a user would read it in YAML, from the snapshot row's fields.


def _metadata(row: dict, owners: list | None = None) -> dict:
    meta = {}
    if row.get("labels"):
        meta["labels"] = row["labels"]
    if row.get("annotations"):
        meta["annotations"] = row["annotations"]
    if owners:
        meta["ownerReferences"] = owners
    return meta


def _content(row: dict, spec: dict, api_version: str = "", owners: list | None = None) -> dict:
    content: dict = {"apiVersion": api_version} if api_version else {}
    if meta := _metadata(row, owners):
        content["metadata"] = meta
    content["spec"] = spec
    return content


def split_content(row: dict) -> dict:
    spec = {"service": row.get("root_service", ""), "backends": row.get("backends") or []}
    return _content(row, spec, row.get("api_version", ""), row.get("owners"))


def target_content(row: dict) -> dict:
    spec = {
        "destination": row.get("destination") or {},
        "sources": row.get("sources") or [],
        "rules": row.get("rules") or [],
    }
    return _content(row, spec)


def route_group_content(row: dict) -> dict:
    return _content(row, {"matches": row.get("matches") or []})


def tcp_route_content(row: dict) -> dict:
    return _content(row, {"matches": row.get("matches") or {}})


def mesh_config_content(state: MeshState) -> dict | None:
    """The MeshConfig as the snapshot holds it, or None when the collection found none."""
    if not state.meshconfig and not state.meshconfig_api_version:
        return None
    return _content({}, state.meshconfig or {}, state.meshconfig_api_version)


@dataclass(frozen=True)
class Source:
    model: type
    fields: tuple[str, ...]
    content: object  # row dict -> content dict


_BASE = ("namespace", "name", "labels", "annotations", "digest")
SOURCES: dict[str, Source] = {
    Kind.TRAFFIC_SPLIT: Source(
        TrafficSplit, (*_BASE, "root_service", "backends", "api_version", "owners", "managers"), split_content
    ),
    Kind.TRAFFIC_TARGET: Source(TrafficTarget, (*_BASE, "destination", "sources", "rules"), target_content),
    Kind.HTTP_ROUTE_GROUP: Source(HTTPRouteGroup, (*_BASE, "matches"), route_group_content),
    Kind.TCP_ROUTE: Source(TCPRoute, (*_BASE, "matches"), tcp_route_content),
}


def _token(value: object) -> str:
    return "".join(str(value or "").split())  # names hold no whitespace; a hostile one must not split a token


def mentions(kind: str, namespace: str, content: dict | None) -> str:
    """The services (`svc:ns/name`) and service accounts (`sa:ns/name`) an object names, space-separated and padded,
    so `mentions__contains=" svc:ns/name "` finds the versions naming one."""
    spec = (content or {}).get("spec") or {}
    tokens: list[str] = []
    if kind == Kind.TRAFFIC_SPLIT:
        services = [root_service_name(str(spec.get("service") or ""))]
        services += [b.get("service") for b in spec.get("backends") or [] if isinstance(b, dict)]
        tokens = [f"svc:{_token(namespace)}/{_token(s)}" for s in services if s]
    elif kind == Kind.TRAFFIC_TARGET:
        ends = [spec.get("destination"), *(spec.get("sources") or [])]
        tokens = [
            f"sa:{_token(e.get('namespace'))}/{_token(e.get('name'))}"
            for e in ends
            if isinstance(e, dict) and e.get("name")
        ]
    return f" {' '.join(dict.fromkeys(tokens))} " if tokens else ""


def _digest(content: object) -> str:
    return hashlib.blake2b(json.dumps(content, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Recording


@dataclass(frozen=True)
class Observed:
    """One object as a collection saw it. `row_digest` is the snapshot row's digest ("" to use the content's)."""

    kind: str
    namespace: str
    name: str
    content: dict
    row_digest: str = ""
    changed_by: str = ""  # who wrote it last (managedFields), when the row knows
    changed_at: datetime | None = None  # and when


def observe(kind: str, row: dict) -> Observed:
    """An observation of a snapshot row (a dict of the SOURCES fields)."""
    who, when = "", None
    managers = row.get("managers") or []
    if managers and isinstance(managers[-1], dict):
        who = str(managers[-1].get("manager") or "")[:128]
        when = k8s_time(str(managers[-1].get("time") or ""))
    return Observed(kind, row["namespace"], row["name"], SOURCES[kind].content(row), row.get("digest", ""), who, when)


def record_snapshot(cluster: Cluster, at: datetime | None = None) -> list[Version]:
    """Record what changed in the cluster's snapshot since the history last looked. Returns the new versions."""
    state = MeshState.objects.filter(cluster=cluster).first()
    at = at or (state.collected_at if state is not None else timezone.now())
    heads = _heads(cluster)
    present: dict[str, set[Key]] = {}
    observed: list[Observed] = []
    for kind, source in SOURCES.items():
        digests = {
            (ns, name): (pk, digest)
            for ns, name, pk, digest in source.model.objects.filter(cluster=cluster).values_list(
                "namespace", "name", "pk", "digest"
            )
        }
        present[kind] = set(digests)
        stale = [
            pk
            for key, (pk, digest) in digests.items()
            if (head := heads.get((kind, *key))) is None or not head.present or head.row_digest != digest
        ]
        for start in range(0, len(stale), 500):
            rows = source.model.objects.filter(pk__in=stale[start : start + 500]).values(*source.fields)
            observed += [observe(kind, row) for row in rows]
    if state is not None:  # no MeshState yet: nothing is known of the MeshConfig, so nothing is said about it
        content = mesh_config_content(state)
        key = (state.control_plane_namespace, MESH_CONFIG_NAME)
        present[Kind.MESH_CONFIG] = {key} if content is not None else set()
        if content is not None:
            observed.append(Observed(Kind.MESH_CONFIG, *key, content))
    return record(cluster, present, observed, at, heads=heads)


def _heads(cluster: Cluster) -> dict[tuple[str, str, str], Tracked]:
    rows = Tracked.objects.filter(cluster=cluster).defer("content")
    return {(t.kind, t.namespace, t.name): t for t in rows}


def record(
    cluster: Cluster,
    present: dict[str, set[Key]],
    observed: Iterable[Observed],
    at: datetime,
    heads: dict[tuple[str, str, str], Tracked] | None = None,
) -> list[Version]:
    """Record one collection: `present` holds, for each kind it covers, every object the collection found (a kind
    left out is not judged: none of its objects is taken as deleted); `observed` the objects that may have changed
    (at least those whose row changed). Only changes are written. Returns the new versions."""
    heads = _heads(cluster) if heads is None else heads
    versions: list[Version] = []
    new_heads: list[Tracked] = []
    touched: dict[int, Tracked] = {}  # head id -> head with a new version
    redigested: list[Tracked] = []  # heads whose row changed but not their content
    state = HistoryState.objects.filter(cluster=cluster).first()
    baseline = state is None
    changes: list[tuple[Tracked | None, Observed, str]] = []
    for obs in observed:
        head = heads.get((obs.kind, obs.namespace, obs.name))
        digest = _digest(obs.content)
        row_digest = obs.row_digest or digest
        if head is not None and head.present and head.content_digest == digest:
            if head.row_digest != row_digest:  # a new resourceVersion or managedFields entry, same content
                head.row_digest = row_digest
                redigested.append(head)
            continue
        changes.append((head, obs, digest))
    gone = [
        head
        for (kind, ns, name), head in heads.items()
        if head.present and kind in present and (ns, name) not in present[kind]
    ]
    if redigested:
        Tracked.objects.bulk_update(redigested, ["row_digest"], batch_size=500)
    if not changes and not gone:
        if state is None:
            HistoryState.objects.create(cluster=cluster, started_at=at, complete_from=at)
        return []
    earlier = [h.pk for h, _, _ in changes if h is not None and h.present] + [h.pk for h in gone]
    contents = {}
    for start in range(0, len(earlier), 500):
        contents.update(Tracked.objects.filter(pk__in=earlier[start : start + 500]).values_list("pk", "content"))
    for head, obs, digest in changes:
        created = head is None or not head.present
        versions.append(
            Version(
                cluster=cluster,
                kind=obs.kind,
                namespace=obs.namespace,
                name=obs.name,
                change=Change.CREATED if created else Change.CHANGED,
                baseline=baseline,
                recorded_at=at,
                changed_at=obs.changed_at,
                changed_by=obs.changed_by,
                content=obs.content,
                previous=None if created else contents.get(head.pk),
                mentions=mentions(obs.kind, obs.namespace, obs.content),
            )
        )
        fields = {
            "present": True,
            "row_digest": obs.row_digest or digest,
            "content_digest": digest,
            "content": obs.content,
            "last_recorded_at": at,
        }
        if head is None:
            head = Tracked(cluster=cluster, kind=obs.kind, namespace=obs.namespace, name=obs.name, **fields)
            head.versions = 1
            new_heads.append(head)
            heads[(obs.kind, obs.namespace, obs.name)] = head
        else:
            for name, value in fields.items():
                setattr(head, name, value)
            head.versions += 1
            touched[head.pk] = head
    for head in gone:
        previous = contents.get(head.pk)
        versions.append(
            Version(
                cluster=cluster,
                kind=head.kind,
                namespace=head.namespace,
                name=head.name,
                change=Change.DELETED,
                recorded_at=at,
                previous=previous,
                mentions=mentions(head.kind, head.namespace, previous),
            )
        )
        head.present, head.row_digest, head.content_digest, head.content = False, "", "", None
        head.versions += 1
        head.last_recorded_at = at
        touched[head.pk] = head
    with transaction.atomic():
        if state is None:
            HistoryState.objects.create(cluster=cluster, started_at=at, complete_from=at)
        Version.objects.bulk_create(versions, batch_size=500)
        Tracked.objects.bulk_create(new_heads, batch_size=500)
        Tracked.objects.bulk_update(
            touched.values(),
            ["present", "row_digest", "content_digest", "content", "versions", "last_recorded_at"],
            batch_size=500,
        )
    over = [h for h in (*new_heads, *touched.values()) if h.versions > settings.MESHBOARD_HISTORY_MAX_VERSIONS]
    if over:
        trim_versions(cluster, over)
    return versions


@receiver(snapshot_stored)
def after_collection(sender: object, cluster: Cluster, **_kwargs: object) -> None:
    record_snapshot(cluster)
    state = HistoryState.objects.filter(cluster=cluster).first()
    if state is not None and (state.trimmed_at is None or timezone.now() - state.trimmed_at >= AGE_TRIM_EVERY):
        trim_by_age(cluster)


# ---------------------------------------------------------------------------------------------------------------
# Retention


def trim_versions(cluster: Cluster, heads: Iterable[Tracked], keep: int | None = None) -> int:
    """Keep only the newest `keep` versions (MESHBOARD_HISTORY_MAX_VERSIONS) of each object. Returns how many went.
    A trimmed object's state is known only from its oldest version kept on (`Tracked.complete_from`)."""
    keep = keep or settings.MESHBOARD_HISTORY_MAX_VERSIONS
    deleted = 0
    for head in heads:
        versions = Version.objects.filter(cluster=cluster, kind=head.kind, namespace=head.namespace, name=head.name)
        # Versions of one cluster are written in collection order, so ids follow recorded_at.
        oldest_kept = next(iter(versions.order_by("-id").values_list("id", "recorded_at")[keep - 1 : keep]), None)
        if oldest_kept is None:
            continue
        gone = versions.filter(id__lt=oldest_kept[0]).delete()[0]
        if not gone:
            continue
        deleted += gone
        Tracked.objects.filter(pk=head.pk).update(versions=keep, complete_from=oldest_kept[1])
        head.versions, head.complete_from = keep, oldest_kept[1]
    return deleted


def trim_by_age(cluster: Cluster, days: int | None = None, now: datetime | None = None) -> int:
    """Delete the versions older than `days` (MESHBOARD_HISTORY_DAYS), keeping each object's last version before the
    cut unless it is a deletion: the configuration at any time after the cut can still be rebuilt. Returns how many
    versions went."""
    now = now or timezone.now()
    cut = now - timedelta(days=days or settings.MESHBOARD_HISTORY_DAYS)
    old = Version.objects.filter(cluster=cluster, recorded_at__lt=cut)
    last_before = old.values("kind", "namespace", "name").annotate(last=Max("id")).values("last")
    kept = Version.objects.filter(id__in=Subquery(last_before)).exclude(change=Change.DELETED).values("id")
    deleted = old.exclude(id__in=Subquery(kept)).delete()[0]
    if deleted:
        Tracked.objects.filter(cluster=cluster, present=False, last_recorded_at__lt=cut).delete()
        groups = (
            Version.objects.filter(cluster=cluster)
            .values("kind", "namespace", "name")
            .annotate(kept=Count("id"))
            .values_list("kind", "namespace", "name", "kept")
        )
        counts = {(k, ns, name): kept for k, ns, name, kept in groups}
        heads = list(Tracked.objects.filter(cluster=cluster).only("id", "kind", "namespace", "name", "versions"))
        for head in heads:
            head.versions = counts.get((head.kind, head.namespace, head.name), 0)
        Tracked.objects.bulk_update(heads, ["versions"], batch_size=500)
    updates: dict = {"trimmed_at": now}
    state = HistoryState.objects.filter(cluster=cluster).first()
    if state is not None:
        if deleted and state.complete_from < cut:
            updates["complete_from"] = cut
        HistoryState.objects.filter(pk=state.pk).update(**updates)
    return deleted


def trim(
    clusters: Iterable[Cluster] | None = None, days: int | None = None, max_versions: int | None = None
) -> dict[str, int]:
    """Trim every cluster's history (or those given) by age, then to the maximum count per object. Returns the number
    of versions deleted per cluster name."""
    out = {}
    for cluster in clusters if clusters is not None else Cluster.objects.all():
        deleted = trim_by_age(cluster, days)
        keep = max_versions or settings.MESHBOARD_HISTORY_MAX_VERSIONS
        over = Tracked.objects.filter(cluster=cluster, versions__gt=keep)
        deleted += trim_versions(cluster, over, keep)
        out[cluster.name] = deleted
    return out


# ---------------------------------------------------------------------------------------------------------------
# Reading


class NotInHistory(ValueError):
    """A time the history cannot show (malformed, in the future, or before what it keeps); the message says why."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (`2026-05-01T12:00:00Z`, `2026-05-01 12:00`; UTC when no offset) or unix seconds."""
    text = (text or "").strip()
    hint = "write an ISO 8601 time such as 2026-05-01T12:00:00Z, or unix seconds"
    try:
        if text.replace(".", "", 1).isdigit():
            when = datetime.fromtimestamp(float(text), tz=UTC)
        else:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise NotInHistory(f"{text[:64]!r} is not a time: {hint}") from None
    if when > (now or timezone.now()) + timedelta(seconds=5):
        raise NotInHistory(f"{when:%Y-%m-%d %H:%M:%S} UTC is in the future")
    return when


def complete_from(cluster: Cluster, kinds: Iterable[str] = POLICY_KINDS) -> datetime | None:
    """Since when the history can rebuild the objects of `kinds` of `cluster`; None when it has recorded nothing."""
    state = HistoryState.objects.filter(cluster=cluster).first()
    if state is None:
        return None
    trimmed = Tracked.objects.filter(cluster=cluster, kind__in=list(kinds)).aggregate(last=Max("complete_from"))
    return max(state.complete_from, trimmed["last"] or state.complete_from)


def as_of_time(
    cluster: Cluster, text: str, kinds: Iterable[str] = POLICY_KINDS, now: datetime | None = None
) -> datetime:
    """The time `text` names, when the history of `cluster` can rebuild the objects of `kinds` as they were then."""
    when = parse_time(text, now)
    start = complete_from(cluster, kinds)
    if start is None:
        raise NotInHistory(f"no configuration history of cluster {cluster.name} yet")
    if when < start:
        raise NotInHistory(
            f"the configuration history of cluster {cluster.name} starts at {start:%Y-%m-%d %H:%M:%S} UTC; "
            f"{when:%Y-%m-%d %H:%M:%S} UTC is before it"
        )
    return when


def versions_as_of(cluster: Cluster, when: datetime, kinds: Iterable[str]) -> list[Version]:
    """Each object's last version at or before `when`, leaving out objects deleted by then."""
    last = (
        Version.objects.filter(cluster=cluster, kind__in=list(kinds), recorded_at__lte=when)
        .values("kind", "namespace", "name")
        .annotate(last=Max("id"))
        .values("last")
    )
    return list(
        Version.objects.filter(id__in=Subquery(last)).exclude(change=Change.DELETED).order_by("namespace", "name")
    )


# What the overview and the graph rebuild "as of" a time: the access policy and the TrafficSplits.
CONFIG_KINDS = (*POLICY_KINDS, Kind.TRAFFIC_SPLIT)


def splits_as_of(cluster: Cluster, when: datetime) -> list[dict]:
    """The TrafficSplits the collections had seen at `when`, as the snapshot's rows read them (`namespace`, `name`,
    `root_service`, `backends`), by namespace and name."""
    out = []
    for v in versions_as_of(cluster, when, [Kind.TRAFFIC_SPLIT]):
        spec = (v.content or {}).get("spec") or {}
        backends = spec.get("backends")
        out.append(
            {
                "namespace": v.namespace,
                "name": v.name,
                "root_service": str(spec.get("service") or ""),
                "backends": backends if isinstance(backends, list) else [],
            }
        )
    return out


@dataclass
class PolicyRows:
    """The access policy's objects at a past time, as unsaved snapshot rows (what smi_access evaluates)."""

    when: datetime
    mesh_state: MeshState | None = None
    targets: list[TrafficTarget] = field(default_factory=list)
    http_routes: list[HTTPRouteGroup] = field(default_factory=list)
    tcp_routes: list[TCPRoute] = field(default_factory=list)


def _row_fields(v: Version) -> dict:
    meta = (v.content or {}).get("metadata") or {}
    return {
        # An unsaved row needs a primary key to be hashable (policy grants are); a negative one is no snapshot row's.
        "id": -v.id,
        "cluster_id": v.cluster_id,
        "namespace": v.namespace,
        "name": v.name,
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
    }


def policy_rows_as_of(cluster: Cluster, when: datetime) -> PolicyRows:
    rows = PolicyRows(when)
    for v in versions_as_of(cluster, when, POLICY_KINDS):
        spec = (v.content or {}).get("spec") or {}
        if v.kind == Kind.TRAFFIC_TARGET:
            rows.targets.append(
                TrafficTarget(
                    **_row_fields(v),
                    destination=spec.get("destination") or {},
                    sources=spec.get("sources") or [],
                    rules=spec.get("rules") or [],
                )
            )
        elif v.kind == Kind.HTTP_ROUTE_GROUP:
            rows.http_routes.append(HTTPRouteGroup(**_row_fields(v), matches=spec.get("matches") or []))
        elif v.kind == Kind.TCP_ROUTE:
            rows.tcp_routes.append(TCPRoute(**_row_fields(v), matches=spec.get("matches") or {}))
        elif v.kind == Kind.MESH_CONFIG:
            rows.mesh_state = MeshState(
                cluster_id=v.cluster_id,
                collected_at=v.recorded_at,
                control_plane_namespace=v.namespace,
                meshconfig_api_version=(v.content or {}).get("apiVersion", ""),
                meshconfig=spec,
            )
    return rows


def timeline(
    cluster: Cluster,
    *,
    kind: str = "",
    namespace: str = "",
    name: str = "",
    mentioning: Iterable[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Version]:
    """The cluster's versions, newest first: of one kind, one object, or naming any of the `mentioning` tokens
    (`svc:ns/name`, `sa:ns/name`)."""
    versions = Version.objects.filter(cluster=cluster)
    if kind:
        versions = versions.filter(kind=kind)
    if name:
        versions = versions.filter(namespace=namespace, name=name)
    tokens = list(mentioning)
    if tokens:
        match = Q()
        for token in tokens:
            match |= Q(mentions__contains=f" {token} ")
        versions = versions.filter(match)
    if since is not None:
        versions = versions.filter(recorded_at__gte=since)
    if until is not None:
        versions = versions.filter(recorded_at__lte=until)
    return versions.order_by("-recorded_at", "-id")


def service_accounts(cluster: Cluster, namespace: str, name: str) -> list[str]:
    """The service accounts behind a Service in the latest snapshot: its pods', else its workloads' templates'."""
    svc = Service.objects.filter(cluster=cluster, namespace=namespace, name=name).first()
    if svc is None:
        return []
    pods = Pod.objects.filter(cluster=cluster, namespace=namespace).values_list("labels", "service_account")
    accounts = {sa or "default" for labels, sa in pods if selects(svc.selector, labels or {})}
    workloads = Workload.objects.filter(cluster=cluster, namespace=namespace).values_list(
        "template_labels", "service_account"
    )
    accounts |= {sa or "default" for labels, sa in workloads if selects(svc.selector, labels or {})}
    return sorted(accounts)


def as_yaml(content: object) -> list[str]:
    if content is None:
        return []
    return yaml.safe_dump(content, sort_keys=True, default_flow_style=False, allow_unicode=True, width=100).splitlines()


@dataclass(frozen=True)
class DiffLine:
    kind: str  # add | del | same | hunk
    text: str


def diff(previous: object, content: object) -> list[DiffLine]:
    """A unified diff of the two contents as YAML (3 lines of context), without the file header lines."""
    lines = []
    for line in list(difflib.unified_diff(as_yaml(previous), as_yaml(content), lineterm="", n=3))[2:]:
        if line.startswith("@@"):
            lines.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            lines.append(DiffLine("add", line))
        elif line.startswith("-"):
            lines.append(DiffLine("del", line))
        else:
            lines.append(DiffLine("same", line))
    return lines
