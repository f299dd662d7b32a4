"""How fresh a cluster's data is, read from run records (never from the cluster), and what to tell people about it.

A run record keeps the gateway's raw reason (`CollectionRun.error`: the internal URL, the HTTP status, the client's
exception). Pages show everyone a short sentence naming the component and what to do (`summary`); operators also
see the raw reason (`detail`).

Metrics also say when they are warming up (`Freshness.warming_up`): Prometheus's rates over the collector's long
window (5 m) read low until the window is full of data. The signal, from run records too: the successful metrics runs
of the latest unbroken stretch (no pause longer than one window, or three poll intervals when those are longer)
began less than one window before the latest one. A new Prometheus, a demo just started, or metrics back after a long
outage all begin such a stretch; a Prometheus restarted within minutes (its TSDB kept) does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.utils import timezone

from .models import Cluster, CollectionRun
from .runs import DUE_FIELDS

_GOOD = (CollectionRun.Status.OK, CollectionRun.Status.PARTIAL)

# What the source of each kind of collection is called on a banner.
SOURCE = {CollectionRun.Kind.CLUSTER: "Kubernetes API", CollectionRun.Kind.METRICS: "Prometheus"}
# The worker that runs each kind of collection, as a banner names it.
WORKER = {CollectionRun.Kind.CLUSTER: "the worker for cluster data", CollectionRun.Kind.METRICS: "the metrics worker"}

# The gateways' reasons (apps/clusters/kube.py, apps/metrics/prometheus.py), first match wins.
_PROBLEMS = [
    ("time_limit", re.compile(r"^stopped: the run took longer than its limit")),
    ("process_ended", re.compile(r"^stopped: the worker process running it ended")),  # apps/clusters/lost.py
    ("config", re.compile(r"cannot load the |has no Prometheus URL")),
    # Credential plugins and TLS (apps/clusters/tls.py words them) before the generic reasons a wrapper may add.
    ("exec_plugin", re.compile(r"exec credential plugin \([^)]*\) failed")),
    ("tls_scheme", re.compile(r"TLS: \S+ does not speak TLS|speaks HTTPS, but the kubeconfig's server URL says http")),
    ("tls_name", re.compile(r"TLS: .*certificate is not valid for the name in the URL")),
    ("tls_dates", re.compile(r"TLS: .*certificate (has expired|is not valid yet)")),
    ("tls_ca", re.compile(r"TLS: the CA in .* does not sign")),
    ("tls_client", re.compile(r"TLS: .*accept our client certificate")),
    ("tls", re.compile(r"TLS: ")),
    ("timeout", re.compile(r"did not answer (in time|within)")),
    ("unreachable", re.compile(r"cannot reach |request to Prometheus at \S+ failed")),
    ("unauthorized", re.compile(r"\(401\b|refused our credentials")),
    ("forbidden", re.compile(r"forbidden by RBAC|\(403\)|refused access \(403\)")),
    ("not_found", re.compile(r"not found \(404\)|no Prometheus API at|\(404\)")),
    ("rejected", re.compile(r"rejected the query|answered 4\d\d\b")),
    ("server_error", re.compile(r"answered (429|5\d\d|no status)\b")),
    ("bad_answer", re.compile(r"not JSON|not a List object|unexpected shape|not the Prometheus API")),
]

_SENTENCES = {
    (CollectionRun.Kind.CLUSTER, "unreachable"): "cannot reach the API server. Check that the cluster is up and that "
    "the workers can reach the address in its kubeconfig.",
    (CollectionRun.Kind.CLUSTER, "timeout"): "the API server did not answer in time. It may be overloaded; Meshboard "
    "tries again with growing pauses.",
    (CollectionRun.Kind.CLUSTER, "unauthorized"): "the API server refused Meshboard's credentials. Renew the "
    "kubeconfig or token.",
    (CollectionRun.Kind.CLUSTER, "forbidden"): "Meshboard's identity may not read what it needs (RBAC). Grant it "
    "get and list on what the collector reads (an operator sees the exact rule).",
    (CollectionRun.Kind.CLUSTER, "not_found"): "the API server does not serve a resource Meshboard reads. Check that "
    "OSM's and SMI's custom resources are installed.",
    (CollectionRun.Kind.CLUSTER, "rejected"): "the API server rejected a request. An operator can see the details.",
    (CollectionRun.Kind.CLUSTER, "server_error"): "the API server answered with an error. Meshboard tries again with "
    "growing pauses.",
    (CollectionRun.Kind.CLUSTER, "bad_answer"): "the API server sent an answer Meshboard cannot read. Check that the "
    "kubeconfig points at a Kubernetes API server.",
    (CollectionRun.Kind.CLUSTER, "config"): "the cluster's kubeconfig cannot be loaded. Fix the kubeconfig path or "
    "context of this cluster.",
    (CollectionRun.Kind.CLUSTER, "exec_plugin"): "the kubeconfig's credential plugin (such as kubelogin) failed, so "
    "nothing was asked of the API server. Run the plugin by hand as the worker's user; an operator sees what it said.",
    (CollectionRun.Kind.CLUSTER, "tls_scheme"): "the scheme of the kubeconfig's server URL (https or http) does not "
    "match the API server. Fix the server URL.",
    (CollectionRun.Kind.CLUSTER, "tls_name"): "the API server's certificate does not hold the name in the "
    "kubeconfig's server URL. Use a name it holds, or set tls-server-name in the kubeconfig.",
    (CollectionRun.Kind.CLUSTER, "tls_dates"): "the API server's certificate has expired or is not valid yet. Renew "
    "it, or check the clocks of both machines.",
    (CollectionRun.Kind.CLUSTER, "tls_ca"): "the CA in the kubeconfig does not sign the API server's certificate. "
    "Put the cluster's CA in the kubeconfig; do not turn verification off.",
    (CollectionRun.Kind.CLUSTER, "tls_client"): "the API server does not accept Meshboard's client certificate "
    "(missing, expired or from a CA it does not trust). Get a new kubeconfig.",
    (CollectionRun.Kind.CLUSTER, "tls"): "the TLS handshake with the API server failed. An operator can see "
    "OpenSSL's reason.",
    (CollectionRun.Kind.METRICS, "tls_scheme"): "the scheme of the cluster's Prometheus URL (https or http) does not "
    "match the server. Fix the URL.",
    (CollectionRun.Kind.METRICS, "tls_name"): "Prometheus's certificate does not hold the name in the cluster's "
    "Prometheus URL. Use a name it holds.",
    (CollectionRun.Kind.METRICS, "tls_dates"): "Prometheus's certificate has expired or is not valid yet. Renew it, "
    "or check the clocks of both machines.",
    (CollectionRun.Kind.METRICS, "tls_ca"): "Meshboard does not trust Prometheus's certificate: its CA is not in "
    "the cluster's Prometheus CA file (add_cluster --prometheus-ca-file). Do not turn verification off.",
    (CollectionRun.Kind.METRICS, "tls_client"): "Prometheus ended the TLS handshake: it may want a client "
    "certificate Meshboard does not send. An operator can see OpenSSL's reason.",
    (CollectionRun.Kind.METRICS, "tls"): "the TLS handshake with Prometheus failed. An operator can see OpenSSL's "
    "reason.",
    (CollectionRun.Kind.METRICS, "unreachable"): "cannot reach Prometheus. Check that it is running and that the "
    "cluster's Prometheus URL is right.",
    (CollectionRun.Kind.METRICS, "timeout"): "Prometheus did not answer in time. It may be overloaded; Meshboard "
    "tries again with growing pauses.",
    (CollectionRun.Kind.METRICS, "unauthorized"): "Prometheus refused access. Check the credentials or proxy in the "
    "cluster's Prometheus URL.",
    (CollectionRun.Kind.METRICS, "forbidden"): "Prometheus refused access. Check the credentials or proxy in the "
    "cluster's Prometheus URL.",
    (
        CollectionRun.Kind.METRICS,
        "not_found",
    ): "there is no Prometheus API at the cluster's Prometheus URL. Fix the URL.",
    (CollectionRun.Kind.METRICS, "rejected"): "Prometheus rejected a query. An operator can see the details.",
    (CollectionRun.Kind.METRICS, "server_error"): "Prometheus answered with an error. Meshboard tries again with "
    "growing pauses.",
    (CollectionRun.Kind.METRICS, "bad_answer"): "the cluster's Prometheus URL answers, but not as Prometheus does. "
    "Fix the URL.",
    (CollectionRun.Kind.METRICS, "config"): "the cluster has no Prometheus URL. Set one to collect metrics.",
}


def problem_of(error: str) -> str:
    """The kind of failure a run's raw reason describes ("" when none of the gateways' reasons match)."""
    for problem, pattern in _PROBLEMS:
        if pattern.search(error):
            return problem
    return ""


def summarize(kind: str, error: str) -> str:
    """A sentence for everyone: the component that failed and what to do; never the internal URL."""
    problem = problem_of(error)
    if problem == "time_limit":
        return (
            f"{SOURCE[kind]}: the collection took longer than its limit of {settings.MESHBOARD_COLLECT_TIME_LIMIT} s. "
            "The source may be very slow; an operator can raise MESHBOARD_COLLECT_TIME_LIMIT."
        )
    if problem == "process_ended":
        return (
            f"{SOURCE[kind]}: the process of {WORKER[kind]} running the collection ended before it finished (killed, "
            "often for lack of memory). Meshboard collects again at the next interval; if this recurs, give that "
            "worker more memory."
        )
    sentence = _SENTENCES.get((kind, problem))
    if sentence is None:
        return (
            f"{SOURCE[kind]}: the last collection failed. An operator can see why here or in the log of {WORKER[kind]}."
        )
    return f"{SOURCE[kind]}: {sentence}"


# The metrics collector's long rate window (apps/metrics/catalog.py `windows`: max(5 min, 4 scrapes)); clusters may
# not import metrics, so tests/demo/test_warming_up.py checks the two agree.
LONG_WINDOW_SECONDS = 300.0
# A stretch of successful metrics runs survives pauses up to this many poll intervals (when longer than the window).
STRETCH_POLL_INTERVALS = 3


def rate_window_seconds(scrape_interval_seconds: float | None) -> float:
    """The collector's long window for a scrape interval (unknown: the usual 5 min)."""
    return max(LONG_WINDOW_SECONDS, 4 * float(scrape_interval_seconds or 0))


