"""Flagger's canaries as the Canary page shows them: where the analysis stands, the settings it runs with, the weight
steps it will take, and a pre-flight of its metric checks evaluated against Prometheus now.

Flagger owns a driven split's weights, so nothing here writes: the page reads the collected Canary (and the
MetricTemplates it names) and asks Prometheus the queries Flagger would ask, rendered as Flagger renders them
(`render`), judged as Flagger judges them (`judge`), so a user knows before the next analysis whether it would pass.

What Flagger does, as read in fluxcd/flagger (pkg/controller/scheduler_metrics.go, pkg/metrics/observers/osm.go and
render.go, pkg/metrics/providers/prometheus.go, pkg/apis/flagger/v1beta1):
- A metric with `templateRef` runs its MetricTemplate's query; `request-success-rate` and `request-duration` without
  one are the mesh provider's built-in queries (for OSM: `osm_request_total` and `osm_request_duration_ms_bucket`,
  OSM's WASM stats); an inline `query` runs as written. Anything else halts the analysis.
- Queries are Go templates whose functions are the model's fields: `name`, `namespace` (the Canary's), `target`
  (its targetRef's name), `service`, `ingress`, `route` (their refs' names, else the target's), `interval` (the
  metric's; the built-in queries default to 1m) and `variables` (its templateVariables, as `variables.key`).
- Whitespace runs are collapsed before the query is sent; of several series the last one's value counts; no series
  is "no values found", which halts the step.
- A `thresholdRange` passes when min <= value <= max (either bound optional); without one, the success rate must be
  at least `threshold` and every other value at most `threshold`; durations are whole milliseconds.
- The analysis rolls back when `failedChecks` reaches `threshold` (default 1); the weight moves by `stepWeight` up
  to `maxWeight` (default 100) or through `stepWeights`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

from apps.clusters.models import Cluster
from apps.mesh.decode import k8s_time
from apps.mesh.models import Canary, MetricTemplate, TrafficSplit
from apps.metrics.prometheus import PrometheusError
from apps.metrics.ranges import PageDeadline
from apps.policies.checks import flagger_canaries

SUCCESS_RATE, DURATION = "request-success-rate", "request-duration"
BUILTIN = (SUCCESS_RATE, DURATION)
BUILTIN_INTERVAL = "1m"  # Canary.GetMetricInterval()
ANALYSIS_INTERVAL = "1m"  # Flagger's default analysis interval (60 s)
TOTAL_WEIGHT = 100
OSM_PROVIDERS = ("osm", "")  # "": the Canary names none, so Flagger's -mesh-provider decides (assumed OSM here)

# Flagger's OSM observer (pkg/metrics/observers/osm.go), kept as Flagger writes them: both read OSM's WASM stats.
OSM_QUERIES = {
    SUCCESS_RATE: """
    sum(
        rate(
            osm_request_total{
                destination_namespace="{{ namespace }}",
                destination_kind="Deployment",
                destination_name="{{ target }}",
                response_code!~"5.*"
            }[{{ interval }}]
        )
    )
    /
    sum(
        rate(
            osm_request_total{
                destination_namespace="{{ namespace }}",
                destination_kind="Deployment",
                destination_name="{{ target }}"
            }[{{ interval }}]
        )
    )
    * 100""",
    DURATION: """
    histogram_quantile(
        0.99,
        sum(
          rate(
            osm_request_duration_ms_bucket{
                destination_namespace="{{ namespace }}",
                destination_kind="Deployment",
                destination_name="{{ target }}"
            }[{{ interval }}]
          )
        ) by (le)
    )""",
}
OSM_WASM_METRIC = {SUCCESS_RATE: "osm_request_total", DURATION: "osm_request_duration_ms_bucket"}
NEEDS_WASM = "needs OSM's WASM stats (enableWASMStats)"  # shown after the outcome: "no data: needs ..."
# How far back the pre-flight looks for any series of a WASM metric before saying the feature is off.
PRESENCE_SECONDS = 3600

PASS, FAIL, NO_DATA, NOT_EVALUATED, ERROR = "pass", "fail", "no data", "not evaluated", "error"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def number_text(value: float) -> str:
    """A threshold or value as people write it: 99, 99.5, 0.25 (Go's %v drops a whole float's decimals too)."""
    return f"{value:.6g}" if value != int(value) else str(int(value))


# ---------------------------------------------------------------------------------------------------------------
# Rendering Flagger's query templates


class TemplateProblem(ValueError):
    """A query Flagger could not render (its error, in its words), or one Meshboard does not evaluate."""


@dataclass(frozen=True)
class MetricModel:
    """Flagger's MetricTemplateModel: what a query template may name."""

    name: str
    namespace: str
    target: str
    service: str
    ingress: str
    route: str
    interval: str
    variables: dict[str, str] = field(default_factory=dict)

    def function(self, identifier: str) -> str | None:
        if identifier in ("name", "namespace", "target", "service", "ingress", "route", "interval"):
            return getattr(self, identifier)
        return None


