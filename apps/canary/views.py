from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.clusters.models import Cluster
from apps.clusters.picker import page_context
from apps.clusters.roles import can_change_weights, require_viewer
from apps.core.pages import render_page
from apps.mesh.models import Service, TrafficSplit
from apps.metrics.models import ServiceKPI, SplitShare

from .forms import WeightsForm
from .models import WeightChange
from .services import change_weights
from .splits import split_views
from .weights import PRESETS, apply_preset, percentages, yaml_diff


def split_for(request: HttpRequest, cluster: Cluster | None, namespace: str, name: str) -> TrafficSplit:
    """The one way views fetch a TrafficSplit: the viewer permission first, then the snapshot row (or 404)."""
    require_viewer(request)
    split = TrafficSplit.objects.filter(cluster=cluster, namespace=namespace, name=name).first() if cluster else None
    if split is None:
        raise Http404("No such TrafficSplit in the latest snapshot of this cluster.")
    return split


@require_GET
@login_required
def splits(request: HttpRequest) -> HttpResponse:
    require_viewer(request)
    ctx = page_context(request)
    context = {
        "page_ctx": ctx,
        "splits": split_views(ctx.cluster) if ctx.cluster else [],
        **ctx.freshness(),
    }
    return render_page(request, "canary/splits.html", "splits", context)


def _observed(split: TrafficSplit) -> dict[str, dict[str, object]]:
    """Per backend: observed share (short window), success rate and p99, to decide with."""
    shares = {
        s.backend: s.share_short
        for s in SplitShare.objects.filter(cluster=split.cluster, namespace=split.namespace, split=split.name)
    }
    kpis = {
        k.service: k
        for k in ServiceKPI.objects.filter(
            cluster=split.cluster, namespace=split.namespace, service__in=[b.get("service") for b in split.backends]
        )
    }
    return {
        name: {
            "observed_short": shares[name] * 100 if shares.get(name) is not None else None,
            "success_rate": kpis[name].success_rate if name in kpis else None,
            "p99_ms": kpis[name].p99_ms if name in kpis else None,
        }
        for name in {*shares, *kpis}
    }


def _backend_candidates(split: TrafficSplit, form: WeightsForm) -> list[str]:
    """Services of the split's namespace that carry the root's port and are not backends yet."""
    services = list(Service.objects.filter(cluster=split.cluster, namespace=split.namespace))
    root = next((s for s in services if s.name == split.root_service_name), None)
    current = {str(b.value()) for b, _ in form.row_fields()}
    return sorted(
        s.name for s in services if s.name not in current and s.name != split.root_service_name and not s.port_gap(root)
    )


def _editor_context(request: HttpRequest, split: TrafficSplit, form: WeightsForm, **extra: object) -> dict:
    observed = _observed(split)
    return {
        "candidates": _backend_candidates(split, form),
        "page_ctx": page_context(request),
        "split": split,
        "form": form,
        "observed": observed,
        "presets": PRESETS,
        "can_edit": can_change_weights(request.user),
        **extra,
    }


