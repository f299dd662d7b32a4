"""The bookstore demo collected from the stand-in, as the migration assistant reads it; with Istio's CRDs served when
a test validates the bundle against them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from apps.clusters.models import Cluster
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed

ISTIO_GROUPS = frozenset({"security.istio.io", "networking.istio.io"})


@pytest.fixture
def collected(db, kubeapi_factory) -> Callable[..., tuple[Cluster, object]]:
    """`collected(edit=None, name="lab")`: the bookstore seed (changed by `edit(objects)`) served with Istio's CRD
    groups installed, collected into the snapshot; returns the Cluster and the stand-in."""

    def make(edit: Callable[[list[dict]], None] | None = None, name: str = "lab") -> tuple[Cluster, object]:
        seed = load_seed("bookstore")
        objects = [dict(o) for o in seed.objects]
        if edit is not None:
            edit(objects)
        server = kubeapi_factory(dataclasses.replace(seed, objects=objects, crd_groups=seed.crd_groups | ISTIO_GROUPS))
        cluster = Cluster.objects.create(name=name, kubeconfig_path=str(server.kubeconfig))
        _run, error = collect_and_record(cluster)
        assert error is None, error
        return cluster, server

    return make


@pytest.fixture
def bookstore_cluster(collected) -> Cluster:
    return collected()[0]
