"""The migration page (`/migrate/`) and its downloads: the YAML bundle per namespace or all in one, and the report.

Each answer builds the migration from the selected cluster's latest snapshot (`services.build`): nothing is stored,
nothing is sent to the cluster.
"""

from __future__ import annotations

import re

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.clusters.models import Cluster
from apps.clusters.picker import page_context
from apps.clusters.roles import require_viewer
from apps.clusters.scope import hidden_note, request_namespaces
from apps.history import services as history
from apps.mesh.models import Service
from apps.mesh.names import NAMESPACE, is_valid_name

from . import before_after, cutover, services

YAML_PREVIEW_LIMIT = 30  # manifests per namespace shown inline; more only in the download
DIFFERENCES_SHOWN = 50  # per namespace; the report lists them all


def _filename(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", "-".join(parts))[:200]


def _bundle_url(namespace: str) -> str:
    """The namespace's bundle, or "" for a name that breaks Kubernetes' rule: never put into a path (apps.mesh.names);
    the whole bundle still holds it."""
    return reverse("migration:namespace-bundle", args=[namespace]) if is_valid_name(NAMESPACE, namespace) else ""


def _migration(request: HttpRequest) -> tuple[object, services.Migration | None, str]:
    ctx = page_context(request)
    if ctx.cluster is None:
        return ctx, None, ""
    # A user limited to namespaces gets their namespaces' plans only, not those of namespaces theirs refer to.
    mine = request_namespaces(request)
    namespaces = None if mine is None else set(mine)
    try:
        return ctx, services.build(ctx.cluster, request.GET.get("revision", "")[:63], namespaces), ""
    except services.BadRevision as exc:
        return ctx, None, str(exc)


def _scope_comment(request: HttpRequest) -> str:
    """A download says, like every page, that it holds only the user's namespaces."""
    note = hidden_note(request_namespaces(request))
    return f"# {note}\n" if note else ""


@require_GET
@login_required
def migrate(request: HttpRequest) -> HttpResponse:
    """Per namespace: what will be generated, its fidelity, where the meshes differ; the order and the plan."""
    require_viewer(request)
    ctx, migration, error = _migration(request)
    revision = request.GET.get("revision", "")[:63].strip()
    context: dict = {"page_ctx": ctx, "revision": revision, "error": error, "migration": migration}
    if ctx.cluster is not None:
        context.update(ctx.freshness())
    if migration is not None:
        c = migration.check
        sections = []
        ordered = [n for step in migration.plan.steps for n in step.namespaces]
        ordered += [n for n in migration.translation.namespaces if n not in ordered]
        for name in ordered:
            plan = migration.translation.namespaces[name]
            diffs = c.in_namespace(name)
            sections.append(
                {
                    "plan": plan,
                    "bundle_url": _bundle_url(name),
                    "order": migration.order_of(name),
                    "counts": plan.counts(),
                    "items": [i for i in plan.items if i.level != "exact"]
                    + [i for i in c.found_items if i.namespace == name],
                    "exact": [i for i in plan.items if i.level == "exact"],
                    "differences": diffs[:DIFFERENCES_SHOWN],
                    "more_differences": max(0, len(diffs) - DIFFERENCES_SHOWN),
                    "splits": c.splits_in(name),
                    "yaml": services.namespace_yaml(migration, plan)
                    if len(plan.manifests) <= YAML_PREVIEW_LIMIT
                    else "",
                }
            )
        context.update(
            sections=sections,
            counts=migration.counts(),
            cluster_items=migration.translation.cluster_items,
        )
    response = render(request, "migration/migrate.html", context)
    if error:
        response.status_code = 400
    return response


@require_GET
@login_required
def bundle(request: HttpRequest, namespace: str | None = None) -> HttpResponse:
    """The YAML bundle: one namespace's, or every namespace's in the order to move them in."""
    require_viewer(request)
    ctx, migration, error = _migration(request)
    if error:
        return HttpResponse(error + "\n", status=400, content_type="text/plain; charset=utf-8")
    if migration is None:
        raise Http404("No cluster yet.")
    if namespace is not None and namespace not in migration.translation.namespaces:
        raise Http404("Nothing is generated for that namespace.")
    text = _scope_comment(request) + services.bundle_yaml(migration, namespace)
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    name = _filename("meshboard-istio", ctx.cluster.name, *([namespace] if namespace else [])) + ".yaml"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
@login_required
def report(request: HttpRequest) -> HttpResponse:
    """The report `manage.py export_istio` writes: fidelity items, differences, what is not collected, the order."""
    require_viewer(request)
    ctx, migration, error = _migration(request)
    if error:
        return HttpResponse(error + "\n", status=400, content_type="text/plain; charset=utf-8")
    if migration is None:
        raise Http404("No cluster yet.")
    text = _scope_comment(request) + services.report_text(migration)
    response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename("meshboard-istio", ctx.cluster.name)}.txt"'
    return response


@require_GET
@login_required
def before_after_view(request: HttpRequest) -> HttpResponse:
    """One namespace before and after the move: `?before=<OSM cluster>&after=<Istio cluster>&namespace=<ns>`; the same
    cluster on both sides compares before and after its cut-over (`&cutover=<time>`, else the one the history saw)."""
    require_viewer(request)
    ctx = page_context(request)
    clusters = {c.name: c for c in ctx.clusters}
    before_name = request.GET.get("before", "").strip()[:63]
    after_name = request.GET.get("after", "").strip()[:63]
    namespace = request.GET.get("namespace", "").strip()[:253]
    cutover_text = request.GET.get("cutover", "").strip()[:64]
    mine = request_namespaces(request)
    context: dict = {
        "page_ctx": ctx,
        "before_name": before_name,
        "after_name": after_name,
        "namespace": namespace,
        "cutover_text": cutover_text,
        "result": None,
        "cutover": None,
        "error": "",
        "notice": "",
        "namespaces": sorted(set(Service.objects.filter(cluster__in=ctx.clusters).values_list("namespace", flat=True))),
    }
    if before_name or after_name or namespace:
        if before_name not in clusters or after_name not in clusters:
            context["error"] = "Choose two clusters Meshboard collects: the one before the move and the one after."
        elif not namespace or (mine is not None and namespace not in mine):
            context["error"] = "Choose a namespace (one of yours)."
        elif before_name == after_name:
            _cutover(context, clusters[before_name], namespace, cutover_text)
        else:
            context["result"] = before_after.compare(clusters[before_name], clusters[after_name], namespace)
    response = render(request, "migration/before_after.html", context)
    if context["error"]:
        response.status_code = 400
    return response


def _cutover(context: dict, cluster: Cluster, namespace: str, text: str) -> None:
    """The same cluster before and after its cut-over, at the time given or the one the history saw."""
    if text:
        try:
            at = history.parse_time(text)
        except history.NotInHistory as exc:
            context["error"] = f"Cut-over time: {exc}."
            return
        context["cutover"] = cutover.compare(cluster, namespace, at, detected=False)
        return
    at = cutover.detected_cutover(cluster)
    if at is None:
        # Not the visitor's mistake: nothing to compare yet (200, said as a notice).
        context["notice"] = (
            f"No cut-over of cluster {cluster.name} in its history (it is not read as Istio now, or no collection saw "
            "OSM's MeshConfig go): give the cut-over time."
        )
        return
    context["cutover"] = cutover.compare(cluster, namespace, at, detected=True)
