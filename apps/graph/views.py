"""The graph page (a shell) and the one JSON endpoint its script draws from."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import quote_plus, urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.clusters.addresses import internal_addresses
from apps.clusters.models import Cluster
from apps.clusters.picker import page_context
from apps.clusters.roles import can_change_weights, require_viewer
from apps.clusters.scope import request_namespaces
from apps.core.conditional import entity_tag, mark, not_modified
from apps.core.gc import gc_paused
from apps.core.json_response import json_response
from apps.mesh.kept import KeptPerSnapshot, snapshot_version
from apps.metrics.models import MetricsState
from apps.overview.as_of import past_view
from apps.overview.overview import namespaces

from .graph import build_graph
from .query import QueryError, parse

MAX_NAMESPACES = 200
# Above this many nodes (services, callers and unknown peers) the page starts with every namespace collapsed into one
# node; a click expands one. 1,000 services (about 1,030 nodes) are still drawn whole. Not a settings.py entry (that
# file is shared): a deployment or a test may set MESHBOARD_GRAPH_COLLAPSE_ABOVE in its settings to change it.
COLLAPSE_ABOVE = 1500
# The present graph's bodies kept per cluster, scope and query under the versions they were built from, the least
# recently used dropped first above this many bytes in each web process (8 MB is one 5,000-service graph).
KEPT_ANSWER_BYTES = 32_000_000
kept_answers: KeptPerSnapshot[bytes] = KeptPerSnapshot(KEPT_ANSWER_BYTES, len)


def _form_quote(text: str, safe: str = "", encoding: str | None = None, errors: str | None = None) -> str:
    """As a browser's URLSearchParams writes a value (application/x-www-form-urlencoded): only * - . _ and ASCII letters
    and digits stay as they are, a space is +."""
    return quote_plus(text, safe="*", encoding=encoding, errors=errors).replace("~", "%7E")


def _data_url(namespace_list: list[str], chosen: list[str], find: str, hide: str, idle: bool, as_of: str = "") -> str:
    """The data URL the page's script asks first (graph.js `query()`: the form's chosen namespaces in the list's order,
    find and hide trimmed, idle), so that the page can preload it while its scripts load. Should the two ever differ,
    the script fetches its own and the preload goes unused."""
    pairs = [("ns", ns) for ns in namespace_list if ns in set(chosen)]
    pairs += [(name, value.strip()) for name, value in (("find", find), ("hide", hide)) if value.strip()]
    if idle:
        pairs.append(("idle", "1"))
    if as_of:
        pairs.append(("as_of", as_of))
    return reverse("graph:data") + "?" + urlencode(pairs, quote_via=_form_quote)


def _params(request: HttpRequest) -> tuple[list[str], str, str]:
    chosen = [ns[:253] for ns in request.GET.getlist("ns") if ns][:MAX_NAMESPACES]
    return chosen, request.GET.get("find", "")[:1000], request.GET.get("hide", "")[:1000]


@require_GET
@login_required
def graph(request: HttpRequest) -> HttpResponse:
    require_viewer(request)
    ctx = page_context(request)
    chosen, find, hide = _params(request)
    # The shell checks the time (and says why it cannot show it); the data request asks Prometheus for then.
    past, as_of_error = past_view(ctx.cluster, request.GET.get("as_of", ""), kpis=False) if ctx.cluster else (None, "")
    config = {
        "dataUrl": reverse("graph:data"),
        "cluster": ctx.cluster.name if ctx.cluster else "",
        # Kept positions are per user and cluster: the browser's storage key names both.
        "user": request.user.pk,
        "icons": {"mtls": static("graph/padlock.svg"), "open": static("graph/padlock-open.svg")},
        "collapseAbove": getattr(settings, "MESHBOARD_GRAPH_COLLAPSE_ABOVE", COLLAPSE_ABOVE),
        "asOf": past.value if past else "",
    }
    namespace_list = namespaces(ctx.cluster) if ctx.cluster else []
    show_idle = request.GET.get("idle") == "1"
    context = {
        "page_ctx": ctx,
        "config": config,
        "namespaces": namespace_list,
        "chosen": chosen,
        "find": find,
        "hide": hide,
        "show_idle": show_idle,
        "past": past,
        "as_of_error": as_of_error,
        # Fetched while the scripts load (at 5,000 services the data is 8.5 MB and takes ~0.4 s to build).
        "preload": _data_url(namespace_list, chosen, find, hide, show_idle, config["asOf"]) if ctx.cluster else "",
        **ctx.freshness(),
    }
    return render(request, "graph/graph.html", context)


@require_GET
@login_required
def data(request: HttpRequest) -> HttpResponse:
    """`?ns=a&ns=b&find=...&hide=...&as_of=...` → the graph as JSON; 400 with {"error": ...} for a bad expression.
    A time the history cannot show gives the present graph with `as_of_error` saying why."""
    require_viewer(request)
    ctx = page_context(request)
    if ctx.cluster is None:
        return JsonResponse({"error": "no cluster yet"}, status=404)
    chosen, find, hide = _params(request)
    try:  # a bad expression is refused before Prometheus is asked for a past time
        parse(find), parse(hide)
    except QueryError as exc:
        return JsonResponse({"error": str(exc), "field": "find" if _bad(find) else "hide"}, status=400)
    # The present graph is a function of what `_present` names: a reload or a refresh that finds the same versions is
    # answered 304 and the browser draws the body it kept (1.6 MB and ~0.15 s of the server at 1,000 services).
    present = None if "as_of" in request.GET else _present(request, ctx.cluster, chosen, find, hide)
    if present is not None and (unchanged := not_modified(request, present.tag)) is not None:
        return unchanged
    try:
        if present is None:
            response = _answer(ctx.cluster, chosen, find, hide, request.GET.get("as_of", ""))
            response["Cache-Control"] = "no-store"
            return response
        # Every request after the first of a cycle (other users, other tabs, each refresh after a metrics cycle) gets
        # the body built for the same versions: 0.5 s of the server at 5,000 services, once per cycle and body.
        body = kept_answers.get(
            ctx.cluster,
            present.body,
            lambda: _answer(ctx.cluster, chosen, find, hide, "").content,
            version=present.body_version,
        )
    except QueryError as exc:
        return JsonResponse({"error": str(exc), "field": "find" if _bad(find) else "hide"}, status=400)
    return mark(HttpResponse(body, content_type="application/json"), present.tag)


def _answer(cluster: Cluster, chosen: list[str], find: str, hide: str, as_of: str) -> HttpResponse:
    """The graph as JSON; a time the history cannot show gives the present graph with `as_of_error` saying why."""
    past, as_of_error = past_view(cluster, as_of)
    # Thousands of small acyclic dicts: without the pause, generation scans add tens of ms at random requests.
    with gc_paused():
        graph_data = build_graph(cluster, namespaces=chosen, find=find, hide=hide, past=past)
        graph_data["as_of_error"] = as_of_error
        return json_response(graph_data)


class _Present(NamedTuple):
    tag: str  # the answer's, as the browser keeps it
    body: tuple  # what the body is built from besides the cluster's versions (the scope and the query)
    body_version: str  # the cluster's versions and the code's, for that body


def _present(request: HttpRequest, cluster: Cluster, chosen: list[str], find: str, hide: str) -> _Present | None:
    """What the present graph's answer is made of: the cluster's snapshot and metrics versions, read before the graph
    reads their rows (every commit of snapshot rows draws a new snapshot version; a metrics cycle stores its rows and
    MetricsState in one transaction), the user's namespace scope, and the query; the answer also depends on whether
    the internal-address filter rewrites it for this user and with which addresses (apps/clusters/addresses.py), after
    the body is built. None before the first collection or the first metrics cycle. The body is built from nothing
    else (not the user, not the role but through the scope), so one body serves every request for the same body and
    versions."""
    version = snapshot_version(cluster)
    metrics = MetricsState.objects.filter(cluster=cluster).values_list("collected_at", flat=True).first()
    if version is None or metrics is None:
        return None
    scope = request_namespaces(request)
    body = (None if scope is None else tuple(sorted(scope)), tuple(chosen), find, hide)
    body_version = entity_tag("graph", cluster.pk, cluster.name, version, metrics, *body)
    hidden = None if can_change_weights(request.user) else tuple(sorted(internal_addresses()))
    query = tuple((name, tuple(values)) for name, values in sorted(request.GET.lists()))
    return _Present(entity_tag(body_version, hidden, query), body, body_version)


def _bad(expression: str) -> bool:
    try:
        parse(expression)
    except QueryError:
        return True
    return False
