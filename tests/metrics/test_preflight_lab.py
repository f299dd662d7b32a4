"""The metrics pre-flight against a real Prometheus that keeps everything (the lab's "byo" mode: real Envoys, OSM's
relabeling): every series and label Meshboard reads is present, in one extra request per cycle. (OSM's keep-list,
the advice and Prometheus down: tests/policies/test_preflight_lab.py.)
"""

from __future__ import annotations

import pytest

from lab.mesh.pytest_plugin import LabStack
from lab.waiting import wait_for

pytestmark = [pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s"), pytest.mark.django_db]


def test_it_finds_every_series_and_label_meshboard_reads_in_one_request(lab_stack: LabStack, client, viewer):
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record as collect_cluster
    from apps.metrics import preflight
    from apps.metrics.models import MetricsState
    from apps.metrics.prometheus import PrometheusGateway
    from apps.metrics.services import collect_and_record as collect_metrics

    cluster = Cluster.objects.create(
        name="lab-byo", kubeconfig_path=lab_stack.kubeconfig, prometheus_url=lab_stack.lab.prometheus_url
    )
    assert collect_cluster(cluster)[1] is None
    # Envoy creates some stats at the first request (upstream_rq_xx, upstream_rq_time): wait until each is scraped.
    needed = [n.pattern for n in preflight.NEEDS if n.kind == "series" and not n.alternative_of]
    wait_for(lambda: all(lab_stack.query(f'count({{__name__=~"{p}"}})') for p in needed), 20, 0.5)
    with PrometheusGateway(lab_stack.lab.prometheus_url) as gateway:
        names = gateway.metric_names(0, 4e9)
        before = gateway.requests
        report = preflight.run(gateway, names, 0, 4e9)
        assert gateway.requests == before + 1  # the labels; the names come from the cycle

    _run, error = collect_metrics(cluster)

    assert error is None, error
    stored = MetricsState.objects.get(cluster=cluster).preflight
    assert stored["missing"] == [] and report["missing"] == []
    statuses = {i["name"]: i["status"] for i in stored["items"]}
    assert statuses.pop("osm_request_duration_ms_bucket") == "not needed"  # Envoy's histogram is kept
    assert set(statuses.values()) == {"present"}
    client.force_login(viewer)
    page = client.get("/mesh/").content.decode()
    assert "Prometheus keeps all 16 series and all 6 labels Meshboard reads." in page
    assert "Keeping what is missing" not in page
