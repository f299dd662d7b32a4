from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from apps.clusters.picker import page_context
from apps.clusters.roles import require_viewer
from apps.core.csv_export import csv_response, page_csv, wants_csv
from apps.core.pages import render_page
from apps.history import services as history

from . import istio_access, smi_access
from .checks import findings_for, run_checks
from .meshinfo import cluster_statuses


@require_GET
@login_required
def policies(request: HttpRequest) -> HttpResponse:
    """Policy mode, the access matrix, observed denials, TrafficTarget checks and "can A talk to B?"; with
    `?as_of=<ISO 8601 time or unix seconds>`, the mode, matrix and verdict of the configuration at that time (from
    the configuration history), or, for a time the history cannot show, why, above the present view."""
    require_viewer(request)
    ctx = page_context(request)
    cluster = ctx.cluster
    source, destination = request.GET.get("from", "").strip(), request.GET.get("to", "").strip()
    as_of_text = request.GET.get("as_of", "").strip()
    context: dict = {"page_ctx": ctx, "source": source, "destination": destination, "as_of_text": as_of_text}
    if cluster is not None:
        as_of, as_of_error = None, ""
        if as_of_text:
            try:
                as_of = history.as_of_time(cluster, as_of_text)
            except history.NotInHistory as exc:
                as_of_error = f"Cannot show the access policy as of {as_of_text[:64]!r}: {exc}. Showing the present."
        policy = smi_access.load_policy_as_of(cluster, as_of) if as_of else smi_access.load_policy(cluster)
        # An Istio mesh is judged by its live AuthorizationPolicies (the history keeps no Istio objects: no past).
        istio = istio_access.current_policy(cluster) if as_of is None else None
        istio = istio if isinstance(istio, istio_access.IstioAccess) else None
        verdict, error = None, ""
        if source and destination:
            try:
                if istio is not None:
                    verdict = istio_access.can_talk(cluster, source, destination, istio)
                else:
                    verdict = smi_access.can_talk(cluster, source, destination, policy)
            except smi_access.UnknownEndpoint as exc:
                error = str(exc)
        # The checks and the refusals describe the present: a past view leaves them out.
        findings = run_checks(cluster, ["access"]) if as_of is None else []
        context.update(
            as_of=as_of,
            as_of_error=as_of_error,
            istio=istio,
            policy=policy,
            matrix=smi_access.access_matrix(policy),
            denials=smi_access.denied_traffic(cluster, policy) if as_of is None else None,
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
    response = render_page(request, "policies/policies.html", partial, context)
    if wants_csv(request):
        return page_csv(response, "matrix", f"{cluster.name if cluster else 'meshboard'}-access-matrix.csv")
    return response


@require_GET
@login_required
def mesh(request: HttpRequest) -> HttpResponse:
    """Every cluster with how fresh its snapshot is, its mesh's configuration and the checks; refreshes itself."""
    require_viewer(request)
    statuses = cluster_statuses()
    if wants_csv(request):
        return csv_response(check_rows(statuses), "meshboard-checks.csv")
    return render_page(request, "policies/mesh.html", "clusters", {"statuses": statuses})


CHECK_COLUMNS = ["Cluster", "Severity", "Code", "Check", "Finding", "Fix"]


def check_rows(statuses: list) -> list[list[str]]:
    """The Mesh page's checks, one row per finding as the page lists them (severity, code, title, message, fix)."""
    rows = [CHECK_COLUMNS]
    for s in statuses:
        for f in s.report.findings if s.report else []:
            rows.append([s.cluster.name, f.severity, f.code, f.title, f.message, f.fix])
    return rows
