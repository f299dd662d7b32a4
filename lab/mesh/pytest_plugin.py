"""pytest fixtures for the lab mesh: `lab_stack` (one stand-in + one running lab per test module) and helpers.

Enable with `pytest_plugins = [..., "lab.mesh.pytest_plugin"]`. A module can choose the Prometheus mode with
`pytestmark = pytest.mark.lab_mesh(prometheus_mode="osm")`; tests that change the stand-in's objects should put them
back, since the lab is shared by the module.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lab.kubeapi import KubeAPIServer
from lab.mesh.lab import LabMesh


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab_mesh(**options): options of the module's LabMesh (see lab.mesh.LabMesh)")


@dataclass
class LabStack:
    kubeapi: KubeAPIServer
    lab: LabMesh

    @property
    def kubeconfig(self) -> str:
        return str(self.kubeapi.kubeconfig)

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant PromQL query against the lab's Prometheus; the result vector."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.lab.prometheus_url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def custom_api(self) -> Any:
        from kubernetes import client, config

        return client.CustomObjectsApi(config.new_client_from_config(config_file=self.kubeconfig))


@pytest.fixture(scope="module")
def lab_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStack]:
    """The bookstore stand-in and a running lab mesh on it, shared by the test module, stopped after it."""
    from lab.seeds.loader import load_seed

    marker = request.node.get_closest_marker("lab_mesh")
    options = dict(marker.kwargs) if marker else {}
    workdir = tmp_path_factory.mktemp("lab-mesh")
    kubeapi = KubeAPIServer(load_seed("bookstore")).start()
    kubeapi.write_kubeconfig(workdir / "kubeconfig")
    lab = LabMesh(kubeapi.kubeconfig, workdir / "lab", **options)
    try:
        lab.start()
        yield LabStack(kubeapi, lab)
    finally:
        lab.stop()
        kubeapi.stop()
