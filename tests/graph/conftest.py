"""The graph's fixtures: the pages' personas and bookstore, with the edges the metrics collector would store."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.mesh.services import collect_and_record
from apps.metrics.models import EdgeKPI, success_ratio
from tests.helpers import set_bookstore_backends

# (source ns, source app label, destination ns, destination service): (rps, 5xx/s, p99 ms, tcp bytes/s, denied/s)
BOOKSTORE_EDGES = {
    ("bookbuyer", "bookbuyer", "bookstore", "bookstore-v1"): (7.5, 0.0, 11.0, None, 0.0),
    ("bookbuyer", "bookbuyer", "bookstore", "bookstore-v2"): (2.5, 0.5, 60.0, None, 0.0),
    ("bookstore", "bookstore", "bookwarehouse", "bookwarehouse"): (5.0, 0.0, 6.0, None, 0.0),
    ("bookwarehouse", "bookwarehouse", "bookwarehouse", "mysql"): (None, None, None, 1200.0, None),
    ("bookthief", "bookthief", "bookstore", "bookstore"): (3.0, 3.0, None, None, 3.0),
}


def add_edges(cluster, edges: dict) -> None:
    now = timezone.now()
    for (sns, ssvc, dns, dsvc), (rps, r5, p99, tcp, denied) in edges.items():
        EdgeKPI.objects.create(
            cluster=cluster,
            source_namespace=sns,
            source_service=ssvc,
            destination_namespace=dns,
            destination_service=dsvc,
            collected_at=now,
            request_rate=rps,
            rate_2xx=None if rps is None else rps - r5,
            rate_4xx=None if rps is None else 0.0,
            rate_5xx=r5,
            success_rate=success_ratio(rps, r5),
            p99_ms=p99,
            tcp_bytes_sent_rate=None if tcp is None else tcp / 4,
            tcp_bytes_received_rate=None if tcp is None else tcp * 3 / 4,
            denied_rate=denied,
        )


@pytest.fixture
def mesh(bookstore, kubeapi):
    """The bookstore demo mid-canary (bookstore-v1 75, bookstore-v2 25) with its observed edges."""
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": 75}, {"service": "bookstore-v2", "weight": 25}]
    )
    _run, error = collect_and_record(bookstore)
    assert error is None, error
    add_edges(bookstore, BOOKSTORE_EDGES)
    return bookstore
