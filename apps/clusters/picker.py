"""What every page shows: the selected cluster, the time window, and how fresh the cluster's data is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from apps.core.windows import DEFAULT_WINDOW, WINDOWS

from .freshness import freshness
from .models import Cluster, CollectionRun


@dataclass(frozen=True)
class PageContext:
    cluster: Cluster | None
    clusters: list[Cluster]
    window: str

    def freshness(self) -> dict[str, Any]:
        """`objects` and `metrics` freshness for the page's banners (None without a cluster)."""
        if self.cluster is None:
            return {"objects": None, "metrics": None}
        return {
            "objects": freshness(self.cluster, CollectionRun.Kind.CLUSTER),
            "metrics": freshness(self.cluster, CollectionRun.Kind.METRICS),
        }


def page_context(request: HttpRequest) -> PageContext:
    """The cluster (query `?cluster=`, else the session's, else the first) and time window (`?window=`)."""
    clusters = list(Cluster.objects.filter(enabled=True).order_by("name"))
    wanted = request.GET.get("cluster") or request.session.get("cluster")
    cluster = next((c for c in clusters if c.name == wanted), clusters[0] if clusters else None)
    if cluster is not None and request.session.get("cluster") != cluster.name:
        request.session["cluster"] = cluster.name
    window = request.GET.get("window") or request.session.get("window") or DEFAULT_WINDOW
    if window not in WINDOWS:
        window = DEFAULT_WINDOW
    if request.session.get("window") != window:
        request.session["window"] = window
    return PageContext(cluster=cluster, clusters=clusters, window=window)
