from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from apps.clusters.models import Cluster
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed

Edit = Callable[[list[dict]], None]


def find(objects: list[dict], kind: str, namespace: str, name: str) -> dict:
    """The seed object of that kind, namespace and name (KeyError if absent)."""
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == kind and meta.get("namespace", "") == namespace and meta.get("name") == name:
            return obj
    raise KeyError(f"{kind} {namespace}/{name}")


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind]


@pytest.fixture
def mesh(db, kubeapi_factory) -> Callable[..., Cluster]:
    """`mesh(edit)`: the bookstore seed changed by `edit(objects)`, served, collected; returns the Cluster."""
    count = 0

    def make(edit: Edit | None = None, seed: str = "bookstore") -> Cluster:
        nonlocal count
        loaded = load_seed(seed)
        objects = list(loaded.objects)
        if edit is not None:
            edit(objects)
        server = kubeapi_factory(dataclasses.replace(loaded, objects=objects))
        count += 1
        cluster = Cluster.objects.create(name=f"lab{count}", kubeconfig_path=str(server.kubeconfig))
        _run, error = collect_and_record(cluster)
        assert error is None, error
        return cluster

    return make
