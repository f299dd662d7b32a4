"""Weight changes as chart markers, for the compare page's charts and the service page's.

Two sources, one marker per change:
- Meshboard's own writes, from the audit (`WeightChange.changed()`: applied, confirmed, or of unknown outcome until a
  later collection found them stored): who set what, in Meshboard.
- Every other writer's, from the configuration history (apps.history): each collected version of the split whose
  backends changed and whose managedFields manager is not Meshboard: "changed outside Meshboard by <manager>", or a
  Flagger step when Flagger wrote it. A split the history has not tracked (rows older than it) falls back to the
  split's last managedFields entry, which is all the snapshot keeps.

And the weight steps: each backend's share of the weight over the window, from the same history, which the compare
charts draw as a stepped line (Flagger's steps, or anyone's).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q

from apps.clusters.kube import FIELD_MANAGER as OUR_MANAGER  # the fieldManager of Meshboard's writes
from apps.clusters.models import Cluster
from apps.history.models import Change, Kind, Tracked, Version
from apps.mesh.decode import k8s_time
from apps.mesh.models import Canary, TrafficSplit, weight_percents
from apps.policies.checks import flagger_canaries

from .models import WeightChange

FLAGGER_MANAGER = "flagger"
# A version with no manager whose weights are those of a Meshboard write this soon before it is that write.
SAME_WRITE = timedelta(minutes=10)


def weights_text(backends: object) -> str:
    """ "bookstore-v1 90, bookstore-v2 10"."""
    return ", ".join(f"{b.get('service')} {b.get('weight')}" for b in backends or [] if isinstance(b, dict))


def _backends(content: object) -> list:
    spec = (content or {}).get("spec") if isinstance(content, dict) else None
    backends = spec.get("backends") if isinstance(spec, dict) else None
    return backends if isinstance(backends, list) else []


def _pairs(backends: list) -> list[tuple[object, object]]:
    return [(b.get("service"), b.get("weight")) for b in backends if isinstance(b, dict)]


def _split_versions(cluster: Cluster, namespace: str, name: str, since: datetime, until: datetime | None) -> list:
    # changed_at (the managedFields time) is at or before recorded_at (the collection), so recorded_at >= since
    # finds every change made since; the exact time is checked by the caller.
    versions = Version.objects.filter(
        cluster=cluster, kind=Kind.TRAFFIC_SPLIT, namespace=namespace, name=name, recorded_at__gte=since
    )
    if until is not None:
        versions = versions.filter(Q(changed_at__lte=until) | Q(changed_at=None, recorded_at__lte=until))
    return list(versions.order_by("recorded_at", "id"))


def split_markers(
    cluster: Cluster,
    namespace: str,
    name: str,
    since: datetime,
    until: datetime | None = None,
    *,
    split: TrafficSplit | None = None,
    prefix: str = "",
) -> list[dict]:
    """The weight changes of one TrafficSplit between `since` and `until` (default now), oldest first:
    `{"at": unix seconds, "text": hover text, "outside": bool, "manager": str}`. `split` is the snapshot row (for
    the Flagger Canary driving it, and the fallback); `prefix` starts each text (the split's name on a service's
    charts, where several splits may show)."""
    out = []
    ours = WeightChange.objects.filter(
        WeightChange.changed(), cluster=cluster, namespace=namespace, split=name, created_at__gte=since
    )
    if until is not None:
        ours = ours.filter(created_at__lte=until)
    ours = list(ours.order_by("created_at"))
    for c in ours:
        out.append(
            {
                "at": c.created_at.timestamp(),
                "text": f"{prefix}{c.username} set {weights_text(c.weights_after)} in Meshboard",
                "outside": False,
                "manager": OUR_MANAGER,
            }
        )
    canaries = []
    if split is not None:
        canaries = flagger_canaries(split, Canary.objects.filter(cluster=cluster, namespace=namespace))
    tracked = Tracked.objects.filter(cluster=cluster, kind=Kind.TRAFFIC_SPLIT, namespace=namespace, name=name).exists()
    if tracked:
        for v in _split_versions(cluster, namespace, name, since, until):
            marker = _outside_marker(v, ours, canaries, prefix, since)
            if marker is not None:
                out.append(marker)
    elif split is not None:
        out += _last_writer_marker(split, since, until, prefix)
    return sorted(out, key=lambda m: m["at"])


def _outside_marker(
    v: Version, ours: list[WeightChange], canaries: list[str], prefix: str, since: datetime
) -> dict | None:
    """The marker of one history version, or None when it is Meshboard's own write or changed no weight."""
    if v.change != Change.CHANGED or _pairs(_backends(v.content)) == _pairs(_backends(v.previous)):
        return None
    if v.changed_by == OUR_MANAGER:
        return None
    when = v.changed_at or v.recorded_at
    if when < since:
        return None
    weights = _backends(v.content)
    if not v.changed_by and any(
        c.weights_after == weights and c.created_at <= v.recorded_at <= c.created_at + SAME_WRITE for c in ours
    ):
        return None  # a server that keeps no managedFields: the weights Meshboard wrote, not another writer's
    manager = v.changed_by or "an unnamed manager"
    if v.changed_by == FLAGGER_MANAGER and canaries:
        text = f"{prefix}Flagger step (Canary {', '.join(canaries)}): {weights_text(weights)}"
    else:
        text = f"{prefix}changed outside Meshboard by {manager}: {weights_text(weights)}"
    return {"at": when.timestamp(), "text": text, "outside": True, "manager": v.changed_by}


