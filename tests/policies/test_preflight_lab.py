"""The metrics pre-flight against a real Prometheus with OSM's keep-list (the lab's "osm" mode): after real metrics
runs, the Mesh page names the series OSM's keep-list drops and what goes blank; the keep rule it advises, put into
that real Prometheus, keeps them all; and with Prometheus down the page says the pre-flight could not run and shows
the last check with its time. (Everything kept, the lab's "byo" mode: tests/metrics/test_preflight_lab.py.)
"""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime

import pytest
import yaml

from apps.metrics import preflight
from lab.mesh.pytest_plugin import LabStack
from lab.waiting import wait_for
from tests.metrics.test_preflight import OSM_SUMMARY, SERIES_OSM_DROPS

pytestmark = [pytest.mark.lab_mesh(prometheus_mode="osm", scrape_interval="1s"), pytest.mark.django_db]

ROW = re.compile(
    r'<tr class="(?P<status>[^"]+)" data-status="[^"]+">\s*<td><code>(?P<name>.*?)</code>.*?</td>\s*'
    r"<td>(?P<shown>.*?)</td>\s*<td>(?P<cost>.*?)</td>",
    re.DOTALL,
)


def lab_cluster(lab_stack: LabStack, name: str):
    """The lab as a Meshboard cluster, its objects collected, once its sidecars' request counters are in Prometheus."""
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record as collect_cluster

    cluster = Cluster.objects.create(
        name=name, kubeconfig_path=lab_stack.kubeconfig, prometheus_url=lab_stack.lab.prometheus_url
    )
    _run, error = collect_cluster(cluster)
    assert error is None, error
    wait_for(lambda: lab_stack.query('count(envoy_cluster_upstream_rq_xx{source_workload_name="bookbuyer"})'), 15)
    return cluster


def collect_metrics(cluster):
    from apps.metrics.services import collect_and_record

    return collect_and_record(cluster)


def mesh_page(client) -> str:
    return client.get("/mesh/").content.decode()


def preflight_rows(page: str) -> dict[str, tuple[str, str, str]]:
    """Each row of the pre-flight table: name → (status, what the page shows, what goes blank), as text."""
    table = page[page.index('<table class="preflight"') :]
    table = table[: table.index("</table>")]
    return {
        html_lib.unescape(m["name"]): (m["status"], html_lib.unescape(m["shown"]), html_lib.unescape(m["cost"]))
        for m in ROW.finditer(table)
    }


def test_it_names_the_series_osms_keep_list_drops_after_a_real_metrics_run(lab_stack, client, viewer):
    cluster = lab_cluster(lab_stack, "lab-osm")
    _run, error = collect_metrics(cluster)
    assert error is None, error
    client.force_login(viewer)

    page = mesh_page(client)

    text = html_lib.unescape(page)
    assert OSM_SUMMARY in text
    rows = preflight_rows(page)
    for name in SERIES_OSM_DROPS:
        assert rows[name][:2] == ("missing", "missing"), name
    assert rows["envoy_cluster_upstream_rq_time_bucket"][2].startswith(
        "The p50, p95 and p99 columns and the latency charts are blank"
    )
    assert "egress passthrough" in rows['envoy_cluster_upstream_cx_total{envoy_cluster_name="passthrough-outbound"}'][2]
    for kept in ("envoy_cluster_upstream_rq_xx", "envoy_cluster_upstream_cx_active", "source_workload_name"):
        assert rows[kept][:2] == ("present", "present"), kept
    # What to do about it: the keep rule to paste, for a plain Prometheus and for Azure Monitor's ConfigMap.
    assert "Missing series: envoy_cluster_upstream_rq_time_bucket, osm_request_duration_ms_bucket, " in text
    assert preflight.keep_regex() in text
    assert "name: ama-metrics-prometheus-config" in text and "prometheus-config: |" in text


def test_the_advised_keep_rule_keeps_every_series_on_the_real_prometheus(lab_stack, client, viewer):
    prometheus = lab_stack.lab.prometheus
    config = yaml.safe_load(prometheus.config_path.read_text())
    [job] = config["scrape_configs"]
    [advised] = yaml.safe_load(preflight.prometheus_config())["scrape_configs"]
    job["metric_relabel_configs"] = advised["metric_relabel_configs"]
    prometheus.write_config(config)
    needed = [n.pattern for n in preflight.NEEDS if n.kind == "series" and not n.alternative_of]
    wait_for(lambda: all(lab_stack.query(f'count({{__name__=~"{p}"}})') for p in needed), 20, 0.5)
    cluster = lab_cluster(lab_stack, "lab-advised")
    _run, error = collect_metrics(cluster)
    assert error is None, error
    client.force_login(viewer)

    page = mesh_page(client)

    text = html_lib.unescape(page)
    assert "Prometheus keeps all 16 series and all 6 labels Meshboard reads." in text
    assert "Keeping what is missing" not in text
    assert {status for status, _shown, _cost in preflight_rows(page).values()} == {"present", "not-needed"}


def test_with_prometheus_down_the_page_says_the_check_could_not_run_and_shows_the_last_one(lab_stack, client, viewer):
    from apps.metrics.models import MetricsState

    cluster = lab_cluster(lab_stack, "lab-down")
    run, error = collect_metrics(cluster)
    assert error is None, error
    checked = MetricsState.objects.get(cluster=cluster).preflight["checked_at"]
    lab_stack.lab.prometheus.stop()  # the last test of the module: the lab stops it again at the end, harmlessly
    run, error = collect_metrics(cluster)
    assert error is not None and run.status == "failed"
    client.force_login(viewer)

    response = client.get("/mesh/")

    assert response.status_code == 200
    text = html_lib.unescape(response.content.decode())
    part = text[text.index("Metrics pre-flight") :]
    when = datetime.fromtimestamp(checked, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert "The pre-flight could not run at " in part
    assert "Prometheus: cannot reach Prometheus. Check that it is running" in part
    assert f"Below is the last check, from {when}." in part
    assert f"Checked at {when}" in part and "Prometheus keeps " in part
