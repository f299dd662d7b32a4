from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.clusters.models import Cluster
from lab.kubeapi import KubeAPIServer


@pytest.fixture
def cluster_for(db: None) -> Callable[..., Cluster]:
    """A Cluster row that reaches the given stand-in through the kubeconfig the stand-in wrote."""

    def make(server: KubeAPIServer, name: str = "lab", **fields: object) -> Cluster:
        return Cluster.objects.create(**{"name": name, "kubeconfig_path": str(server.kubeconfig), **fields})

    return make
