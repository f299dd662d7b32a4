"""The Canary page: a Flagger Canary put into the stand-in with a MetricTemplate, collected, and its checks evaluated
against a real Prometheus (backfilled with promtool); the query rendering and judging rules on their own."""

from __future__ import annotations

import html

import pytest

from apps.canary.flagger import (
    DURATION,
    NEEDS_WASM,
    SUCCESS_RATE,
    Analysis,
    MetricModel,
    TemplateProblem,
    bounds,
    judge,
    render,
)
from apps.mesh.services import collect_and_record
from tests.canary.flagger_objects import bookstore_openmetrics, canary, put_canary
from tests.helpers import HOSTILE, assert_shown_as_text

MODEL = MetricModel("podinfo", "test", "podinfo", "podinfo-svc", "podinfo", "podinfo", "1m", {"direction": "inbound"})


# ---------------------------------------------------------------------------------------------------------------
# Rendering and judging, as Flagger does


def test_it_renders_the_model_and_variables_and_collapses_whitespace_as_flagger_sends_it():
    query = render(
        'sum(rate(x{ns="{{ namespace }}", d="{{ variables.direction }}"}[{{interval}}]))\n  / {{ target }}', MODEL
    )
    assert query.query == 'sum(rate(x{ns="test", d="inbound"}[1m])) / podinfo'
    assert (
        render("{{ name }}-{{ service }}-{{ ingress }}-{{ route }}", MODEL).query
        == "podinfo-podinfo-svc-podinfo-podinfo"
    )
    assert render("a  {{- target -}}  b {{/* a comment */}}c", MODEL).query == "apodinfob c"


def test_a_missing_variable_renders_as_go_prints_it_and_is_said():
    rendered = render('x{d="{{ variables.nope }}"}', MODEL)
    assert rendered.query == 'x{d="<no value>"}'
    assert rendered.notes == ("variables.nope is not among the metric's templateVariables: Flagger renders <no value>",)


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{{ deployment }}", 'function "deployment" not defined'),
        ("{{ .Namespace }}", "not one Meshboard evaluates"),
        ('{{ if eq target "a" }}x{{ end }}', "not one Meshboard evaluates"),
        ("rate(x[{{ interval }]", "unclosed or stray"),
    ],
)
def test_what_flagger_refuses_or_meshboard_does_not_evaluate_is_refused_with_why(template, says):
    with pytest.raises(TemplateProblem, match=says.replace(".", r"\.").replace('"', '"')):
        render(template, MODEL)


def test_thresholds_are_judged_as_flagger_compares_them():
    # A threshold is a floor for the success rate and a ceiling for everything else; a range holds both ends.
    assert judge(SUCCESS_RATE, 99.0, bounds({"threshold": 99}, SUCCESS_RATE))
    assert not judge(SUCCESS_RATE, 98.9, bounds({"threshold": 99}, SUCCESS_RATE))
    assert judge("custom", 3.0, bounds({"threshold": 5}, "custom")) and not judge(
        "custom", 6, bounds({"threshold": 5}, "")
    )
    assert not judge("custom", 0.5, bounds({"thresholdRange": {"min": 1, "max": 2}}, ""))
    # Durations count in whole milliseconds: 500.9 ms is 500 ms, within "max 500".
    assert judge(DURATION, 500.9, bounds({"thresholdRange": {"max": 500}}, DURATION))
    assert bounds({"thresholdRange": {"min": 1, "max": 2.5}}, "").text() == "between 1 and 2.5"
    assert bounds({"threshold": 99}, SUCCESS_RATE).text("%") == "≥ 99 %"


