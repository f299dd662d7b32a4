"""A service is shown the refusals of the workloads its selector picks (apps.metrics.refused)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.clusters.models import Cluster
from apps.mesh.models import Service, Workload
from apps.metrics.models import Refusal
from apps.metrics.refused import refused_by_service

pytestmark = pytest.mark.django_db


def _cluster() -> Cluster:
    cluster = Cluster.objects.create(name="c")
    for name, selector in (
        ("bookstore", {"app": "bookstore"}),
        ("bookstore-v2", {"app": "bookstore", "version": "v2"}),
    ):
        Service.objects.create(cluster=cluster, namespace="bookstore", name=name, selector=selector)
    Service.objects.create(cluster=cluster, namespace="bookstore", name="headless-none", selector={})
    for name, version in (("bookstore", "v1"), ("bookstore-v2", "v2")):
        Workload.objects.create(
            cluster=cluster,
            namespace="bookstore",
            name=name,
            kind="Deployment",
            template_labels={"app": "bookstore", "version": version},
        )
    return cluster


def _refusal(cluster, kind, workload_name, rate, workload_kind="Deployment", side="destination"):
    Refusal.objects.create(
        cluster=cluster,
        side=side,
        kind=kind,
        namespace="bookstore",
        app="bookstore",
        workload_kind=workload_kind,
        workload_name=workload_name,
        rate=rate,
        collected_at=timezone.now(),
    )


def test_it_gives_each_service_the_refusals_of_the_workloads_it_selects(django_assert_max_num_queries):
    cluster = _cluster()
    _refusal(cluster, "no-mtls", "bookstore", 2.0)
    _refusal(cluster, "identity", "bookstore-v2", 0.5)
    _refusal(cluster, "passthrough", "bookstore-v2", 9.0, side="caller")  # a caller's count: not a refusal here
    with django_assert_max_num_queries(3):
        refused = refused_by_service(cluster)
    assert refused == {
        ("bookstore", "bookstore"): {"no-mtls": 2.0, "identity": 0.5},  # the root picks v1's and v2's pods
        ("bookstore", "bookstore-v2"): {"identity": 0.5},
    }


def test_it_matches_by_app_label_where_workload_labels_are_missing():
    cluster = _cluster()
    _refusal(cluster, "no-mtls", "", 1.0, workload_kind="")
    refused = refused_by_service(cluster)
    assert refused[("bookstore", "bookstore")] == {"no-mtls": 1.0}
    assert ("bookstore", "bookstore-v2") not in refused  # its selector's app matches, but so does v1's
