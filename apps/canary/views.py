from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.clusters.models import Cluster
from apps.clusters.picker import page_context
from apps.clusters.roles import (
    OPERATOR,
    RoleRequired,
    can_change_weights,
    require_viewer,
    weights_refusal,
    writable_namespaces,
)
from apps.clusters.scope import unscoped
from apps.core.csv_export import page_csv, wants_csv
from apps.core.pages import render_page
from apps.mesh.models import Canary, TrafficSplit

from . import compare as comparison
from .editor import editor_facts
from .flagger import canary_view, preflight
from .forms import MAX_BACKENDS, WeightsForm
from .markers import FLAGGER_MANAGER, split_markers, weight_steps
from .models import WeightChange
from .services import READ_BACK_SECONDS, ChangeOutcome, change_weights, record_refusal
from .splits import istio_split_views, split_views
from .weights import PRESETS, apply_preset, percentages, preset_problem, yaml_diff

log = logging.getLogger(__name__)

MANUAL_CHANGES_SHOWN = timedelta(days=7)  # how far back the Canary page lists changes not made by Flagger


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
    views = split_views(ctx.cluster) if ctx.cluster else []
    context = {
        "page_ctx": ctx,
        "splits": views,
        "istio_splits": istio_split_views(ctx.cluster) if ctx.cluster else [],
        # "Edit weights" on the splits of the namespaces where this user may change them, "View weights" elsewhere.
        "writable": set(writable_namespaces(request.user, sorted({v.split.namespace for v in views}))),
        **ctx.freshness(),
    }
    response = render_page(request, "canary/splits.html", "splits", context)
    if wants_csv(request):
        return page_csv(response, "splits", f"{ctx.cluster.name if ctx.cluster else 'meshboard'}-splits.csv")
    return response


def _editor(request: HttpRequest, split: TrafficSplit, form: WeightsForm, **extra: object) -> HttpResponse:
    names = [str(b.value()) for b, _ in form.row_fields()]
    canary, weights = form.canary_index(), form.posted_weights()
    context = {
        "page_ctx": page_context(request),
        "split": split,
        "form": form,
        "facts": editor_facts(split, names),
        "presets": [(key, label, preset_problem(key, weights, canary)) for key, label in PRESETS.items()],
        "can_edit": can_change_weights(request.user, split.namespace),
        "read_only_reason": "" if can_change_weights(request.user) else "your role is viewer",
        "kube_timeout": round(settings.MESHBOARD_KUBE_READ_TIMEOUT + READ_BACK_SECONDS),
        **extra,
    }
    return render_page(request, "canary/edit.html", "editor", context)


def _refuse(request: HttpRequest, split: TrafficSplit, result: str, reason: str, weights: list[dict]) -> WeightChange:
    return record_refusal(split.cluster, request.user, split, result, reason, weights)


def _require_operator(request: HttpRequest, cluster: Cluster | None, namespace: str, name: str, posted: dict) -> None:
    """Refuse a write by a user without the operator role, or by an operator of other namespaces, and audit it (who,
    what) when the split exists, also in a namespace hidden from the user: the audit is for those who see it."""
    if can_change_weights(request.user, namespace):
        return
    split = None
    if cluster is not None:
        with unscoped():
            split = TrafficSplit.objects.filter(cluster=cluster, namespace=namespace, name=name).first()
    reason = weights_refusal(request.user, namespace)
    if split is not None:
        weights = WeightsForm(split, posted).posted_backends()
        _refuse(request, split, WeightChange.Result.FORBIDDEN, reason, weights)
    raise RoleRequired(reason, role=OPERATOR)


