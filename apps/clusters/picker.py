"""What every page shows: the selected cluster, the time window, and how fresh the cluster's data is."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from django.http import HttpRequest

from apps.core.windows import DEFAULT_WINDOW, WINDOWS, YOUNG_DATA_WINDOW, TimeRange, parse_range, preset

from .freshness import freshness
from .models import Cluster, CollectionRun

# Up to this many clusters, the switcher is a plain <select>; more, a text field with a list that filters as one types
# (a <datalist>), since scrolling a select of 50 names is no way to find one.
SELECT_UP_TO = 8


@dataclass(frozen=True)
class PageContext:
    cluster: Cluster | None
    clusters: list[Cluster]
    window: str  # a WINDOWS key, or "custom"
    range: TimeRange | None = None
    range_problem: str = ""  # why the URL's range was not used ("" when it was, or when it gave none)
    cluster_problem: str = ""  # why the URL's cluster was not used ("" when it was, or when it named none)

    @property
    def switcher(self) -> str:
        """How the page offers the other clusters: "" (there are none), "select", or "search"."""
        if len(self.clusters) < 2:
            return ""
        return "select" if len(self.clusters) <= SELECT_UP_TO else "search"

    @property
    def time_range(self) -> TimeRange:
        return self.range or preset(self.window)

    @property
    def query(self) -> str:
        """URL parameters that give this view back in a fresh browser: the range, and the cluster when there are
        several to choose from."""
        cluster = f"cluster={quote(self.cluster.name)}&" if self.cluster is not None and len(self.clusters) > 1 else ""
        return cluster + self.time_range.query

    def freshness(self) -> dict[str, Any]:
        """`objects` and `metrics` freshness for the page's banners (None without a cluster)."""
        if self.cluster is None:
            return {"objects": None, "metrics": None}
        return {
            "objects": freshness(self.cluster, CollectionRun.Kind.CLUSTER),
            "metrics": freshness(self.cluster, CollectionRun.Kind.METRICS),
        }


def page_context(request: HttpRequest, *, own_window: bool = False) -> PageContext:
    """The cluster (query `?cluster=`, else the session's, else the first) and time range (see `_time_range`).
    `own_window`: the page reads `?window=` in a vocabulary of its own (the compare page's 1m and 5m), so the header's
    range ignores the URL's instead of refusing it. A
    `?cluster=` naming no enabled cluster (a typo in the switcher's text field, an old link) is refused aloud, and
    the page shows the session's cluster rather than silently the first."""
    clusters = list(Cluster.objects.filter(enabled=True).order_by("name"))
    by_name = {c.name: c for c in clusters}
    asked = request.GET.get("cluster", "").strip()
    cluster_problem = ""
    if asked and asked not in by_name:
        cluster_problem = f"No cluster is named {asked[:63]!r}."
        asked = ""
    wanted = asked or request.session.get("cluster")
    cluster = by_name.get(wanted, clusters[0] if clusters else None)
    if cluster is not None and request.session.get("cluster") != cluster.name:
        request.session["cluster"] = cluster.name
    time_range, problem = _time_range(request, cluster, from_url=not own_window)
    return PageContext(
        cluster=cluster,
        clusters=clusters,
        window=time_range.key,
        range=time_range,
        range_problem=problem,
        cluster_problem=cluster_problem,
    )


def _time_range(request: HttpRequest, cluster: Cluster | None, *, from_url: bool = True) -> tuple[TimeRange, str]:
    """The URL's range (`?window=` or `?start=&end=`), else the session's (a window chosen before), else the default:
    1 hour, or 15 min while the cluster's metrics are younger than that. The pages put the range into their URL and
    links, so a copied URL shows what its sender saw."""
    problem = ""
    try:
        asked = parse_range(request.GET if from_url else {}, now=time.time())
    except ValueError as exc:
        asked, problem = None, f"The time range in the URL was not used: {exc}."
    if asked is None:
        remembered = request.session.get("window")
        return preset(remembered if remembered in WINDOWS else _default_window(cluster)), problem
    if not asked.custom and request.session.get("window") != asked.key:
        request.session["window"] = asked.key  # an explicit choice only: the young-data default is not kept
    return asked, problem


def _default_window(cluster: Cluster | None) -> str:
    """1 hour, or 15 min while the cluster's metrics (their latest unbroken stretch) are younger than an hour: a
    new cluster, a demo just started, metrics back after an outage."""
    if cluster is None:
        return DEFAULT_WINDOW
    metrics = freshness(cluster, CollectionRun.Kind.METRICS)
    span = timedelta(seconds=WINDOWS[DEFAULT_WINDOW].seconds)
    if metrics.last_good is None or metrics.stretch_start(span) is not None:
        return YOUNG_DATA_WINDOW
    return DEFAULT_WINDOW
