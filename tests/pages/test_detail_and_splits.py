"""Service detail and traffic splits through HTTP; hostile strings from the cluster stay text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from apps.mesh.models import TrafficSplit
from apps.mesh.services import collect_and_record
from apps.metrics.models import EdgeKPI, MetricsState, ServiceKPI, SplitShare
from tests.helpers import HOSTILE, assert_shown_as_text, set_bookstore_backends


def test_it_shows_a_service_with_pods_edges_split_and_latency_source(client, viewer, bookstore):
    from django.utils import timezone

    now = timezone.now()
    EdgeKPI.objects.create(
        cluster=bookstore,
        source_namespace="bookbuyer",
        source_service="bookbuyer",
        destination_namespace="bookstore",
        destination_service="bookstore-v1",
        collected_at=now,
        request_rate=9.5,
        success_rate=1.0,
        p99_ms=11.0,
        certificate_expires_at=now + timezone.timedelta(hours=20),
    )
    EdgeKPI.objects.create(
        cluster=bookstore,
        source_namespace="bookstore",
        source_service="bookstore",
        destination_namespace="bookwarehouse",
        destination_service="bookwarehouse",
        collected_at=now,
        request_rate=4.0,
        success_rate=1.0,
    )
    MetricsState.objects.create(
        cluster=bookstore,
        collected_at=now,
        latency_source="none",
        latency_unavailable_reason="this Prometheus drops envoy_cluster_upstream_rq_time (OSM's keep-list)",
    )
    client.force_login(viewer)

    html = client.get("/services/bookstore/bookstore-v1/").content.decode()

    assert "bookbuyer/bookbuyer" in html and "9.5" in html
    assert "bookwarehouse/bookwarehouse" in html  # outbound, through the pods' app label
    assert "bookstore/bookstore-split" in html and "bookstore-v1 (100)" in html
    assert "not available: this Prometheus drops envoy_cluster_upstream_rq_time" in html
    assert "19\xa0hours" in html or "20\xa0hours" in html
    assert "envoy" in html and "ready" in html and "Deployment bookstore<" in html.replace("</td>", "<")
    assert 'data-series-url="/services/bookstore/bookstore-v1/series?window=15m"' in html  # metrics younger than 1 h
    assert "vendor/plotly/plotly-strict.min.js" in html


def test_it_shows_weights_percentages_observed_share_and_disagreement(client, viewer, bookstore, kubeapi):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    # The weights changed six minutes before the shares were measured: both windows lie wholly after it.
    six_minutes_ago = (timezone.now() - timedelta(minutes=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    TrafficSplit.objects.filter(cluster=bookstore, name="bookstore-split").update(
        managers=[{"manager": "kubectl", "operation": "Update", "time": six_minutes_ago}]
    )
    ServiceKPI.objects.update_or_create(
        cluster=bookstore,
        namespace="bookstore",
        service="bookstore-v2",
        defaults={"collected_at": timezone.now(), "request_rate": 7.6, "success_rate": 0.8, "p99_ms": 97.0},
    )
    client.force_login(viewer)

    html = client.get("/splits/").content.decode()

    assert "waiting for the first sample" not in html
    v1 = html[html.index('data-backend="bookstore-v1"') :]
    v1 = v1[: v1.index("</tr>")]
    assert "100.0%" in v1 and "62.0%" in v1 and "95.0%" in v1
    assert "differs by more than 10 points" in v1
    v2 = html[html.index('data-backend="bookstore-v2"') :]
    v2 = v2[: v2.index("</tr>")]
    assert "0.0%" in v2 and "38.0%" in v2 and "differs" in v2
    assert "80%" in v2 and "97" in v2  # the backend's own success and p99 beside its share
    assert "(8 s)" in html


def test_it_says_the_5_minute_share_spans_a_recent_change_and_no_data_where_nothing_was_measured(
    client, viewer, bookstore, kubeapi
):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    changed = timezone.now() - timedelta(minutes=1)
    TrafficSplit.objects.filter(cluster=bookstore, name="bookstore-split").update(
        managers=[{"manager": "kubectl", "operation": "Update", "time": changed.strftime("%Y-%m-%dT%H:%M:%SZ")}]
    )
    SplitShare.objects.filter(cluster=bookstore, backend="bookstore-v2").delete()
    client.force_login(viewer)

    html = client.get("/splits/").content.decode()

    v1 = html[html.index('data-backend="bookstore-v1"') :]
    v1 = v1[: v1.index("</tr>")]
    assert "spans the change; clean at" in v1 and "95.0%" not in v1  # a mix of both configurations is not shown
    v2 = html[html.index('data-backend="bookstore-v2"') :]
    v2 = v2[: v2.index("</tr>")]
    assert v2.count(">no data<") == 3 and "no traffic" not in v2  # never measured is not "no traffic"


def test_it_flags_weights_osm_cannot_use(client, viewer, bookstore, kubeapi):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 0.5}, {"service": "bookstore-v2", "weight": 0}]
    )
    collect_and_record(bookstore)
    client.force_login(viewer)

    html = client.get("/splits/").content.decode()

    assert "weight 0.5 is not a whole number" in html
    assert "weights sum to less than 1" in html


@pytest.fixture
def hostile(bookstore, kubeapi):
    """The bookstore demo with HOSTILE where the cluster lets anyone write it: a Service annotation on bookstore-v1
    and the name of a backend of the bookstore TrafficSplit."""
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeapi.kubeconfig)))
    core.patch_namespaced_service("bookstore-v1", "bookstore", {"metadata": {"annotations": {"note": HOSTILE}}})
    set_bookstore_backends(kubeapi, [{"service": "bookstore-v1", "weight": 100}, {"service": HOSTILE, "weight": 0}])
    _run, error = collect_and_record(bookstore)
    assert error is None, error
    return bookstore


@pytest.mark.parametrize(
    ("path", "section_start", "section_end"),
    [
        # bookstore-v1's annotations, in their own section of its page
        ("/services/bookstore/bookstore-v1/", 'aria-label="Labels and annotations"', "</section>"),
        # the split's backends on its root's page, and as rows and a check on the splits page
        ("/services/bookstore/bookstore/", 'aria-label="Traffic splits"', "</section>"),
        ("/splits/", 'data-split="bookstore/bookstore-split"', "</section>"),
    ],
    ids=["service-annotations", "root-service-split", "splits-page"],
)
def test_it_shows_hostile_strings_from_the_cluster_as_text(client, viewer, hostile, path, section_start, section_end):
    client.force_login(viewer)

    html = client.get(path).content.decode()

    section = html[html.index(section_start) :]
    assert_shown_as_text(section[: section.index(section_end)])
    assert_shown_as_text(html)


def test_it_shows_what_a_services_pods_refused_apart_from_its_request_rate(client, viewer, bookstore):
    from apps.metrics.models import Refusal

    # bookthief's calls reach the bookstore-v1 pods (workload "bookstore") without mTLS and are refused there.
    Refusal.objects.create(
        cluster=bookstore,
        side="destination",
        kind="no-mtls",
        namespace="bookstore",
        app="bookstore",
        workload_kind="Deployment",
        workload_name="bookstore",
        rate=2.0,
        collected_at=timezone.now(),
    )
    client.force_login(viewer)

    root = client.get("/services/bookstore/bookstore/").content.decode()
    refused = root[root.index('<dd class="refused">') :]
    assert refused.startswith('<dd class="refused"><div>refused: arrived without mTLS')
    assert ": 2/s</div>" in refused[: refused.index("</dd>")]
    assert '<dd class="refused">' not in client.get("/services/bookwarehouse/bookwarehouse/").content.decode()
