from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps.clusters.models import CollectionRun
from apps.clusters.status import freshness
from apps.core.pages import page_context, render_page
from apps.services.access import require_viewer

from . import access
from .checks import findings_for, run_checks


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
        policy = access.load_policy(cluster)
        verdict, error = None, ""
        if source and destination:
            try:
                verdict = access.can_talk(cluster, source, destination, policy)
            except access.UnknownEndpoint as exc:
                error = str(exc)
        findings = run_checks(cluster, ["access"])
        context.update(
            policy=policy,
            matrix=access.access_matrix(policy),
            denials=access.denied_traffic(cluster),
            targets=[(t, findings_for(findings, "TrafficTarget", t.namespace, t.name)) for t in policy.targets],
            findings=findings,
            verdict=verdict,
            verdict_error=error,
            choices=access.endpoint_choices(cluster),
            objects=freshness(cluster, CollectionRun.Kind.CLUSTER),
            metrics=freshness(cluster, CollectionRun.Kind.METRICS),
        )
    htmx = getattr(request, "htmx", None)
    partial = "verdict" if htmx and htmx.target == "verdict" else "policies"
    return render_page(request, "policies/policies.html", partial, context)