def _last_writer_marker(split: TrafficSplit, since: datetime, until: datetime | None, prefix: str) -> list[dict]:
    last = split.last_writer or {}
    when = k8s_time(last.get("time", ""))
    if not when or when < since or (until is not None and when > until) or last.get("manager") == OUR_MANAGER:
        return []
    manager = last.get("manager") or "an unnamed manager"
    return [
        {
            "at": when.timestamp(),
            "text": f"{prefix}changed outside Meshboard by {manager} ({last.get('operation') or 'write'})",
            "outside": True,
            "manager": last.get("manager") or "",
        }
    ]


def service_markers(
    cluster: Cluster, namespace: str, service: str, since: datetime, until: datetime | None = None
) -> list[dict]:
    """The weight changes of every TrafficSplit that names the Service (as its root or a backend) in the window,
    each text starting with the split's name; splits deleted since are found through the history."""
    splits = {
        s.name: s
        for s in TrafficSplit.objects.filter(cluster=cluster, namespace=namespace)
        if service == s.root_service_name or service in s.backend_services
    }
    mentioned = Version.objects.filter(
        cluster=cluster,
        kind=Kind.TRAFFIC_SPLIT,
        namespace=namespace,
        mentions__contains=f" svc:{namespace}/{service} ",
        recorded_at__gte=since,
    ).values_list("name", flat=True)
    names = sorted(set(splits) | set(mentioned))
    out = []
    for name in names:
        out += split_markers(cluster, namespace, name, since, until, split=splits.get(name), prefix=f"{name}: ")
    return sorted(out, key=lambda m: m["at"])


def weight_steps(split: TrafficSplit, since: datetime, until: datetime) -> list[dict]:
    """Each backend's share of the weight (0..100) from `since` to `until`: `[{"at": unix seconds, "percents":
    {backend: share}}]`, the first point at `since` (the weights then), one per change after, the last at `until`.
    From the history; a split it has not tracked shows its current weights over the whole window."""
    versions = list(
        Version.objects.filter(
            cluster=split.cluster,
            kind=Kind.TRAFFIC_SPLIT,
            namespace=split.namespace,
            name=split.name,
            recorded_at__lte=until,
        )
        .exclude(change=Change.DELETED)
        .order_by("recorded_at", "id")
    )
    # A baseline version (the first collection the history saw) is the state since before it, not a change.
    before = [v for v in versions if v.baseline or (v.changed_at or v.recorded_at) <= since]
    during = [v for v in versions if not v.baseline and (v.changed_at or v.recorded_at) > since]
    start = _backends(before[-1].content) if before else (_backends(during[0].previous) if during else split.backends)
    points = [{"at": since.timestamp(), "percents": _percents(start)}]
    for v in during:
        if _pairs(_backends(v.content)) != _pairs(_backends(v.previous)):
            points.append(
                {"at": (v.changed_at or v.recorded_at).timestamp(), "percents": _percents(_backends(v.content))}
            )
    points.append({"at": until.timestamp(), "percents": points[-1]["percents"]})
    return points


def _percents(backends: list) -> dict[str, float | None]:
    rows = [b for b in backends if isinstance(b, dict)]
    return {str(b.get("service")): p for b, p in zip(rows, weight_percents(rows), strict=True)}
