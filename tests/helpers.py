"""Small helpers shared by tests in several folders."""

from __future__ import annotations

# The bookstore demo's TrafficSplit, as the official client addresses it.
BOOKSTORE_SPLIT = ("split.smi-spec.io", "v1alpha2", "bookstore", "trafficsplits", "bookstore-split")


def custom_api(server: object) -> object:
    """The official client's CustomObjectsApi on a stand-in, through the kubeconfig it wrote."""
    from kubernetes import client, config

    return client.CustomObjectsApi(config.new_client_from_config(str(server.kubeconfig)))


def bookstore_split(server: object) -> dict:
    """The bookstore TrafficSplit as the stand-in holds it now."""
    return custom_api(server).get_namespaced_custom_object(*BOOKSTORE_SPLIT)


def set_bookstore_backends(server: object, backends: list[dict]) -> dict:
    """Merge-patch the bookstore TrafficSplit's backends, as `kubectl patch --type merge` would."""
    return custom_api(server).patch_namespaced_custom_object(*BOOKSTORE_SPLIT, {"spec": {"backends": backends}})


def flagger_canary() -> dict:
    """Flagger's OSM tutorial Canary for the bookstore (its apex `bookstore` is the split's root), a seed object."""
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "bookstore", "namespace": "bookstore"},
        "spec": {
            "provider": "osm",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bookstore"},
            "service": {"name": "bookstore", "port": 14001},
            "analysis": {"interval": "30s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
        },
    }


def change_bookstore_weights(cluster: object, user: object, v1: int, v2: int) -> object:
    """Meshboard's weight write (`change_weights`) of bookstore-v1/-v2 to `v1`/`v2` on the bookstore TrafficSplit, at
    the resource version the last collection stored; the outcome, applied or not."""
    from apps.canary.services import change_weights
    from apps.canary.weights import BackendWeight, WeightChangeRequest
    from apps.mesh.models import TrafficSplit

    split = TrafficSplit.objects.get(cluster=cluster, namespace="bookstore", name="bookstore-split")
    change = WeightChangeRequest(
        namespace="bookstore",
        split="bookstore-split",
        backends=(BackendWeight("bookstore-v1", v1), BackendWeight("bookstore-v2", v2)),
        resource_version=split.resource_version,
    )
    return change_weights(cluster, user, change)


def bookbuyer_to_bookstore_openmetrics(start: float, end: float, step: float) -> str:
    """OpenMetrics text for a Prometheus: bookbuyer's sidecar sending bookstore-v1 3 requests/s, all 2xx, every
    `step` seconds from `start` to `end`."""
    from lab.metrics_data import OpenMetrics, envoy_edge, sample_times

    om = OpenMetrics(sample_times(start, end, step))
    source = {
        "source_namespace": "bookbuyer",
        "source_service": "bookbuyer",
        "source_pod_name": "bookbuyer-7d9c-abcde",
        "source_workload_kind": "Deployment",
        "source_workload_name": "bookbuyer",
    }
    envoy_edge(om, source, "bookstore/bookstore-v1|14001", rps_by_class={"2": 3.0})
    return om.text()


# A string from the cluster that would run script if a page put it out as markup; and how a page must show it.
HOSTILE = "<img src=x onerror=alert(1)>\"'&"
HOSTILE_AS_TEXT = "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;"


def assert_shown_as_text(html: str) -> None:
    """`html` shows HOSTILE, escaped, and nowhere as markup."""
    assert HOSTILE_AS_TEXT in html
    assert HOSTILE not in html and "<img src=x" not in html
