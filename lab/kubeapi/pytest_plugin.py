"""pytest fixtures for the stand-in: `kubeapi_factory` and `kubeapi`.

Enable with `pytest_plugins = ["lab.kubeapi.pytest_plugin"]` in the top conftest. Each server gets a kubeconfig in
the test's tmp_path (`server.kubeconfig`) and is stopped at teardown. Server options (`fault_control=True` for the
HTTP fault control on /_lab/faults, `history_size`, ...) go to `kubeapi_factory(seed, **options)`, or to the
`kubeapi` fixture with `@pytest.mark.kubeapi_options(fault_control=True)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.seeds import ALL_CRD_GROUPS, Seed

from .server import KubeAPIServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kubeapi_seed(name_or_seed, **options): seed of the `kubeapi` fixture: a seed name or path for "
        "lab.seeds.loader.load_seed, or a Seed object",
    )
    config.addinivalue_line(
        "markers",
        "kubeapi_options(**server_options): KubeAPIServer options of the `kubeapi` fixture, e.g. fault_control=True",
    )


def small_seed() -> Seed:
    """What `kubeapi` serves while lab.seeds.loader does not exist: one meshed namespace with a canary split."""
    labels = {"app": "web", "version": "v1"}
    pod_status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "podIP": "10.244.0.5",
    }
    return Seed(
        name="small",
        objects=[
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "demo", "labels": {"openservicemesh.io/monitored-by": "osm"}},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 443}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"}},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web-v1", "namespace": "demo", "labels": {"app": "web"}},
                "spec": {"selector": labels, "ports": [{"port": 80}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web-v1-0", "namespace": "demo", "labels": labels},
                "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "web:1"}]},
                "status": pod_status,
            },
            {
                "apiVersion": "split.smi-spec.io/v1alpha2",
                "kind": "TrafficSplit",
                "metadata": {"name": "web-split", "namespace": "demo"},
                "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": 100}]},
            },
        ],
        crd_groups=ALL_CRD_GROUPS,
    )


def _seed_from_marker(marker: pytest.Mark | None) -> Seed:
    if marker is not None and marker.args and isinstance(marker.args[0], Seed):
        return marker.args[0]
    try:
        loader = importlib.import_module("lab.seeds.loader")
    except ModuleNotFoundError:
        if marker is not None:
            pytest.fail("@pytest.mark.kubeapi_seed with a name needs lab.seeds.loader, which does not exist yet")
        return small_seed()
    if marker is None:
        return loader.load_seed("bookstore")
    return loader.load_seed(*marker.args, **marker.kwargs)


@pytest.fixture
def kubeapi_factory(tmp_path: Path) -> Iterator[Callable[..., KubeAPIServer]]:
    """`start(seed, **server_options)` starts a server with a kubeconfig at `server.kubeconfig`."""
    servers: list[KubeAPIServer] = []

    def start(seed: Seed, **options: Any) -> KubeAPIServer:
        server = KubeAPIServer(seed, **options).start()
        servers.append(server)
        server.write_kubeconfig(tmp_path / f"kubeconfig-{len(servers)}.yaml")
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def kubeapi(request: pytest.FixtureRequest, kubeapi_factory: Callable[..., KubeAPIServer]) -> KubeAPIServer:
    """A running stand-in: `load_seed("bookstore")`, or the seed named by `@pytest.mark.kubeapi_seed`, with the
    server options of `@pytest.mark.kubeapi_options`."""
    options = request.node.get_closest_marker("kubeapi_options")
    seed = _seed_from_marker(request.node.get_closest_marker("kubeapi_seed"))
    return kubeapi_factory(seed, **(options.kwargs if options else {}))
