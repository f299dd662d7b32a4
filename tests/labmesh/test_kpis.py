"""Meshboard's KPIs for the lab agree with the traffic generator's own counts (issues: lab mesh and KPIs).

The real collectors run against the lab: the cluster collector reads the stand-in, the metrics collector reads the
lab's Prometheus. Over the KPI window, the request rate per bookstore backend and bookstore-v2's success rate must
match what bookbuyer itself sent and got back within 10 %.
"""

from __future__ import annotations

import time

import pytest

from lab.mesh.pytest_plugin import LabStack
from tests.labmesh.conftest import SPLIT
from tests.labmesh.recording import Recorder, generator

pytestmark = [pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s"), pytest.mark.django_db]

CLIENT = "bookbuyer -> bookstore/bookstore"
MC = ("config.openservicemesh.io", "v1alpha2", "osm-system", "meshconfigs", "osm-mesh-config")


def test_it_reports_kpis_that_agree_with_the_generator(lab_stack: LabStack) -> None:
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record as collect_cluster
    from apps.metrics.models import MetricsState, ServiceKPI
    from apps.metrics.services import collect_and_record as collect_metrics

    api = lab_stack.custom_api()
    backends = [{"service": "bookstore-v1", "weight": 50}, {"service": "bookstore-v2", "weight": 50}]
    api.patch_namespaced_custom_object(*SPLIT, {"spec": {"backends": backends}})
    # The seed's Retry bookbuyer-to-bookstore would retry v2's failures: bookbuyer would get (nearly) none of them and
    # Envoy would count each attempt. These KPIs are the requests' own, so the retry policy is off for this test.
    api.patch_namespaced_custom_object(*MC, {"spec": {"featureFlags": {"enableRetryPolicy": False}}})
    lab_stack.lab.set_behaviour("bookstore-v2", error_rate=0.2)
    try:
        cluster = Cluster.objects.create(
            name="lab", kubeconfig_path=lab_stack.kubeconfig, prometheus_url=lab_stack.lab.prometheus_url
        )
        _, error = collect_cluster(cluster)
        assert error is None, error
        with Recorder(lambda: generator(lab_stack)) as recorder:
            time.sleep(16)  # a full KPI window (10 s at 1 s scrapes) after the change, plus scrape lag
            at = time.time() - 1.0
            run, error = collect_metrics(cluster, at=at)
            time.sleep(0.3)
        assert error is None, error
        assert run.status == "ok", (run.error, run.warnings)  # every query of the cycle answered
        state = MetricsState.objects.get(cluster=cluster)
        assert state.scrape_interval_seconds == 1.0
        window = 10.0  # apps.metrics.catalog.windows(1.0).short

        def count(at: float, backend: str, status: str | None = None) -> float:
            return recorder.at(at, f"{CLIENT} {backend} {status}" if status else f"{CLIENT} {backend}")

        kpis = {k.service: k for k in ServiceKPI.objects.filter(cluster=cluster, namespace="bookstore")}
        total = 0.0
        for service, backend in (("bookstore-v1", "bookstore"), ("bookstore-v2", "bookstore-v2")):
            sent = (count(at, backend) - count(at - window, backend)) / window
            total += sent
            assert sent > 3, f"too little traffic to {backend} to compare"
            assert kpis[service].request_rate == pytest.approx(sent, rel=0.10), service
        # The root bookbuyer addresses carries what was routed to its backends: the generator's 20 req/s.
        root = kpis["bookstore"]
        assert root.routed_backends == ["bookstore-v1", "bookstore-v2"]
        assert root.request_rate == pytest.approx(total, rel=0.10)
        assert root.request_rate == pytest.approx(20.0, rel=0.10)
        assert root.success_rate == pytest.approx(1 - 0.5 * 0.2, abs=0.05)
        # Its quantiles come from the backends' summed buckets: a mix's quantile lies between its parts'.
        parts = sorted(kpis[s].p99_ms for s in ("bookstore-v1", "bookstore-v2"))
        assert parts[0] <= root.p99_ms <= parts[1]
        ok = count(at, "bookstore-v2", "200") - count(at - window, "bookstore-v2", "200")
        failed = count(at, "bookstore-v2", "500") - count(at - window, "bookstore-v2", "500")
        assert kpis["bookstore-v2"].success_rate == pytest.approx(ok / (ok + failed), rel=0.10)
        assert kpis["bookstore-v2"].success_rate == pytest.approx(0.8, abs=0.05)
        assert kpis["bookstore-v1"].success_rate == 1.0
    finally:
        lab_stack.lab.set_behaviour("bookstore-v2", error_rate=0.05)
        api.patch_namespaced_custom_object(*SPLIT, {"spec": {"backends": [{"service": "bookstore-v1", "weight": 100}]}})
        api.patch_namespaced_custom_object(*MC, {"spec": {"featureFlags": {"enableRetryPolicy": True}}})


def test_it_reads_tls_and_refusals_from_real_sidecars_named_as_osm_names_them(lab_stack: LabStack) -> None:
    """TLS evidence per edge, and refusals per side: bookthief and bookstore-v2 have no TrafficTarget to where they
    call, so their sidecars pass the connections through and the destinations' sidecars refuse them (no mTLS)."""
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record as collect_cluster
    from apps.metrics.models import EdgeKPI, MetricsState
    from apps.metrics.prometheus import gateway_for
    from apps.metrics.resolve import Resolver
    from apps.metrics.services import collect_and_record as collect_metrics
    from apps.metrics.services import map_cycle, query_cycle

    cluster = Cluster.objects.create(
        name="lab-tls", kubeconfig_path=lab_stack.kubeconfig, prometheus_url=lab_stack.lab.prometheus_url
    )
    _, error = collect_cluster(cluster)
    assert error is None, error
    time.sleep(12)  # a full KPI window of refusals
    at = time.time() - 1.0
    window = 10.0  # apps.metrics.catalog.windows(1.0).short
    attempts = {}
    for client in ("bookthief -> bookstore/bookstore", "bookstore-v2 -> bookwarehouse/bookwarehouse"):
        first = lab_stack.lab.traffic()[client]["requests"]
        time.sleep(window)
        attempts[client] = (lab_stack.lab.traffic()[client]["requests"] - first) / window
    run, error = collect_metrics(cluster, at=time.time() - 1.0)
    assert error is None, error
    assert run.status == "ok", (run.error, run.warnings)
    state = MetricsState.objects.get(cluster=cluster)
    assert state.tls_unavailable_reason == ""
    edge = EdgeKPI.objects.get(
        cluster=cluster,
        source_service="bookbuyer",
        destination_namespace="bookstore",
        destination_service="bookstore-v1",
    )
    assert edge.request_rate > 3 and edge.tls_handshake_rate is not None and edge.tls_error_rate is not None
    assert edge.certificate_expires_at is not None
    assert not EdgeKPI.objects.filter(cluster=cluster, denied_rate__isnull=False).exists()  # never per edge
    assert "by destination (namespace/app): bookstore/bookstore" in state.denials_unavailable_reason

    with gateway_for(cluster) as gateway:
        cycle = query_cycle(gateway, cluster, at=at)
    refusals = map_cycle(cycle, Resolver.for_cluster(cluster)).refusals
    assert refusals is not None, cycle.failures
    refused = refusals["destination"]
    assert refused[("bookstore", "bookstore")] == pytest.approx(attempts["bookthief -> bookstore/bookstore"], rel=0.3)
    v2 = attempts["bookstore-v2 -> bookwarehouse/bookwarehouse"]
    assert refused[("bookwarehouse", "bookwarehouse")] == pytest.approx(v2, rel=0.3)
    assert not any(refusals["caller"].values())  # egress is on: nothing is refused on the callers' side

    # Stored by workload: the callers are bookthief and bookstore-v2 (not "bookstore", the app label v1 shares),
    # each sending outside its routes, and the destinations' workloads refuse them.
    from apps.metrics.models import Refusal
    from apps.policies.smi_access import denied_traffic

    rows = {(r.side, r.kind, r.workload_name): r.rate for r in Refusal.objects.filter(cluster=cluster)}
    assert rows[("caller", "passthrough", "bookthief")] == pytest.approx(
        attempts["bookthief -> bookstore/bookstore"], rel=0.3
    )
    assert rows[("caller", "passthrough", "bookstore-v2")] == pytest.approx(v2, rel=0.3)
    assert ("caller", "passthrough", "bookstore") not in rows and ("caller", "passthrough", "bookbuyer") not in rows
    assert rows[("destination", "no-mtls", "bookwarehouse")] == pytest.approx(v2, rel=0.3)
    denials = denied_traffic(cluster)
    callers = {f"{p.namespace}/{p.name}": p for p in denials.callers}
    assert set(callers) == {"bookthief/bookthief", "bookstore/bookstore-v2"}
    assert callers["bookstore/bookstore-v2"].service_account == "bookstore-v2"
    assert "bookwarehouse/bookwarehouse" in callers["bookstore/bookstore-v2"].not_allowed
    assert denials.attribution.startswith("by workload")
