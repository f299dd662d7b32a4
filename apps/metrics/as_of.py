"""The KPIs of a past time, for the overview's and the graph's "as of": the metrics cycle's own queries
(catalog.cycle, asked through services.ask_cycle) evaluated at that time, mapped by services.map_cycle, never stored.

This is the one place a page asks Prometheus for the overview's data, and only for a past view: every query shares the
charts' deadline and circuit breaker (ranges.PageDeadline), so a slow Prometheus costs a page at most
MESHBOARD_CHART_READ_TIMEOUT and says "metrics unavailable". A time Prometheus holds nothing for (before its retention,
before it scraped this mesh) says "no data then" and gives no value, never zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apps.clusters.models import Cluster
from apps.mesh.models import root_service_name

from . import catalog
from .catalog import Available
from .models import EDGE_KEY, MetricsState
from .prometheus import PrometheusError
from .ranges import BREAKER, DeadlinePassed, PageDeadline, _breaker_key
from .resolve import Resolver
from .services import Cycle, ask_cycle, last_available, map_cycle, mesh_kind

NO_DATA = "no data then"


@dataclass
class PastKPIs:
    """KPIs at `at`, shaped as the snapshot's KPI rows read: `services` as ServiceKPI values by (namespace, service),
    `edges` as EdgeKPI values, `shares` as SplitShare values by (namespace, split, backend). All empty, with
    `unavailable` saying why, when Prometheus could not answer or held no data then."""

    at: datetime
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    shares: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    unavailable: str = ""
    failed: list[str] = field(default_factory=list)  # queries that failed alone (their fields are empty), with why
    queries: int = 0

    @property
    def no_data(self) -> bool:
        return self.unavailable.startswith(NO_DATA)


def _no_data(cycle: Cycle) -> bool:
    """Nothing at all answered: Envoy's counters exist (at 0) wherever a sidecar ran, so a Prometheus that held this
    mesh then returns series, and one that returns none held nothing then."""
    return all(not samples for samples in cycle.results.values())


def kpis_at(
    cluster: Cluster,
    when: datetime,
    splits: list[dict[str, Any]] | None,
    *,
    mesh: str | None = None,
    available: Available | None = None,
    window: float | None = None,
) -> PastKPIs:
    """The cycle's KPIs evaluated at `when`. `splits` (rows with `namespace`, `name`, `root_service`, `backends`):
    the TrafficSplits of that time (from the configuration history), which say whose traffic a root's KPIs and
    shares are; None keeps the latest snapshot's (its VirtualServices' too).
    The services, pods and workloads that resolve Prometheus's names are the latest snapshot's: the history keeps
    no pods.
    A cut-over on one cluster asks the catalog of the mesh that ran then (`mesh`, with what to ask of it:
    `available`) and averages over a whole `window` (seconds before `when`) instead of the cycle's minute: the
    same fixed set of queries, each a rate over that window."""
    out = PastKPIs(at=when)
    if not cluster.prometheus_url:
        out.unavailable = "metrics unavailable: this cluster has no Prometheus URL"
        return out
    deadline = PageDeadline(cluster)
    if held_back := deadline.held_back():
        out.unavailable = f"metrics unavailable: {held_back}"
        return out
    state = MetricsState.objects.filter(cluster=cluster).first()
    scrape = float(cluster.scrape_interval_seconds or (state.scrape_interval_seconds if state else 15.0))
    # What this Prometheus keeps, as the last collection found it (asking again would cost a query per page).
    mesh = mesh or mesh_kind(cluster)
    available = available or last_available(state, mesh)
    windows = catalog.windows(scrape)
    if window is not None:
        span = max(window, windows.short)
        windows = catalog.Windows(scrape_interval=windows.scrape_interval, short=span, long=span)
    cycle = Cycle(at=when.timestamp(), windows=windows, available=available, mesh=mesh)
    asked = 0

    def instant(key: str, expr: str) -> list:
        nonlocal asked
        asked += 1
        return deadline.ask(lambda gateway: gateway.instant(expr, cycle.at, what=f"as of: {catalog.whole_key(key)}"))

    def give_up(exc: PrometheusError) -> bool:
        return isinstance(exc, DeadlinePassed) or deadline.tripped_until is not None or (exc.transient and asked == 1)

    error = ask_cycle(cycle, instant, give_up=give_up)
    out.queries = asked
    if error is not None and (not cycle.results or give_up(error)):
        out.unavailable = f"metrics unavailable: {deadline.why(error)}"
        return out
    BREAKER.reset(_breaker_key(cluster))
    if _no_data(cycle):
        out.unavailable = (
            f"{NO_DATA}: the Prometheus of cluster {cluster.name} holds no sidecar series at "
            f"{when:%Y-%m-%d %H:%M:%S} UTC (before its retention, or before it scraped this mesh)"
        )
        return out
    out.failed = list(cycle.failures.values())
    resolver = Resolver.for_cluster(cluster)
    names: dict[tuple[str, str], str] = {}
    if splits is not None:
        resolver.splits = {}
    for s in sorted(splits or [], key=lambda s: (s["namespace"], s["name"])):  # the first by name, as the collector
        root = root_service_name(s["root_service"])
        backends = [b["service"] for b in s["backends"] if isinstance(b, dict) and b.get("service")]
        resolver.splits.setdefault((s["namespace"], root), backends)
        names.setdefault((s["namespace"], root), s["name"])
    mapped = map_cycle(cycle, resolver)
    out.services = {key: {"namespace": key[0], "service": key[1], **row} for key, row in mapped.services.items()}
    out.edges = [{**dict(zip(EDGE_KEY, key, strict=True)), **row} for key, row in mapped.edges.items()]
    for r in mapped.splits:
        split = names.get((r["namespace"], r["root"]), "")
        out.shares[(r["namespace"], split, r["backend"])] = {"split": split, **r}
    return out