@require_http_methods(["GET", "POST"])
@login_required
def edit(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    ctx = page_context(request)
    split = split_for(request, ctx.cluster, namespace, name)
    if request.method == "GET":
        return render_page(request, "canary/edit.html", "editor", _editor_context(request, split, WeightsForm(split)))
    if not can_change_weights(request.user):
        raise PermissionDenied("Only operators may change TrafficSplit weights.")
    preset = request.POST.get("preset")
    form = WeightsForm(split, request.POST)
    if request.POST.get("action") == "add" and request.POST.get("add_backend"):
        # A new backend joins with weight 0, as in OSM's demo before traffic moves; validated when previewed.
        data = request.POST.copy()
        data[f"backend_{form.rows}"] = request.POST["add_backend"]
        data[f"weight_{form.rows}"] = "0"
        form = WeightsForm(split, data)
        form.errors.clear()
        return render_page(request, "canary/edit.html", "editor", _editor_context(request, split, form))
    if preset in PRESETS:
        weights = [w or 0 for w in form.submitted_weights()]
        data = request.POST.copy()
        for i, weight in enumerate(apply_preset(preset, weights)):
            data[f"weight_{i}"] = str(weight)
        form = WeightsForm(split, data)
        form.errors.clear()  # a preset only fills the form; nothing is judged until preview or apply
        return render_page(request, "canary/edit.html", "editor", _editor_context(request, split, form))
    if not form.is_valid():
        return render_page(request, "canary/edit.html", "editor", _editor_context(request, split, form))
    change = form.change()
    if request.POST.get("action") != "apply":
        diff = yaml_diff(split.backends, change.as_spec(), f"{split.namespace}/{split.name}")
        return render_page(request, "canary/edit.html", "editor", _editor_context(request, split, form, diff=diff))
    outcome = change_weights(split.cluster, request.user, change)
    if outcome.applied:
        messages.success(
            request,
            f"Applied to {split.namespace}/{split.name}: "
            + ", ".join(
                f"{b.service} {b.weight} ({p:.0f}%)"
                for b, p in zip(change.backends, percentages([b.weight for b in change.backends]), strict=True)
            ),
        )
        response = redirect(f"{reverse('canary:splits')}#split-{split.namespace}-{split.name}")
        if getattr(request, "htmx", None):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = f"{reverse('canary:splits')}#split-{split.namespace}-{split.name}"
        return response
    # Re-read the row the service may have refreshed; a split deleted meanwhile is shown as it was, with the reason.
    split = TrafficSplit.objects.filter(pk=split.pk).first() or split
    if outcome.record.result == WeightChange.Result.CONFLICT and outcome.live_resource_version:
        # Re-offer the user's weights against the split as it is now; applying again is a decision they now see.
        data = request.POST.copy()
        data["resource_version"] = outcome.live_resource_version
        form = WeightsForm(split, data)
        form.is_valid()
    return render_page(request, "canary/edit.html", "editor", _editor_context(request, split, form, outcome=outcome))


@require_GET
@login_required
def audit(request: HttpRequest) -> HttpResponse:
    require_viewer(request)
    ctx = page_context(request)
    changes = WeightChange.objects.filter(cluster=ctx.cluster).select_related("rollback_of")
    filters = {key: request.GET.get(key, "").strip()[:253] for key in ("split", "user", "result")}
    if filters["split"]:
        namespace, _, name = filters["split"].partition("/")
        changes = changes.filter(namespace=namespace, split=name) if name else changes.filter(split=namespace)
    if filters["user"]:
        changes = changes.filter(username=filters["user"])
    if filters["result"] in WeightChange.Result.values:
        changes = changes.filter(result=filters["result"])
    page = Paginator(changes, 50).get_page(request.GET.get("page"))
    context = {
        "page_ctx": ctx,
        "page": page,
        "filters": filters,
        "results": WeightChange.Result.choices,
        "can_edit": can_change_weights(request.user),
    }
    return render_page(request, "canary/audit.html", "changes", context)


@require_POST
@login_required
def rollback(request: HttpRequest, pk: int) -> HttpResponse:
    """Put back the weights a recorded change found, through the same form validation and concurrency check."""
    require_viewer(request)
    if not can_change_weights(request.user):
        raise PermissionDenied("Only operators may change TrafficSplit weights.")
    ctx = page_context(request)
    record = get_object_or_404(WeightChange, pk=pk, cluster=ctx.cluster)
    split = split_for(request, ctx.cluster, record.namespace, record.split)
    data = {"resource_version": split.resource_version, "action": "apply"}
    for i, backend in enumerate(record.weights_before):
        data[f"backend_{i}"] = str(backend.get("service", ""))
        data[f"weight_{i}"] = str(backend.get("weight", ""))
    if request.POST.get("confirm_flagger"):
        data["confirm_flagger"] = "on"
    form = WeightsForm(split, data)
    if not form.is_valid():
        # E.g. Flagger needs a confirmation, or a backend is gone: show the form, filled in, to finish by hand.
        return render_page(
            request, "canary/edit.html", "editor", _editor_context(request, split, form, rollback=record)
        )
    outcome = change_weights(split.cluster, request.user, form.change(), rollback_of=record)
    level = messages.SUCCESS if outcome.applied else messages.ERROR
    messages.add_message(
        request,
        level,
        f"Rollback of {split.namespace}/{split.name}: {outcome.record.get_result_display()}. "
        f"{outcome.record.reason}".strip(),
    )
    return redirect(reverse("canary:audit"))