@dataclass(frozen=True)
class Warmup:
    """Metrics whose data began less than one rate window ago: rates cover only `covered_seconds` until `until`."""

    covered_seconds: int
    window_seconds: int
    until: datetime


@dataclass(frozen=True)
class Freshness:
    """The latest finished attempt of one kind of collection and the latest that produced data."""

    kind: str
    last_run: CollectionRun | None
    last_good: CollectionRun | None
    next_attempt_at: datetime | None = None
    window_seconds: float = LONG_WINDOW_SECONDS  # metrics: the long rate window
    stretch_gap_seconds: float = LONG_WINDOW_SECONDS  # metrics: the longest pause that keeps a stretch of runs
    # Kubernetes data of a namespace-scoped cluster covers these namespaces only; every page says so beside its age.
    watched_namespaces: tuple[str, ...] = ()
    cluster_id: int | None = None

    @property
    def age_seconds(self) -> int | None:
        if not self.last_good or not self.last_good.finished_at:
            return None
        return max(0, int((timezone.now() - self.last_good.finished_at).total_seconds()))

    @property
    def failing(self) -> bool:
        """The latest attempt failed."""
        return bool(self.last_run and self.last_run.status == CollectionRun.Status.FAILED)

    @property
    def never_collected(self) -> bool:
        return self.last_good is None

    @property
    def stale_since(self) -> datetime | None:
        """When the data stopped being refreshed, if there is data and the latest attempt failed (data never
        collected is not stale: see `never_collected`)."""
        if self.failing and self.last_good:
            return self.last_good.finished_at
        return None

    @property
    def error(self) -> str:
        """The latest attempt's raw reason, when it failed (internal URLs included: for operators)."""
        return self.last_run.error if self.failing else ""

    @property
    def summary(self) -> str:
        """Why the latest attempt failed, as a sentence anyone may read."""
        return summarize(self.kind, self.last_run.error) if self.failing else ""

    @property
    def next_attempt(self) -> datetime | None:
        """When the next attempt is due, if that is still to come (a failing collection backs off)."""
        if self.next_attempt_at and self.next_attempt_at > timezone.now():
            return self.next_attempt_at
        return None

    @property
    def label(self) -> str:
        return CollectionRun.Kind(self.kind).label

    def stretch_start(self, span: timedelta) -> datetime | None:
        """When the latest unbroken stretch of successful runs began (no pause longer than `stretch_gap_seconds`),
        if that is less than `span` before the latest one; None when it began earlier or nothing was collected."""
        if self.last_good is None:
            return None
        latest = self.last_good.started_at
        gap = timedelta(seconds=self.stretch_gap_seconds)
        starts = (
            CollectionRun.objects.filter(
                cluster_id=self.last_good.cluster_id,
                kind=self.kind,
                status__in=_GOOD,
                started_at__lte=latest,
                started_at__gte=latest - span - gap,
            )
            .order_by("-started_at")
            .values_list("started_at", flat=True)
        )
        first = latest
        for started in starts:  # newest first, back to the first pause longer than `gap`
            if first - started > gap:
                break
            first = started
            if latest - first >= span:
                return None
        return first

    @cached_property
    def warming_up(self) -> Warmup | None:
        """For metrics: whether the latest data covers less than one rate window, and until when (one query, made
        only when a page asks)."""
        if self.kind != CollectionRun.Kind.METRICS or self.last_good is None:
            return None
        window = timedelta(seconds=self.window_seconds)
        first = self.stretch_start(window)
        if first is None:
            return None
        covered = self.last_good.started_at - first
        return Warmup(
            covered_seconds=max(1, int(covered.total_seconds())),
            window_seconds=int(self.window_seconds),
            until=first + window,
        )


def freshness(cluster: Cluster, kind: str) -> Freshness:
    window = rate_window_seconds(cluster.scrape_interval_seconds)
    runs = CollectionRun.objects.filter(cluster=cluster, kind=kind).exclude(
        status__in=[CollectionRun.Status.RUNNING, CollectionRun.Status.SKIPPED]
    )
    return Freshness(
        kind=kind,
        last_run=runs.order_by("-started_at").first(),
        last_good=runs.filter(status__in=_GOOD).order_by("-started_at").first(),
        next_attempt_at=getattr(cluster, DUE_FIELDS[kind], None),
        window_seconds=window,
        stretch_gap_seconds=max(window, STRETCH_POLL_INTERVALS * cluster.poll_interval_seconds),
        watched_namespaces=tuple(cluster.watched_namespaces or ()) if kind == CollectionRun.Kind.CLUSTER else (),
        cluster_id=cluster.pk,
    )
