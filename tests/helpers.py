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


# A string from the cluster that would run script if a page put it out as markup; and how a page must show it.
HOSTILE = "<img src=x onerror=alert(1)>\"'&"
HOSTILE_AS_TEXT = "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;"


def assert_shown_as_text(html: str) -> None:
    """`html` shows HOSTILE, escaped, and nowhere as markup."""
    assert HOSTILE_AS_TEXT in html
    assert HOSTILE not in html and "<img src=x" not in html
