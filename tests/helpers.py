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
