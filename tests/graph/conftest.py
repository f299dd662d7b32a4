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


# Series the demo's sidecars also report: destinations they are configured for (by policy) but do not call, with
# nothing measured (idle: drawn only with the "policy-only edges" box), and a peer named only by such a series.
IDLE_EDGES = {
    ("bookwarehouse", "mysql", "bookstore", "bookstore-v1"): (0.0, 0.0, None, None, None),
    ("bookstore", "bookstore", "bookstore", "bookstore"): (0.0, 0.0, None, None, 0.0),  # a self-loop
    ("bookbuyer", "bookbuyer", "bookwarehouse", "bookwarehouse"): (0.0, 0.0, None, None, None),
    ("bookthief", "bookthief", "bookwarehouse", "bookwarehouse"): (None, None, None, None, None),
    ("bookbuyer", "bookbuyer", "bookwarehouse", "mysql"): (None, None, None, 0.0, None),
    ("ghost", "ghost-app", "bookstore", "bookstore"): (0.0, 0.0, None, None, None),
}


@pytest.fixture
def demo_mesh(mesh):
    """`mesh` as the demo shows it: the idle edges above, and bookthief's calls refused by policy (2 req/s denied,
    no request rate measured)."""
    add_edges(mesh, IDLE_EDGES)
    EdgeKPI.objects.filter(cluster=mesh, source_service="bookthief", destination_service="bookstore").update(
        request_rate=None, rate_2xx=None, rate_4xx=None, rate_5xx=None, success_rate=None, denied_rate=2.0
    )
    return mesh


def add_split(server: object, name: str, root: str, backends: list[dict], namespace: str = "bookstore") -> dict:
    """Create a TrafficSplit on the stand-in with the official client, as `kubectl apply` would."""
    from tests.helpers import custom_api

    body = {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"service": root, "backends": backends},
    }
    return custom_api(server).create_namespaced_custom_object(
        "split.smi-spec.io", "v1alpha2", namespace, "trafficsplits", body
    )


@pytest.fixture
def two_splits(mesh, kubeapi):
    """A second TrafficSplit on the bookstore root (bookstore-v2 only), collected."""
    add_split(kubeapi, "bookstore-v2-only", "bookstore.bookstore", [{"service": "bookstore-v2", "weight": 100}])
    _run, error = collect_and_record(mesh)
    assert error is None, error
    return mesh