def _log_anonymous_posts(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous writes are refused (the login redirect) and logged, never stored: there is no one to name."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method == "POST" and not request.user.is_authenticated:
            log.warning("anonymous POST to %s from %s refused", request.path, request.META.get("REMOTE_ADDR", "?"))
        return view(request, *args, **kwargs)

    return wrapper


def _form_errors(form: WeightsForm) -> str:
    return "; ".join(
        f"{'' if field == '__all__' else field + ': '}{' '.join(errors)}" for field, errors in form.errors.items()
    )


def _rebuilt(split: TrafficSplit, form: WeightsForm, backends: list[dict]) -> WeightsForm:
    """An unbound form showing `backends`, keeping what the operator had: the resourceVersion and the canary mark."""
    return WeightsForm(
        split,
        backends=backends,
        resource_version=str(form.data.get("resource_version", "")),
        canary_backend=str(form.data.get("canary_backend", "")),
    )


@require_http_methods(["GET", "POST"])
@_log_anonymous_posts
@login_required
def edit(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """GET: the form. POST: `preset`, `add`, `remove_<i>` and `mark` (the canary) refill the form; `preview`
    validates and shows the diff; `apply` validates and writes. Only `apply` is an attempt to write: it leaves one
    audit record whatever comes of it (refused by the form included). Filling the form and previews send nothing
    and leave none. Any POST by a signed-in user who may not change weights is refused and recorded as forbidden."""
    ctx = page_context(request)
    if request.method == "POST":
        _require_operator(request, ctx.cluster, namespace, name, request.POST)
    split = split_for(request, ctx.cluster, namespace, name)
    if request.method == "GET":
        return _editor(request, split, WeightsForm(split))
    form = WeightsForm(split, request.POST)
    action = request.POST.get("action", "preview")
    if preset := request.POST.get("preset"):
        weights = apply_preset(preset, form.posted_weights(), form.canary_index())
        backends = [
            {"service": b["service"], "weight": w} for b, w in zip(form.posted_backends(), weights, strict=True)
        ]
        return _editor(request, split, _rebuilt(split, form, backends))
    if action == "add" and request.POST.get("add_backend"):
        # A new backend joins with weight 0, as in OSM's demo before traffic moves; validated when previewed.
        backends = form.posted_backends()
        if len(backends) >= MAX_BACKENDS:
            rebuilt = _rebuilt(split, form, backends)
            rebuilt.add_backend_error = f"A split edited here has at most {MAX_BACKENDS} backends."
            return _editor(request, split, rebuilt)
        backends.append({"service": request.POST["add_backend"][:253], "weight": 0})
        return _editor(request, split, _rebuilt(split, form, backends))
    if action == "mark":  # the operator marked another backend as the canary: the presets follow
        return _editor(request, split, _rebuilt(split, form, form.posted_backends()))
    if action.startswith("remove_"):
        return _remove(request, split, form, action.removeprefix("remove_"))
    if not form.is_valid():
        if action == "apply":
            _refuse(request, split, WeightChange.Result.INVALID, _form_errors(form), form.posted_backends())
        return _editor(request, split, form)
    change = form.change()
    if action != "apply":
        diff = yaml_diff(split.backends, change.as_spec(), f"{split.namespace}/{split.name}")
        return _editor(request, split, form, diff=diff)
    return _applied_or_explained(request, split, form, change_weights(split.cluster, request.user, change))


def _remove(request: HttpRequest, split: TrafficSplit, form: WeightsForm, index: str) -> HttpResponse:
    """Take a backend out of the form: only once its weight is 0 in the form and in the cluster's split (as last
    read), so traffic has left it before it goes. Applying then writes the split without it, at the form's
    resourceVersion: a split changed since is a conflict, not a backend removed under traffic."""
    backends = form.posted_backends()
    i = int(index) if index.isdigit() else -1
    if not 0 <= i < len(backends):
        return _editor(request, split, _rebuilt(split, form, backends))
    name = backends[i]["service"]
    live = [b.get("weight") for b in split.backends or [] if isinstance(b, dict) and b.get("service") == name]
    why = ""
    if str(backends[i]["weight"]) != "0":
        why = "Set its weight to 0 and apply first, so no traffic is lost, then remove it."
    elif held := [w for w in live if w != 0]:
        why = (
            f"It still has weight {held[0]} in the cluster: apply its weight 0 first, so no traffic is lost, "
            "then remove it."
        )
    if why:
        rebuilt = _rebuilt(split, form, backends)
        rebuilt.removal_error = (i, why)
        return _editor(request, split, rebuilt)
    return _editor(request, split, _rebuilt(split, form, backends[:i] + backends[i + 1 :]))


def _applied_or_explained(
    request: HttpRequest, split: TrafficSplit, form: WeightsForm, outcome: ChangeOutcome
) -> HttpResponse:
    change = outcome.record
    if outcome.applied:
        weights = [b["weight"] for b in change.weights_after]
        messages.success(
            request,
            f"{change.get_result_display()} to {split.namespace}/{split.name}: "
            + ", ".join(
                f"{b['service']} {b['weight']} ({p:.0f}%)"
                for b, p in zip(change.weights_after, percentages(weights), strict=True)
            ),
        )
        target = f"{reverse('canary:splits')}#split-{split.namespace}-{split.name}"
        response = redirect(target)
        if getattr(request, "htmx", None):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = target
        return response
    # Re-read the row the service may have refreshed; a split deleted meanwhile is shown as it was, with the reason.
    split = TrafficSplit.objects.filter(pk=split.pk).first() or split
    if change.result == WeightChange.Result.CONFLICT and outcome.live_resource_version:
        # Re-offer the user's weights against the split as it is now; applying again is a decision they now see.
        data = request.POST.copy()
        data["resource_version"] = outcome.live_resource_version
        form = WeightsForm(split, data)
        form.is_valid()
    return _editor(request, split, form, outcome=outcome)


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
    export = wants_csv(request)
    page = Paginator(changes, max(changes.count(), 1) if export else 50).get_page(request.GET.get("page"))
    context = {
        "page_ctx": ctx,
        "page": page,
        "filters": filters,
        "results": WeightChange.Result.choices,
        # Rollback is offered on the rows of the namespaces where this user may change weights.
        "writable": set(writable_namespaces(request.user, sorted({c.namespace for c in page}))),
    }
    response = render_page(request, "canary/audit.html", "changes", context)
    if export:
        return page_csv(response, "audit", f"{ctx.cluster.name if ctx.cluster else 'meshboard'}-weight-changes.csv")
    return response


@require_http_methods(["GET", "POST"])
@_log_anonymous_posts
@login_required
def rollback(request: HttpRequest, pk: int) -> HttpResponse:
    """Put back the weights a recorded change found: GET shows the change (from -> to) and asks for confirmation;
    POST writes it through the same form validation and concurrency check, then lands on the splits page."""
    if request.method == "GET":
        require_viewer(request)
    ctx = page_context(request)
    record = get_object_or_404(WeightChange, pk=pk, cluster=ctx.cluster)
    if request.method == "POST":
        posted = {f"backend_{i}": b.get("service", "") for i, b in enumerate(record.weights_before)}
        posted.update({f"weight_{i}": b.get("weight", "") for i, b in enumerate(record.weights_before)})
        _require_operator(request, ctx.cluster, record.namespace, record.split, posted)
    split = split_for(request, ctx.cluster, record.namespace, record.split)
    if not record.changed_cluster:
        raise Http404("Only a change that was applied can be rolled back.")
    data = {"resource_version": split.resource_version, "action": "apply"}
    for i, backend in enumerate(record.weights_before):
        data[f"backend_{i}"] = str(backend.get("service", ""))
        data[f"weight_{i}"] = str(backend.get("weight", ""))
    for confirmation in ("confirm_flagger", "confirm_gitops"):
        if request.POST.get(confirmation):
            data[confirmation] = "on"
    form = WeightsForm(split, data)
    if not can_change_weights(request.user, split.namespace):
        raise RoleRequired(weights_refusal(request.user, split.namespace), role=OPERATOR)
    if request.method == "GET" or not form.is_valid():
        # The confirmation (with the diff), or the reason it cannot be applied as it is (Flagger needs a
        # confirmation, a backend is gone): the form is filled in, to finish by hand.
        form.is_valid()
        diff = yaml_diff(split.backends, record.weights_before, f"{split.namespace}/{split.name}")
        if request.method == "POST":
            _refuse(request, split, WeightChange.Result.INVALID, _form_errors(form), record.weights_before)
        return _editor(request, split, form, rollback=record, diff=diff)
    outcome = change_weights(split.cluster, request.user, form.change(), rollback_of=record)
    return _applied_or_explained(request, split, form, outcome)


@require_GET
@login_required
def compare(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """Every backend of a split over one window (`?window=`), with verdicts against `?baseline=`."""
    ctx = page_context(request, own_window=True)
    split = split_for(request, ctx.cluster, namespace, name)
    window, window_note = comparison.pick_window(request.GET.get("window", ""))
    until, until_note = comparison.pick_until(request.GET.get("until", ""))
    result = comparison.compare(split, window, request.GET.get("baseline", "")[:253], at=until)
    context = {
        "page_ctx": ctx,
        "split": split,
        "comparison": result,
        "window_note": "; ".join(n for n in (window_note, until_note) if n),
        "windows": comparison.WINDOWS,
        **ctx.freshness(),
    }
    return render_page(request, "canary/compare.html", "compare", context)


@require_GET
@login_required
def compare_series(request: HttpRequest, namespace: str, name: str) -> JsonResponse:
    """Chart data of every backend over the window, on one time axis, the weight changes in it and the weight
    steps."""
    from apps.core.windows import WINDOWS
    from apps.metrics.ranges import service_series

    ctx = page_context(request, own_window=True)
    split = split_for(request, ctx.cluster, namespace, name)
    window, _ = comparison.pick_window(request.GET.get("window", ""))
    chart_window = window if window in WINDOWS else "15m"  # charts never span less than 15 minutes
    backends = {
        b: service_series(ctx.cluster, split.namespace, b, chart_window) for b in dict.fromkeys(split.backend_services)
    }
    start = datetime.fromtimestamp(min((d["start"] for d in backends.values()), default=time.time()), UTC)
    # Up to now, not to the charts' last point: that is floored to their step, and a change made since would be lost.
    end = datetime.now(UTC)
    baseline = request.GET.get("baseline", "")[:253]
    baseline = baseline if baseline in backends else comparison.default_baseline(split)
    return JsonResponse(
        {
            "window": chart_window,
            "backends": backends,
            "markers": comparison.markers(split, start, end),
            # Each backend's share of the weight over the window, drawn as steps for every backend but the baseline.
            "steps": {"points": weight_steps(split, start, end), "show": [b for b in backends if b != baseline]},
        }
    )


@require_GET
@login_required
def canary(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """One Flagger Canary, read-only (Flagger owns the weights): its status, its analysis settings and weight steps,
    a pre-flight of its metric checks against Prometheus now, and the manual changes of the split it drives."""
    require_viewer(request)
    ctx = page_context(request)
    found = Canary.objects.filter(cluster=ctx.cluster, namespace=namespace, name=name).first() if ctx.cluster else None
    if found is None:
        raise Http404("No such Flagger Canary in the latest snapshot of this cluster.")
    view = canary_view(found)
    manual = []
    for split in view.splits:
        since = datetime.now(UTC) - MANUAL_CHANGES_SHOWN
        manual += [
            (split, m)
            for m in split_markers(split.cluster, split.namespace, split.name, since, split=split)
            if m["manager"] != FLAGGER_MANAGER
        ]
    context = {
        "page_ctx": ctx,
        "v": view,
        "checks": preflight(found),
        "manual": sorted(manual, key=lambda pair: -pair[1]["at"]),
        "manual_days": MANUAL_CHANGES_SHOWN.days,
        **ctx.freshness(),
    }
    return render_page(request, "canary/canary.html", "preflight", context)
