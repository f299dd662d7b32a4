from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps.clusters.picker import page_context
from apps.clusters.roles import require_viewer
from apps.core.pages import render_page

from . import smi_access
from .checks import findings_for, run_checks
from .meshinfo import cluster_statuses


@require_GET
@login_required
def policies(request: HttpRequest) -> HttpResponse:
    """Policy mode, the access matrix, observed denials, TrafficTarget checks and "can A talk to B?"."""
    require_viewer(request)
    ctx = page_context(request)
    cluster = ctx.cluster
    source, destination = request.GET.get("from", "").strip(), request.GET.get("to", "").strip()
    context: dict = {"page_ctx": ctx, "source": source, "destination": destination}
    if cluster is not None:
        policy = smi_access.load_policy(cluster)
        verdict, error = None, ""
        if source and destination:
            try:
                verdict = smi_access.can_talk(cluster, source, destination, policy)
            except smi_access.UnknownEndpoint as exc:
                error = str(exc)
        findings = run_checks(cluster, ["access"])
        context.update(
            policy=policy,
            matrix=smi_access.access_matrix(policy),
            denials=smi_access.denied_traffic(cluster, policy),
            targets=[(t, findings_for(findings, "TrafficTarget", t.namespace, t.name)) for t in policy.targets],
            findings=findings,
            verdict=verdict,
            verdict_error=error,
            choices=(choices := smi_access.endpoint_choices(cluster)),
            placeholders=smi_access.endpoint_placeholders(choices),
            **ctx.freshness(),
        )
    htmx = getattr(request, "htmx", None)
    partial = "verdict" if htmx and htmx.target == "verdict" else "policies"
    return render_page(request, "policies/policies.html", partial, context)


@require_GET
@login_required
def mesh(request: HttpRequest) -> HttpResponse:
    """Every cluster with how fresh its snapshot is, its mesh's configuration and the checks; refreshes itself."""
    require_viewer(request)
    return render_page(request, "policies/mesh.html", "clusters", {"statuses": cluster_statuses()})
