"""The mesh "as of" a past time, for the overview and the graph (`?as_of=`): the configuration from the history
(TrafficSplits and the access policy then: apps.history), the KPIs from Prometheus evaluated then (apps.metrics.as_of).

What the history does not hold comes from the latest snapshot, and the pages say so: the Services, pods, workloads,
their sidecars and service accounts. A service created since is listed with the KPIs of then (none, usually); one
deleted since is not listed, though its traffic then still shows on the graph as a peer the snapshot does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from apps.clusters.models import Cluster
from apps.history import services as history
from apps.metrics.as_of import PastKPIs, kpis_at
from apps.policies import smi_access
from apps.policies.smi_access import Policy

# How long the service page's charts reach back from the time of a past view.
CHART_SPAN_SECONDS = 3600


@dataclass
class PastView:
    when: datetime
    splits: list[dict[str, Any]]  # TrafficSplit values then
    policy: Policy  # the access policy then
    kpis: PastKPIs  # the KPIs then, or why there are none

    @property
    def value(self) -> str:
        """The time as links carry it (`as_of=`): ISO 8601 in UTC, to the microsecond the history records."""
        return self.when.isoformat()

    @property
    def query(self) -> str:
        return f"as_of={quote(self.value)}"

    @property
    def chart_range(self) -> str:
        """URL parameters for a service page whose charts end at this time."""
        end = self.when.timestamp()
        return f"start={end - CHART_SPAN_SECONDS:.0f}&end={end:.0f}"


def past_view(cluster: Cluster, text: str, *, kpis: bool = True) -> tuple[PastView | None, str]:
    """The view `?as_of=<text>` asks for: (None, "") when it asks none, (None, why) for a time the history cannot
    show (malformed, in the future, before it starts), else the view. `kpis=False` leaves Prometheus unasked (a page
    that draws from another request, the graph's shell)."""
    text = (text or "").strip()
    if not text:
        return None, ""
    try:
        when = history.as_of_time(cluster, text, history.CONFIG_KINDS)
    except history.NotInHistory as exc:
        return None, f"Cannot show the mesh as of {text[:64]!r}: {exc}. Showing the present."
    splits = history.splits_as_of(cluster, when)
    past_kpis = kpis_at(cluster, when, splits) if kpis else PastKPIs(at=when)
    return PastView(when, splits, smi_access.load_policy_as_of(cluster, when), past_kpis), ""
