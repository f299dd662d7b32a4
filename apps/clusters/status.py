"""Whether the collection machinery runs, for the banner on every page and for /readyz: Redis (the broker), beat's
heartbeat, a live worker on each collection's queue, and per cluster the last successful collection of each kind.

Costs per page, whatever the number of clusters or services: one database query and one Redis round trip with a
short timeout (a Redis that is down or slow turns into the "Redis is unreachable" banner, never a slow or failed
page). Nothing is read until the template asks (`machinery` is lazy), so htmx partials pay nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest
from django.utils import dateformat, timezone
from django.utils.functional import SimpleLazyObject

from apps.core import heartbeats

from .freshness import SOURCE, WORKER, summarize
from .models import Cluster, CollectionRun
from .runs import DUE_FIELDS
from .tasks import COLLECTIONS

# Data older than this many poll intervals is stale enough for a banner on every page.
STALE_INTERVALS = 3
# The banner reads Redis with at most this socket timeout (the page's own setting, if shorter).
BANNER_REDIS_TIMEOUT = 0.3
_GOOD = (CollectionRun.Status.OK, CollectionRun.Status.PARTIAL)
_MAX_STALE_BANNERS = 5


def _hhmmss(moment: datetime) -> str:
    local = timezone.localtime(moment)
    same_day = local.date() == timezone.localtime().date()
    return dateformat.format(local, "H:i:s T" if same_day else "Y-m-d H:i:s T")


def redacted(url: str) -> str:
    """A URL without its password, for operators' eyes."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


@dataclass(frozen=True)
class KindState:
    """One kind of collection of one cluster: the last success, the last attempt, the next one."""

    kind: str
    queue: str
    poll_seconds: int
    last_good_at: datetime | None
    last_status: str | None
    last_error: str
    next_attempt_at: datetime | None

    @property
    def label(self) -> str:
        return CollectionRun.Kind(self.kind).label

    @property
    def age_seconds(self) -> int | None:
        if self.last_good_at is None:
            return None
        return max(0, int((timezone.now() - self.last_good_at).total_seconds()))

    @property
    def stale(self) -> bool:
        """Collected once, but not within the last 3 poll intervals (never collected is not stale)."""
        age = self.age_seconds
        return age is not None and age > STALE_INTERVALS * self.poll_seconds

    @property
    def failing(self) -> bool:
        return self.last_status == CollectionRun.Status.FAILED


@dataclass(frozen=True)
class ClusterState:
    name: str
    kinds: list[KindState]


def cluster_states() -> list[ClusterState]:
    """Every enabled cluster with each collection that applies to it: one query, whatever the number of clusters."""
    clusters = Cluster.objects.filter(enabled=True).order_by("name")
    kinds = [(c.kind, c.queue, c.needs_prometheus) for c in COLLECTIONS]
    annotations = {}
    for kind, _queue, _needs in kinds:
        finished = CollectionRun.objects.filter(cluster=OuterRef("pk"), kind=kind).exclude(
            status__in=[CollectionRun.Status.RUNNING, CollectionRun.Status.SKIPPED]
        )
        latest = finished.order_by("-started_at")
        annotations[f"{kind}_good_at"] = Subquery(latest.filter(status__in=_GOOD).values("finished_at")[:1])
        annotations[f"{kind}_status"] = Subquery(latest.values("status")[:1])
        annotations[f"{kind}_error"] = Subquery(latest.values("error")[:1])
    states = []
    for cluster in clusters.annotate(**annotations):
        states.append(
            ClusterState(
                name=cluster.name,
                kinds=[
                    KindState(
                        kind=kind,
                        queue=queue,
                        poll_seconds=cluster.poll_interval_seconds,
                        last_good_at=getattr(cluster, f"{kind}_good_at"),
                        last_status=getattr(cluster, f"{kind}_status"),
                        last_error=getattr(cluster, f"{kind}_error") or "",
                        next_attempt_at=getattr(cluster, DUE_FIELDS[kind]),
                    )
                    for kind, queue, needs_prometheus in kinds
                    if cluster.prometheus_url or not needs_prometheus
                ],
            )
        )
    return states


@dataclass(frozen=True)
class Banner:
    """One line on every page: `text` for everyone (the component and what to do), `detail` for operators only."""

    component: str  # "redis", "beat", "worker:<queue>" or "stale:<cluster>:<kind>"
    text: str
    detail: str = ""


def _worker_command(queue: str) -> str:
    tick = settings.CELERY_TASK_ROUTES.get("clusters.tick", {}).get("queue")
    queues = ",".join(q for q in (queue, tick) if q)
    return f"celery -A meshboard worker -Q {queues} -n {queue}@%h"


