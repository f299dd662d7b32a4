"""Fixtures every page test shares: the personas (viewer, operator, no role) and the collected bookstore demo.

Registered as a plugin in tests/conftest.py, so each test folder uses them without importing them.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from apps.clusters.models import Cluster
from apps.clusters.roles import OPERATOR, VIEWER
from apps.mesh.services import collect_and_record
from apps.metrics.models import ServiceKPI, SplitShare


@pytest.fixture
def viewer(db):
    call_command("create_user", "vera", role=VIEWER, password="a-long-viewer-pass")
    return get_user_model().objects.get(username="vera")


@pytest.fixture
def operator(db):
    call_command("create_user", "otto", role=OPERATOR, password="a-long-operator-pass")
    return get_user_model().objects.get(username="otto")


@pytest.fixture
def nobody(db):
    return get_user_model().objects.create_user("nora", password="a-long-no-role-pass")


@pytest.fixture
def bookstore(db, kubeapi):
    """The bookstore demo collected from the stand-in, with KPIs as the metrics collector stores them."""
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig))
    _run, error = collect_and_record(cluster)
    assert error is None, error
    now = timezone.now()
    kpis = {
        # (request_rate, 2xx, 4xx, 5xx, p50, p95, p99)
        "bookstore": (20.0, 18.0, 0.0, 2.0, 4.0, 9.0, 15.0),
        "bookstore-v1": (10.0, 10.0, 0.0, 0.0, 3.0, 7.0, 11.0),
        "bookstore-v2": (10.0, 8.0, 0.0, 2.0, 20.0, 45.0, 60.0),
        "bookwarehouse": (5.0, 4.5, 0.5, 0.0, 2.0, 4.0, 6.0),
    }
    for name, (rps, ok, r4, r5, p50, p95, p99) in kpis.items():
        ns = "bookwarehouse" if name == "bookwarehouse" else "bookstore"
        ServiceKPI.objects.create(
            cluster=cluster,
            namespace=ns,
            service=name,
            collected_at=now,
            request_rate=rps,
            rate_2xx=ok,
            rate_4xx=r4,
            rate_5xx=r5,
            success_rate=(rps - r5) / rps,
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            tcp_bytes_sent_rate=1000.0,
            tcp_bytes_received_rate=5000.0,
        )
    ServiceKPI.objects.create(
        cluster=cluster,
        namespace="bookwarehouse",
        service="mysql",
        collected_at=now,
        tcp_bytes_sent_rate=300.0,
        tcp_bytes_received_rate=900.0,
        tcp_active_connections=2,
    )
    for backend, short, five in (("bookstore-v1", 0.62, 0.95), ("bookstore-v2", 0.38, 0.05)):
        SplitShare.objects.create(
            cluster=cluster,
            namespace="bookstore",
            split="bookstore-split",
            backend=backend,
            share_short=short,
            share_5m=five,
            request_rate=10.0 * short,
            short_window_seconds=8,
            collected_at=now,
        )
    return cluster
