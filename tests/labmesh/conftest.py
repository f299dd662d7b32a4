"""Fixtures shared by the lab-mesh browser tests."""

from __future__ import annotations

import threading

import pytest

from lab.mesh.pytest_plugin import LabStack

SPLIT = ("split.smi-spec.io", "v1alpha2", "bookstore", "trafficsplits", "bookstore-split")


@pytest.fixture
def lab_cluster(lab_stack: LabStack, transactional_db: None):
    """The lab registered as a cluster, with both collectors running every 2 s as beat would run them; the
    bookstore split is put back to 100 % bookstore-v1 afterwards."""
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record as collect_cluster
    from apps.metrics.services import collect_and_record as collect_metrics

    cluster = Cluster.objects.create(
        name="lab", kubeconfig_path=lab_stack.kubeconfig, prometheus_url=lab_stack.lab.prometheus_url
    )
    collect_cluster(cluster)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            collect_cluster(cluster)
            collect_metrics(cluster)
            stop.wait(2.0)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield cluster
    stop.set()
    thread.join(timeout=30)
    lab_stack.custom_api().patch_namespaced_custom_object(
        *SPLIT, {"spec": {"backends": [{"service": "bookstore-v1", "weight": 100}]}}
    )