@dataclass
class Machinery:
    """The machinery's state as one page (or /readyz) sees it."""

    states: list[ClusterState]
    heartbeats: heartbeats.Heartbeats | None
    redis_error: str = ""
    now: datetime = field(default_factory=timezone.now)

    @property
    def redis_ok(self) -> bool:
        return self.heartbeats is not None

    def _last_good(self, kind: str | None = None) -> datetime | None:
        moments = [k.last_good_at for s in self.states for k in s.kinds if k.last_good_at and kind in (None, k.kind)]
        return max(moments, default=None)

    def _queues_needed(self) -> dict[str, str]:
        """Queue -> the kind it carries, for each kind that applies to at least one enabled cluster."""
        return {k.queue: k.kind for s in self.states for k in s.kinds}

    @cached_property
    def banners(self) -> list[Banner]:
        if not self.redis_ok:
            return [
                Banner(
                    "redis",
                    "Redis, the broker, is unreachable: no collection can be scheduled or run, so pages show the last "
                    "data collected. Start Redis or fix REDIS_URL.",
                    f"{redacted(settings.REDIS_URL)}: {self.redis_error}",
                )
            ]
        if not self.states:
            return []
        found = []
        if not self.heartbeats.beat_alive():
            since = self._last_good()
            lead = f"No collection since {_hhmmss(since)}" if since else "No collection yet"
            found.append(
                Banner(
                    "beat",
                    f"{lead}: beat, the scheduler, is not running, so no collection starts. Start it.",
                    f"celery -A meshboard beat (no beat heartbeat in Redis for {heartbeats.ttl():g} s)",
                )
            )
        dead_kinds = set()
        for queue, kind in self._queues_needed().items():
            if self.heartbeats.queue_alive(queue):
                continue
            dead_kinds.add(kind)
            since = self._last_good(kind)
            what = "collection" if kind == CollectionRun.Kind.CLUSTER else "metrics collection"
            lead = f"No {what} since {_hhmmss(since)}" if since else f"No {what} yet"
            found.append(
                Banner(
                    f"worker:{queue}",
                    f"{lead}: {WORKER[kind]} is not running. Start a worker for the queue {queue}.",
                    f"{_worker_command(queue)} (no worker heartbeat on the queue {queue} for {heartbeats.ttl():g} s)",
                )
            )
        if not self.heartbeats.beat_alive():
            return found  # without beat, every cluster goes stale: one banner says why
        stale = [(state, k) for state in self.states for k in state.kinds if k.stale and k.kind not in dead_kinds]
        for state, k in stale[:_MAX_STALE_BANNERS]:
            if k.failing:
                why = summarize(k.kind, k.last_error)
            else:
                why = f"Collections are not finishing; an operator can check the log of {WORKER[k.kind]}."
            upcoming = k.next_attempt_at if k.next_attempt_at and k.next_attempt_at > self.now else None
            found.append(
                Banner(
                    f"stale:{state.name}:{k.kind}",
                    f"{k.label} of {state.name} are older than {STALE_INTERVALS} poll intervals "
                    f"(last collected at {_hhmmss(k.last_good_at)}). {why}"
                    + (f" Next attempt at {_hhmmss(upcoming)}." if upcoming else ""),
                    k.last_error if k.failing else "",
                )
            )
        if len(stale) > _MAX_STALE_BANNERS:
            found.append(Banner("stale:more", f"{len(stale) - _MAX_STALE_BANNERS} more collections are stale."))
        return found


def routed_queues() -> list[str]:
    """Every queue a task is routed to (settings.CELERY_TASK_ROUTES)."""
    return sorted({route["queue"] for route in settings.CELERY_TASK_ROUTES.values() if "queue" in route})


def read_machinery(*, redis_timeout: float = BANNER_REDIS_TIMEOUT, database: bool = True) -> Machinery:
    """One database query (none with database=False) and one Redis round trip (at most `redis_timeout` per socket
    operation, and never more than the page's own Redis timeout)."""
    states = cluster_states() if database else []
    timeout = min(redis_timeout, settings.MESHBOARD_PAGE_REDIS_TIMEOUT)
    try:
        beats = heartbeats.read(routed_queues(), timeout=timeout)
    except heartbeats.HeartbeatsUnavailable as exc:
        return Machinery(states=states, heartbeats=None, redis_error=str(exc))
    return Machinery(states=states, heartbeats=beats)


def machinery(request: HttpRequest) -> dict[str, Any]:
    """Context processor: `machinery`, read only when a template touches it (base.html, for signed-in users)."""
    return {"machinery": SimpleLazyObject(read_machinery)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def readiness_report(m: Machinery) -> dict[str, Any]:
    """What /readyz lists (no internal URLs, no raw reasons: the endpoint needs no login)."""
    hb = m.heartbeats
    report: dict[str, Any] = {"redis": "ok" if m.redis_ok else "unreachable"}
    if hb is not None:
        report["heartbeats"] = {
            "beat": {"alive": hb.beat_alive(), "age_seconds": round(hb.now - hb.beat_at, 1) if hb.beat_at else None},
            "queues": {
                queue: {"alive": bool(workers), "workers": sorted(workers)} for queue, workers in hb.workers.items()
            },
        }
    report["clusters"] = [
        {
            "name": state.name,
            **{
                k.kind: {
                    "last_success": _iso(k.last_good_at),
                    "age_seconds": k.age_seconds,
                    "stale": k.stale,
                    "last_attempt_failed": k.failing,
                    "source": SOURCE[k.kind],
                }
                for k in state.kinds
            },
        }
        for state in m.states
    ]
    report["problems"] = [banner.text for banner in m.banners]
    return report