# One action: `{{ ... }}`, with Go's trim markers (`{{- ` and ` -}}` eat the whitespace beside them).
_ACTION = re.compile(r"(\s*)\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}(\s*)", re.S)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE = re.compile(r"variables\.([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Rendered:
    query: str  # as Flagger sends it: runs of whitespace collapsed to one space
    notes: tuple[str, ...] = ()  # what the user should know about the rendering (a variable with no value)


def render(template: str, model: MetricModel) -> Rendered:
    """The query `template` renders to with `model`, as Flagger's text/template does for the actions query
    templates use; raises TemplateProblem for what Flagger would refuse (an unknown function) and for actions
    Meshboard does not evaluate (pipelines, conditionals), rather than guessing their result."""
    notes: list[str] = []

    def action(match: re.Match[str]) -> str:
        before, trim_left, body, trim_right, after = match.groups()
        text = body.strip()
        if text.startswith("/*") and text.endswith("*/"):
            value = ""
        elif _IDENT.fullmatch(text):
            value = model.function(text)
            if value is None:
                raise TemplateProblem(f'template parsing failed: function "{text}" not defined')
        elif variable := _VARIABLE.fullmatch(text):
            key = variable.group(1)
            if key in model.variables:
                value = model.variables[key]
            else:
                # Go prints a missing map key as "<no value>", and Flagger sends the query so.
                value = "<no value>"
                notes.append(f"variables.{key} is not among the metric's templateVariables: Flagger renders <no value>")
        else:
            raise TemplateProblem(
                f"the template action {{{{ {text[:80]} }}}} is not one Meshboard evaluates (it renders only the "
                "model's fields and variables.<key>)"
            )
        return ("" if trim_left else before) + value + ("" if trim_right else after)

    rendered = _ACTION.sub(action, template)
    if "{{" in rendered or "}}" in rendered:
        raise TemplateProblem("template parsing failed: an unclosed or stray {{ or }}")
    return Rendered(" ".join(rendered.split()), tuple(dict.fromkeys(notes)))


# ---------------------------------------------------------------------------------------------------------------
# The Canary as the page reads it


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    last_transition: datetime | None
    last_update: datetime | None


@dataclass(frozen=True)
class Analysis:
    """spec.analysis (or the older spec.canaryAnalysis) as Flagger applies its defaults."""

    interval: str
    threshold: int  # failed checks before a rollback (default 1)
    max_weight: int
    step_weight: int | None
    step_weights: tuple[int, ...]
    iterations: int | None  # blue/green and A/B: a fixed number of checks instead of weight steps
    metrics: tuple[dict, ...]
    set_threshold: int | None  # as written (None: Flagger's default)
    set_max_weight: int | None

    @classmethod
    def of(cls, spec: dict) -> Analysis:
        step_weights = tuple(w for w in map(_int, _list(spec.get("stepWeights"))) if w is not None)
        threshold = _int(spec.get("threshold"))
        max_weight = _int(spec.get("maxWeight"))
        if step_weights:
            effective_max = min(TOTAL_WEIGHT, step_weights[-1])
        else:
            effective_max = max_weight if max_weight and max_weight > 0 else TOTAL_WEIGHT
        return cls(
            interval=_str(spec.get("interval")) or ANALYSIS_INTERVAL,
            threshold=threshold if threshold and threshold > 0 else 1,
            max_weight=effective_max,
            step_weight=_int(spec.get("stepWeight")),
            step_weights=step_weights,
            iterations=_int(spec.get("iterations")),
            metrics=tuple(m for m in _list(spec.get("metrics")) if isinstance(m, dict)),
            set_threshold=threshold,
            set_max_weight=max_weight,
        )

    @property
    def steps(self) -> list[int]:
        """The canary weights Flagger sets, step by step, while every check passes (then it promotes)."""
        if self.step_weights:
            return [w for w in self.step_weights if w <= self.max_weight] or [self.max_weight]
        if not self.step_weight or self.step_weight <= 0:
            return []
        steps, weight = [], 0
        while weight < self.max_weight and len(steps) < TOTAL_WEIGHT:
            weight = min(weight + self.step_weight, self.max_weight)
            steps.append(weight)
        return steps


@dataclass(frozen=True)
class CanaryView:
    canary: Canary
    analysis: Analysis
    failed_checks: int | None
    iterations: int | None
    last_transition: datetime | None
    conditions: tuple[Condition, ...]
    splits: tuple[TrafficSplit, ...]  # the TrafficSplits it drives (normally one, named after its apex)
    has_analysis: bool

    @property
    def apex(self) -> str:
        return _str(_dict(self.canary.service).get("name")) or _str(_dict(self.canary.target_ref).get("name"))

    @property
    def checks_left(self) -> int | None:
        """How many more failed checks Flagger tolerates before it rolls back."""
        if self.failed_checks is None:
            return None
        return max(0, self.analysis.threshold - self.failed_checks)

    @property
    def next_weight(self) -> int | None:
        """The canary weight of the next step if the checks pass, or None (no step left, or no weight steps)."""
        weight = self.canary.canary_weight or 0
        return next((w for w in self.analysis.steps if w > weight), None)


def canary_view(canary: Canary) -> CanaryView:
    status = _dict(canary.status)
    conditions = tuple(
        Condition(
            type=_str(c.get("type")),
            status=_str(c.get("status")),
            reason=_str(c.get("reason")),
            message=_str(c.get("message")),
            last_transition=k8s_time(_str(c.get("lastTransitionTime"))),
            last_update=k8s_time(_str(c.get("lastUpdateTime"))),
        )
        for c in map(_dict, _list(status.get("conditions")))
    )
    splits = tuple(
        s
        for s in TrafficSplit.objects.filter(cluster=canary.cluster, namespace=canary.namespace).order_by("name")
        if canary.name in flagger_canaries(s, [canary])
    )
    analysis = _dict(canary.analysis)
    return CanaryView(
        canary=canary,
        analysis=Analysis.of(analysis),
        failed_checks=_int(status.get("failedChecks")),
        iterations=_int(status.get("iterations")),
        last_transition=k8s_time(_str(status.get("lastTransitionTime"))),
        conditions=conditions,
        splits=splits,
        has_analysis=bool(analysis),
    )


# ---------------------------------------------------------------------------------------------------------------
# The pre-flight


@dataclass(frozen=True)
class Check:
    """One metric of the analysis, evaluated now."""

    name: str
    source: str  # where its query comes from, as a sentence fragment
    interval: str
    wants: str  # the threshold as a range a user reads: "≥ 99 %", "≤ 500 ms", "between 1 and 2"
    outcome: str  # PASS, FAIL, NO_DATA, NOT_EVALUATED or ERROR
    reason: str = ""  # why, for every outcome but a plain pass
    query: str = ""  # as sent to Prometheus ("" when it was not rendered)
    value: float | None = None
    unit: str = ""
    notes: tuple[str, ...] = ()

    @property
    def value_text(self) -> str:
        if self.value is None:
            return ""
        return f"{self.value:.2f}{(' ' + self.unit) if self.unit else ''}"

    @property
    def css(self) -> str:
        return self.outcome.replace(" ", "-")


@dataclass(frozen=True)
class Bounds:
    low: float | None
    high: float | None

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def text(self, unit: str = "") -> str:
        suffix = f" {unit}" if unit else ""
        if self.low is not None and self.high is not None:
            return f"between {number_text(self.low)} and {number_text(self.high)}{suffix}"
        if self.low is not None:
            return f"≥ {number_text(self.low)}{suffix}"
        if self.high is not None:
            return f"≤ {number_text(self.high)}{suffix}"
        return "any value"


def bounds(metric: dict, kind: str) -> Bounds:
    """The range a metric's value must fall in: its thresholdRange, else its threshold (a floor for the success
    rate, a ceiling for everything else, as Flagger compares them)."""
    if isinstance(metric.get("thresholdRange"), dict):
        tr = metric["thresholdRange"]
        return Bounds(_number(tr.get("min")), _number(tr.get("max")))
    threshold = _number(metric.get("threshold")) or 0.0
    return Bounds(threshold, None) if kind == SUCCESS_RATE else Bounds(None, threshold)


def judge(kind: str, value: float, limits: Bounds) -> bool:
    """Whether Flagger lets the step go on with this value; a duration counts in whole milliseconds."""
    return limits.holds(float(math.trunc(value)) if kind == DURATION else value)


def _model(canary: Canary, interval: str, variables: dict) -> MetricModel:
    target = _str(_dict(canary.target_ref).get("name"))
    return MetricModel(
        name=canary.name,
        namespace=canary.namespace,
        target=target,
        service=_str(_dict(canary.service).get("name")) or target,
        ingress=canary.ingress_ref or target,
        route=canary.route_ref or target,
        interval=interval,
        variables={str(k): str(v) for k, v in _dict(variables).items() if isinstance(v, str)},
    )


class _Asker:
    """The pre-flight's queries of one page request: one deadline for all (ranges.PageDeadline, the charts'),
    and once Prometheus times out or cannot be reached, no more asking."""

    def __init__(self, cluster: Cluster) -> None:
        self.deadline = PageDeadline(cluster)
        self.down = "" if cluster.prometheus_url else "this cluster has no Prometheus URL"
        self.down = self.down or self.deadline.held_back()

    def instant(self, query: str, what: str) -> tuple[list, str]:
        if self.down:
            return [], self.down
        try:
            return self.deadline.ask(lambda gateway: gateway.instant(query, what=what)), ""
        except PrometheusError as exc:
            reason = self.deadline.why(exc)
            if exc.status is None:  # timed out, unreachable or out of time: the next queries would fare no better
                self.down = reason
            return [], reason

    def has_series(self, metric: str) -> tuple[bool | None, str]:
        if self.down:
            return None, self.down
        end = time.time()
        try:
            names = self.deadline.ask(lambda gateway: gateway.label_names(end - PRESENCE_SECONDS, end, metric))
        except PrometheusError as exc:
            reason = self.deadline.why(exc)
            if exc.status is None:
                self.down = reason
            return None, reason
        return bool(names), ""


def _evaluate(asker: _Asker, check: Check, kind: str, limits: Bounds, wasm_metric: str = "") -> Check:
    samples, problem = asker.instant(check.query, f"pre-flight of {check.name}")
    if problem:
        return _with(check, outcome=ERROR, reason=f"Prometheus did not answer: {problem}")
    if not samples:
        if wasm_metric:
            present, why = asker.has_series(wasm_metric)
            if present is False:
                return _with(check, outcome=NO_DATA, reason=NEEDS_WASM)
            if present is None:
                return _with(
                    check, outcome=NO_DATA, reason=f"no values found; whether {wasm_metric} exists is unknown ({why})"
                )
        return _with(
            check,
            outcome=NO_DATA,
            reason="no values found: Flagger halts the step (the target probably receives no traffic in the interval)",
        )
    value = samples[-1].value  # Flagger keeps the value of the last series
    notes = check.notes
    if len(samples) > 1:
        notes += (f"the query returned {len(samples)} series; Flagger uses the last one's value",)
    if value is None:
        return _with(
            check,
            outcome=NO_DATA,
            reason="Prometheus answered NaN or an infinity (no requests in the interval?), no number to compare",
            notes=notes,
        )
    passed = judge(kind, value, limits)
    reason = "" if passed else f"{check.name} {value:.2f} is outside {check.wants}: Flagger counts a failed check"
    return _with(check, outcome=PASS if passed else FAIL, reason=reason, value=value, notes=notes)


def _with(check: Check, **changes: object) -> Check:
    return replace(check, **changes)


def _template_for(canary: Canary, ref: dict) -> tuple[MetricTemplate | None, str]:
    namespace = _str(ref.get("namespace")) or canary.namespace
    name = _str(ref.get("name"))
    template = MetricTemplate.objects.filter(cluster=canary.cluster, namespace=namespace, name=name).first()
    return template, f"{namespace}/{name}"


def preflight(canary: Canary) -> list[Check]:
    """Every metric of the Canary's analysis, evaluated against the cluster's Prometheus now, in order. Never
    raises for Prometheus trouble: each check says what it could not learn."""
    analysis = Analysis.of(_dict(canary.analysis))
    asker = _Asker(canary.cluster)
    provider = _str(canary.provider)
    checks = []
    for metric in analysis.metrics:
        name = _str(metric.get("name")) or "(unnamed)"
        ref = metric.get("templateRef")
        variables = _dict(metric.get("templateVariables"))
        if isinstance(ref, dict):
            checks.append(_template_check(asker, canary, metric, name, ref, variables))
        elif name in BUILTIN:
            checks.append(_builtin_check(asker, canary, metric, name, provider, variables))
        elif _str(metric.get("query")):
            checks.append(
                _query_check(asker, canary, metric, name, _str(metric["query"]), "an inline query", variables)
            )
        else:
            checks.append(
                Check(
                    name,
                    "nothing",
                    _str(metric.get("interval")),
                    bounds(metric, "").text(),
                    ERROR,
                    "no usable metrics template and query were configured: Flagger halts the analysis",
                )
            )
    return checks


def _builtin_check(asker: _Asker, canary: Canary, metric: dict, name: str, provider: str, variables: dict) -> Check:
    unit = "%" if name == SUCCESS_RATE else "ms"
    interval = _str(metric.get("interval")) or BUILTIN_INTERVAL
    limits = bounds(metric, name)
    source = "Flagger's built-in query for OSM"
    base = Check(name, source, interval, limits.text(unit), NOT_EVALUATED, unit=unit)
    if provider not in OSM_PROVIDERS:
        return _with(
            base,
            source=f"Flagger's built-in query for provider {provider}",
            reason=f"Meshboard knows only OSM's built-in queries, not those of provider {provider}",
        )
    rendered = render(OSM_QUERIES[name], _model(canary, interval, variables))
    notes = rendered.notes
    if not provider:
        notes += ("the Canary names no provider: assuming Flagger runs with -mesh-provider=osm",)
    if canary.metrics_server:
        notes += (f"Flagger asks {canary.metrics_server}; Meshboard asked the Prometheus configured for this cluster",)
    check = _with(base, query=rendered.query, notes=notes)
    return _evaluate(asker, check, name, limits, wasm_metric=OSM_WASM_METRIC[name])


def _template_check(asker: _Asker, canary: Canary, metric: dict, name: str, ref: dict, variables: dict) -> Check:
    template, where = _template_for(canary, ref)
    interval = _str(metric.get("interval"))
    limits = bounds(metric, "")
    base = Check(name, f"MetricTemplate {where}", interval, limits.text(), ERROR)
    if template is None:
        return _with(
            base,
            reason=f"MetricTemplate {where} is not in the latest snapshot: Flagger halts the analysis "
            "(metric template error); in namespace-scoped mode its namespace may not be watched",
        )
    provider = _dict(template.provider)
    kind = _str(provider.get("type")) or "prometheus"
    if kind != "prometheus":
        return _with(
            base,
            outcome=NOT_EVALUATED,
            reason=f"a {kind} metric: Meshboard asks only the cluster's Prometheus",
        )
    check = _query_check(asker, canary, metric, name, template.query, base.source, variables)
    address = _str(provider.get("address"))
    if address:
        note = f"Flagger asks {address}; Meshboard asked the Prometheus configured for this cluster"
        check = _with(check, notes=(*check.notes, note))
    return check


def _query_check(
    asker: _Asker, canary: Canary, metric: dict, name: str, template: str, source: str, variables: dict
) -> Check:
    interval = _str(metric.get("interval"))
    limits = bounds(metric, "")
    base = Check(name, source, interval, limits.text(), ERROR)
    try:
        rendered = render(template, _model(canary, interval, variables))
    except TemplateProblem as exc:
        return _with(base, reason=f"{exc}: Flagger halts the analysis (query render error)")
    notes = rendered.notes
    if not interval and "{{" in template and "interval" in template:
        notes += ("the metric sets no interval, so {{ interval }} renders empty, as in Flagger",)
    return _evaluate(asker, _with(base, query=rendered.query, notes=notes), "", limits)