def test_the_weight_steps_follow_step_weight_to_max_weight_or_step_weights():
    assert Analysis.of({"stepWeight": 10, "maxWeight": 50}).steps == [10, 20, 30, 40, 50]
    assert Analysis.of({"stepWeight": 30}).steps == [30, 60, 90, 100]  # maxWeight defaults to the total, 100
    assert Analysis.of({"stepWeights": [1, 5, 25, 80]}).steps == [1, 5, 25, 80]
    assert Analysis.of({"iterations": 10}).steps == []  # blue/green: no weight steps
    assert Analysis.of({}).threshold == 1 and Analysis.of({"threshold": 0}).threshold == 1


# ---------------------------------------------------------------------------------------------------------------
# The page, from the stand-in and a real Prometheus


@pytest.fixture
def flagger_cluster(bookstore, kubeapi, prometheus_factory):
    """The bookstore, with a Flagger Canary and a MetricTemplate in the stand-in, collected, and a real Prometheus
    holding Envoy's stats (no WASM stats)."""
    put_canary(kubeapi)
    prometheus = prometheus_factory(bookstore_openmetrics(), name="flagger-envoy")
    bookstore.prometheus_url = prometheus.url
    bookstore.save()
    _run, error = collect_and_record(bookstore)
    assert error is None, error
    return bookstore


def _row(page: str, metric: str) -> str:
    """The pre-flight row of `metric`, its markup kept but its text unescaped."""
    start = page.index(f'data-metric="{html.escape(metric, quote=True)}"')
    return html.unescape(page[start : page.index("</tr>", start)])


def test_the_collection_keeps_the_canary_analysis_status_and_its_template(flagger_cluster):
    from apps.mesh.models import Canary, MetricTemplate

    row = Canary.objects.get(cluster=flagger_cluster, namespace="bookstore", name="bookstore")
    assert row.provider == "osm" and row.phase == "Progressing" and row.canary_weight == 20
    assert row.analysis["stepWeight"] == 10 and len(row.analysis["metrics"]) == 4
    assert row.status["failedChecks"] == 2 and "lastAppliedSpec" not in row.status
    template = MetricTemplate.objects.get(cluster=flagger_cluster, namespace="bookstore", name="envoy-success-rate")
    assert template.provider["type"] == "prometheus" and "{{ variables.backend }}" in template.query


def test_it_shows_the_status_and_a_preflight_computed_from_prometheus(client, viewer, flagger_cluster):
    client.force_login(viewer)
    page = client.get("/canaries/bookstore/bookstore/?cluster=lab").content.decode()

    # Status and analysis settings.
    assert 'data-field="phase">Progressing<' in page
    assert 'data-field="weight">20 %' in page and "next step 30 % if the checks pass" in page
    assert "2 of 5" in page and "Flagger rolls back after 3 more" in page
    assert "2026-11-30 17:26:45 UTC" in page  # the last transition
    assert "New revision detected, progressing canary analysis." in page  # the Promoted condition
    assert 'data-field="interval">30s<' in page and 'data-field="max-weight">50' in page
    assert "10 → 20 → 30 → 40 → 50 % of the traffic to the canary" in page
    assert 'href="/splits/bookstore/bookstore-split/"' in page  # the split it drives

    # The MetricTemplate's query, rendered with its variables, evaluated now: v2 answers 80 % of its requests.
    passing = _row(page, "v2 success rate")
    assert 'data-outcome="pass"' in passing and ">80.00<" in passing and "≥ 75" in passing
    assert "MetricTemplate bookstore/envoy-success-rate" in passing
    assert 'envoy_cluster_name="bookstore/bookstore-v2|14001"' in passing
    assert "Flagger asks http://osm-prometheus.osm-system.svc:7070" in passing
    # The same data against a threshold it cannot meet.
    failing = _row(page, "v2 success rate, strict")
    assert 'data-outcome="fail"' in failing and ">80.00<" in failing
    assert "is outside ≥ 99: Flagger counts a failed check" in failing
    # Flagger's built-in OSM checks read OSM's WASM stats, which this Prometheus does not have.
    for builtin in ("request-success-rate", "request-duration"):
        row = _row(page, builtin)
        assert 'data-outcome="no data"' in row and f'<strong>no data</strong>: <span class="reason">{NEEDS_WASM}' in row
    assert "osm_request_total" in _row(page, "request-success-rate")
    assert "osm_request_duration_ms_bucket" in _row(page, "request-duration")


