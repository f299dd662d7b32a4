"""The Mesh page's metrics pre-flight without a Prometheus: not checked yet, a stored check, what it shows as text.

With real Prometheus servers (OSM's keep-list, everything kept, Prometheus down): test_preflight_lab.py here and
tests/metrics/test_preflight_lab.py.
"""

from __future__ import annotations

import html as html_lib

import pytest
from django.utils import timezone

from apps.clusters.models import Cluster
from apps.metrics import preflight
from apps.metrics.models import MetricsState
from apps.policies.meshinfo import preflight_of
from tests.helpers import HOSTILE, assert_shown_as_text
from tests.metrics.test_preflight import OSM_SUMMARY, RQ_XX_LABELS, SIDECAR_NAMES, osm_kept

AT = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def store(cluster: Cluster, report: dict) -> None:
    MetricsState.objects.update_or_create(
        cluster=cluster, defaults={"collected_at": timezone.now(), "preflight": report}
    )


def test_it_says_not_checked_yet_before_any_metrics_run(client, viewer, db):
    Cluster.objects.create(name="lab", kubeconfig_path="unused", prometheus_url="http://prometheus.example:9090")
    client.force_login(viewer)

    text = html_lib.unescape(client.get("/mesh/").content.decode())

    part = text[text.index("Metrics pre-flight") :]
    assert "Not checked yet: each metrics run checks which series and labels Meshboard reads" in part
    assert "Prometheus keeps 4" not in part and "preflight-summary" not in part


def test_it_shows_no_pre_flight_for_a_cluster_without_prometheus(client, viewer, db):
    Cluster.objects.create(name="lab", kubeconfig_path="unused")
    client.force_login(viewer)

    assert "Metrics pre-flight" not in client.get("/mesh/").content.decode()


def test_it_shows_a_stored_check_with_its_time_what_goes_blank_and_the_configuration(client, viewer, db):
    cluster = Cluster.objects.create(name="lab", kubeconfig_path="unused", prometheus_url="http://prom.example:9090")
    store(cluster, preflight.report(osm_kept(SIDECAR_NAMES), RQ_XX_LABELS, AT - 300, AT))
    client.force_login(viewer)

    text = html_lib.unescape(client.get("/mesh/").content.decode())

    assert OSM_SUMMARY in text
    assert "Checked at 2027-01-15 08:00:00 UTC" in text
    assert "on the series Prometheus held in the 300 s before" in text
    assert "The p50, p95 and p99 columns and the latency charts are blank" in text
    assert "name: ama-metrics-prometheus-config" in text and "namespace: kube-system" in text
    assert "prometheus-config: |" in text and "job_name: kubernetes-pods" in text
    assert preflight.keep_regex() in text


def test_it_shows_what_prometheus_said_as_text(client, viewer, db):
    cluster = Cluster.objects.create(name="lab", kubeconfig_path="unused", prometheus_url="http://prom.example:9090")
    report = preflight.report(SIDECAR_NAMES, None, AT - 300, AT, f"answered {HOSTILE}")
    store(cluster, report)
    client.force_login(viewer)

    page = client.get("/mesh/").content.decode()

    assert_shown_as_text(page)
    assert "could not check: answered " in html_lib.unescape(page)


@pytest.mark.parametrize("stored", [{}, None, {"version": 99}, {"version": 1, "checked_at": "soon", "items": []}])
def test_it_treats_an_unreadable_stored_check_as_not_checked(stored):
    assert not preflight_of(stored).checked
