"""The resilience KPIs on the lab mesh (real Envoys programmed as OSM v1.2.4 programs them, a real Prometheus that
keeps everything, 1 s scrapes): the rate-limited requests/s the collector stores for bookstore agree with the 429s/s
the lab's generator counted over the same window, within 10 % (the counter itself is checked against the generator in
tests/labmesh/test_policies.py)."""

from __future__ import annotations

import bisect
import time

import pytest

from lab.mesh.pytest_plugin import LabStack
from lab.waiting import wait_for
from tests.labmesh.recording import Recorder, generator
from tests.labmesh.test_policies import BUYER

pytestmark = [pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s"), pytest.mark.django_db]

LIMITED = 'envoy_http_local_rate_limit_rate_limited{source_workload_name="bookstore"}'


def test_bookstores_rate_limited_requests_agree_with_the_generator(lab_stack: LabStack) -> None:
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record as collect_objects
    from apps.metrics import catalog
    from apps.metrics.models import MetricsState, ServiceKPI
    from apps.metrics.services import collect_and_record as collect_metrics

    cluster = Cluster.objects.create(
        name="lab-resilience", kubeconfig_path=lab_stack.kubeconfig, prometheus_url=lab_stack.lab.prometheus_url
    )
    assert collect_objects(cluster)[1] is None
    with Recorder(lambda: generator(lab_stack)) as recorder:
        lab_stack.lab.clients[BUYER].burst(1200, connections=4)  # empty the bucket: then ~2 of 10 req/s get a 429
        wait_for(lambda: lab_stack.query(f"{LIMITED} > 40"), 60, 0.5)
        window = catalog.windows(1.0).short  # the KPI window at 1 s scrapes
        time.sleep(window + 5)  # past the burst's tail: a whole window of steady rate limiting (~2 of 10 req/s)
        at = time.time() - 1.5  # scraped by now, and inside the recording
        _run, error = collect_metrics(cluster, at=at)
        assert error is None, error
        time.sleep(0.3)
    # the recording is dense at both ends of the window (a sample stalled by the burst would be interpolated across)
    for when in (at - window, at):
        i = bisect.bisect_left(recorder.times, when)
        assert recorder.times[i] - recorder.times[i - 1] < 0.5, when
    kpi = ServiceKPI.objects.get(cluster=cluster, namespace="bookstore", service="bookstore")
    ours = (recorder.at(at, f"{BUYER} - 429") - recorder.at(at - window, f"{BUYER} - 429")) / window
    assert ours > 0.5, ours
    assert kpi.rate_limited_rate == pytest.approx(ours, rel=0.10), (kpi.rate_limited_rate, ours)
    state = MetricsState.objects.get(cluster=cluster)
    assert state.rate_limited_unavailable_reason == "" and kpi.retried_rate is not None
    print(f"rate limited: collector {kpi.rate_limited_rate:.2f}/s / generator {ours:.2f}/s")