def test_the_builtin_osm_checks_are_evaluated_where_the_wasm_stats_exist(
    client, viewer, bookstore, kubeapi, prometheus_factory
):
    put_canary(kubeapi)
    bookstore.prometheus_url = prometheus_factory(bookstore_openmetrics(wasm=True), name="flagger-wasm").url
    bookstore.save()
    collect_and_record(bookstore)
    client.force_login(viewer)
    page = client.get("/canaries/bookstore/bookstore/?cluster=lab").content.decode()

    success = _row(page, "request-success-rate")  # 9 of 10 requests/s are not 5xx, against "min 99"
    assert 'data-outcome="fail"' in success and ">90.00 %<" in success
    duration = _row(page, "request-duration")  # p99 in the (100, 250] ms bucket, against "max 500"
    assert 'data-outcome="pass"' in duration and ">220.00 ms<" in duration


def test_a_missing_template_or_no_prometheus_is_said_not_guessed(client, viewer, bookstore, kubeapi):
    metrics = [
        {"name": "gone", "templateRef": {"name": "nope", "namespace": "flagger-system"}, "threshold": 1},
        {"name": "request-success-rate", "threshold": 99},
        {"name": "latency", "query": "histogram_quantile(0.99, x)", "threshold": 5},
        {"name": "nothing", "threshold": 5},
    ]
    put_canary(kubeapi, canary(metrics))
    collect_and_record(bookstore)
    client.force_login(viewer)
    page = client.get("/canaries/bookstore/bookstore/?cluster=lab").content.decode()

    gone = _row(page, "gone")
    assert 'data-outcome="error"' in gone and "MetricTemplate flagger-system/nope is not in the latest snapshot" in gone
    for metric in ("request-success-rate", "latency"):
        row = _row(page, metric)
        assert 'data-outcome="error"' in row and "this cluster has no Prometheus URL" in row
    assert "no usable metrics template and query were configured" in _row(page, "nothing")


def test_the_splits_page_and_the_editor_link_to_it(client, viewer, flagger_cluster):
    client.force_login(viewer)
    splits = client.get("/splits/?cluster=lab").content.decode()
    assert 'href="/canaries/bookstore/bookstore/">Flagger Canary bookstore</a>' in splits
    editor = client.get("/splits/bookstore/bookstore-split/?cluster=lab").content.decode()
    assert 'href="/canaries/bookstore/bookstore/">bookstore</a>' in editor


def test_hostile_strings_in_the_canary_are_shown_as_text(client, viewer, bookstore, kubeapi):
    # The CRD holds spec.provider to an enum; names, queries, variables and the target's name are free strings.
    obj = canary([{"name": HOSTILE, "query": 'x{a="{{ variables.v }}"}', "templateVariables": {"v": HOSTILE}}])
    obj["spec"]["targetRef"]["name"] = HOSTILE
    put_canary(kubeapi, obj)
    collect_and_record(bookstore)
    client.force_login(viewer)
    response = client.get("/canaries/bookstore/bookstore/?cluster=lab")
    assert response.status_code == 200
    assert_shown_as_text(response.content.decode())


def test_an_unknown_canary_is_a_404(client, viewer, bookstore):
    client.force_login(viewer)
    assert client.get("/canaries/bookstore/nope/?cluster=lab").status_code == 404


def test_the_refresh_renders_the_preflight_alone(client, viewer, flagger_cluster):
    client.force_login(viewer)
    part = client.get("/canaries/bookstore/bookstore/?cluster=lab", HTTP_HX_REQUEST="true").content.decode()
    assert part.lstrip().startswith('<section id="preflight"') and "<h1>" not in part
    assert 'data-outcome="pass"' in _row(part, "v2 success rate")
