"""The configuration history's timelines: the mesh's (`/history/`), one object's (`/history/split/<ns>/<name>/`,
`/history/traffictarget/...`) and one Service's (the splits and TrafficTargets that name it). Newest first, 50 a
page, each change with its diff; `from` and `to` (ISO 8601 or unix seconds) in the URL bound the view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps.clusters.kube import FIELD_MANAGER
from apps.clusters.picker import PageContext, page_context
from apps.clusters.roles import require_viewer
from apps.clusters.scope import require_namespace
from apps.core.pages import render_page

from . import services
from .links import SLUGS, object_history_url
from .models import POLICY_KINDS, Kind, Tracked, Version

PAGE_SIZE = 50


@dataclass(frozen=True)
class Entry:
    version: Version
    lines: list[services.DiffLine]
    object_url: str
    policy_as_of: str  # the Policies page's "as of" value for this change ("" when it does not shape policy)
    policy_before: str  # ... and for the moment before it

    @property
    def by_meshboard(self) -> bool:
        return self.version.changed_by == FIELD_MANAGER


def _entries(versions: list[Version], start) -> list[Entry]:
    entries = []
    for v in versions:
        policy = v.kind in POLICY_KINDS
        before = v.recorded_at - timedelta(milliseconds=1)
        entries.append(
            Entry(
                version=v,
                lines=services.diff(v.previous, v.content),
                object_url=object_history_url(v.kind, v.namespace, v.name),
                policy_as_of=v.recorded_at.isoformat() if policy else "",
                policy_before=before.isoformat() if policy and start is not None and before >= start else "",
            )
        )
    return entries


def _render(request: HttpRequest, ctx: PageContext, versions: QuerySet[Version] | None, **context: object):
    """The timeline page: `versions` filtered by the URL's from/to, paged."""
    since_text, until_text = request.GET.get("from", "").strip(), request.GET.get("to", "").strip()
    errors = []
    bounds = {}
    for key, text in (("since", since_text), ("until", until_text)):
        if text:
            try:
                bounds[key] = services.parse_time(text)
            except services.NotInHistory as exc:
                errors.append(f"{'from' if key == 'since' else 'to'}: {exc}")
    page = None
    cluster = ctx.cluster
    start = services.complete_from(cluster) if cluster is not None else None
    if versions is not None:
        if "since" in bounds:
            versions = versions.filter(recorded_at__gte=bounds["since"])
        if "until" in bounds:
            versions = versions.filter(recorded_at__lte=bounds["until"])
        page = Paginator(versions, PAGE_SIZE).get_page(request.GET.get("page"))
    context.update(
        page_ctx=ctx,
        page=page,
        entries=_entries(list(page.object_list), start) if page is not None else [],
        since=since_text,
        until=until_text,
        errors=errors,
        kinds=Kind.choices,
        history_start=start,
        retention_days=settings.MESHBOARD_HISTORY_DAYS,
        max_versions=settings.MESHBOARD_HISTORY_MAX_VERSIONS,
        **ctx.freshness(),
    )
    return render_page(request, "history/timeline.html", "timeline", context)


@require_GET
@login_required
def mesh(request: HttpRequest) -> HttpResponse:
    """Every change to the mesh's configuration; `?kind=TrafficTarget` keeps one kind."""
    require_viewer(request)
    ctx = page_context(request)
    kind = request.GET.get("kind", "")
    if kind not in Kind.values:
        kind = ""
    versions = services.timeline(ctx.cluster, kind=kind) if ctx.cluster is not None else None
    return _render(request, ctx, versions, scope="mesh", kind=kind, title="Configuration history")


@require_GET
@login_required
def one_object(request: HttpRequest, kind: str, namespace: str, name: str) -> HttpResponse:
    """One object's versions: /history/split/<ns>/<name>/, /history/traffictarget/<ns>/<name>/ ..."""
    require_viewer(request)
    if kind not in SLUGS:
        raise Http404("no history of that kind")
    require_namespace(request, namespace)
    ctx = page_context(request)
    kind = SLUGS[kind]
    versions, tracked = None, None
    if ctx.cluster is not None:
        versions = services.timeline(ctx.cluster, kind=kind, namespace=namespace, name=name)
        tracked = Tracked.objects.filter(cluster=ctx.cluster, kind=kind, namespace=namespace, name=name).first()
    return _render(
        request,
        ctx,
        versions,
        scope="object",
        kind=kind,
        namespace=namespace,
        name=name,
        tracked=tracked,
        title=f"History of {kind} {namespace}/{name}",
    )


@require_GET
@login_required
def service(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """The versions of the TrafficSplits naming a Service (as root or backend) and of the TrafficTargets naming the
    service accounts of its pods."""
    require_viewer(request)
    require_namespace(request, namespace)
    ctx = page_context(request)
    versions, accounts = None, []
    if ctx.cluster is not None:
        accounts = services.service_accounts(ctx.cluster, namespace, name)
        tokens = [f"svc:{namespace}/{name}"] + [f"sa:{namespace}/{a}" for a in accounts]
        versions = services.timeline(ctx.cluster, mentioning=tokens)
    return _render(
        request,
        ctx,
        versions,
        scope="service",
        namespace=namespace,
        name=name,
        accounts=accounts,
        title=f"History of what names Service {namespace}/{name}",
    )
