"""A small seed built inline, clients for it (official client and raw HTTP), and the shape comparisons."""

from __future__ import annotations

import difflib
import http.client
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from lab.kubeapi import KubeAPIServer
from lab.seeds import ALL_CRD_GROUPS, Seed

RECORDED = Path(__file__).with_name("recorded")
SPLIT = ("split.smi-spec.io", "v1alpha2")


def _pod(name: str, labels: dict, phase: str = "Running", node: str = "node-1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "demo", "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def make_seed(crd_groups: frozenset[str] = ALL_CRD_GROUPS) -> Seed:
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo", "labels": {"team": "a"}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"kubernetes.io/os": "linux"}}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web", "ver": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web-v1", "namespace": "demo", "labels": {"app": "web", "ver": "web-v1"}},
            "spec": {"selector": {"app": "web", "version": "v1"}, "ports": [{"port": 80}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "db", "namespace": "demo", "labels": {"app": "db", "ver": "db"}},
            "spec": {"ports": [{"port": 5432}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "demo"},
            "subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}],
        },
        _pod("web-v1-0", {"app": "web", "version": "v1"}),
        _pod("web-v1-1", {"app": "web", "version": "v1"}, phase="Pending", node="node-2"),
        _pod("db-0", {"app": "db"}),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web-v1", "namespace": "demo", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web", "version": "v1"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "version": "v1"}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                },
            },
        },
    ]
    if "split.smi-spec.io" in crd_groups:
        objects.append(
            {
                "apiVersion": "split.smi-spec.io/v1alpha2",
                "kind": "TrafficSplit",
                "metadata": {"name": "web-split", "namespace": "demo"},
                "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": 100}]},
            }
        )
    if "config.openservicemesh.io" in crd_groups:
        objects.append(
            {
                "apiVersion": "config.openservicemesh.io/v1alpha2",
                "kind": "MeshConfig",
                "metadata": {"name": "osm-mesh-config", "namespace": "demo"},
                "spec": {"sidecar": {"logLevel": "error"}, "traffic": {"enablePermissiveTrafficPolicyMode": False}},
            }
        )
    return Seed(name="contract", objects=objects, crd_groups=crd_groups)


@pytest.fixture
def server(kubeapi_factory: Callable[..., KubeAPIServer]) -> KubeAPIServer:
    return kubeapi_factory(make_seed())


@pytest.fixture
def api(server: KubeAPIServer) -> client.ApiClient:
    return config.new_client_from_config(str(server.kubeconfig))


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    raw: bytes


def raw(
    server: KubeAPIServer,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    conn: http.client.HTTPConnection | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request on `conn` (kept alive) or a fresh connection; JSON bodies are decoded when they parse."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": content_type} if data is not None else {}
    conn.request(method, path, body=data, headers={**sent, **(headers or {})})
    response = conn.getresponse()
    payload = response.read()
    try:
        decoded = json.loads(payload)
    except ValueError:
        decoded = None
    reply = Reply(response.status, decoded, dict(response.getheaders()), payload)
    if own:
        conn.close()
    return reply


def load_recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


def _normalise(text: str) -> str:
    return re.sub(r"\d+", "N", text)


def assert_loosely_same_message(actual: str, recorded: str) -> None:
    ratio = difflib.SequenceMatcher(None, _normalise(actual), _normalise(recorded)).ratio()
    assert ratio > 0.7, f"message {actual!r} is far from the recorded {recorded!r}"


def assert_status_like(actual: dict, recorded: dict) -> None:
    """Same code, reason, status and keys; same details name/group/kind and causes' fields and reasons."""
    assert set(actual) == set(recorded), (sorted(actual), sorted(recorded))
    for key in ("kind", "apiVersion", "status", "reason", "code", "metadata"):
        assert actual.get(key) == recorded.get(key), key
    if "details" in recorded:
        got, want = actual["details"], recorded["details"]
        for key in ("name", "group", "kind"):
            assert got.get(key) == want.get(key), f"details.{key}"
        assert [(c["field"], c["reason"]) for c in got.get("causes", [])] == [
            (c["field"], c["reason"]) for c in want.get("causes", [])
        ]
        assert set(got) == set(want), (sorted(got), sorted(want))
    if "message" in recorded:
        assert_loosely_same_message(actual["message"], recorded["message"])
