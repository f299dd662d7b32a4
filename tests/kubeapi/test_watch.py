"""Watches through the official client's watch.Watch, as the dashboard will run them."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, watch

G, V = "split.smi-spec.io", "v1alpha2"


def _later(delay: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), action()))
    thread.start()
    return thread


def test_it_streams_added_modified_deleted_for_custom_resources_after_a_list(custom):
    listed = custom.list_namespaced_custom_object(G, V, "demo", "trafficsplits")

    def writes():
        body = {
            "apiVersion": f"{G}/{V}",
            "kind": "TrafficSplit",
            "metadata": {"name": "n"},
            "spec": {"service": "web", "backends": []},
        }
        custom.create_namespaced_custom_object(G, V, "demo", "trafficsplits", body)
        custom.patch_namespaced_custom_object(G, V, "demo", "trafficsplits", "n", {"spec": {"service": "db"}})
        custom.delete_namespaced_custom_object(G, V, "demo", "trafficsplits", "n")

    thread = _later(0.2, writes)
    w = watch.Watch()
    events = []
    for event in w.stream(
        custom.list_namespaced_custom_object,
        G,
        V,
        "demo",
        "trafficsplits",
        resource_version=listed["metadata"]["resourceVersion"],
        timeout_seconds=3,
    ):
        events.append(
            (event["type"], event["object"]["metadata"]["name"], event["object"]["metadata"]["resourceVersion"])
        )
        if len(events) == 3:
            w.stop()
    thread.join()
    assert [e[:2] for e in events] == [("ADDED", "n"), ("MODIFIED", "n"), ("DELETED", "n")]
    rvs = [int(e[2]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3  # DELETED carries a new rv
    assert w.resource_version == events[-1][2]


def test_it_starts_a_watch_without_rv_with_synthetic_added_events(core):
    names = [
        e["object"].metadata.name for e in watch.Watch().stream(core.list_namespaced_service, "demo", timeout_seconds=1)
    ]
    assert sorted(names) == ["db", "web", "web-v1"]


def test_it_turns_selector_transitions_into_added_and_deleted(core):
    rv = core.list_namespaced_service("demo", label_selector="app=web").metadata.resource_version

    def writes():
        core.patch_namespaced_service("web-v1", "demo", {"metadata": {"labels": {"app": "gone"}}})
        core.patch_namespaced_service("db", "demo", {"metadata": {"labels": {"app": "web"}}})
        core.patch_namespaced_service("web", "demo", {"metadata": {"labels": {"seen": "yes"}}})

    thread = _later(0.2, writes)
    started = time.monotonic()
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.list_namespaced_service, "demo", label_selector="app=web", resource_version=rv, timeout_seconds=2
        )
    ]
    elapsed = time.monotonic() - started
    thread.join()
    assert events == [("DELETED", "web-v1"), ("ADDED", "db"), ("MODIFIED", "web")]
    assert 1.5 < elapsed < 4  # the server closed the stream at timeoutSeconds


def test_it_filters_watches_by_field_selector(core):
    rv = core.list_namespaced_service("demo").metadata.resource_version
    thread = _later(
        0.2,
        lambda: [core.patch_namespaced_service(n, "demo", {"metadata": {"labels": {"x": "1"}}}) for n in ("web", "db")],
    )
    events = [
        e["object"].metadata.name
        for e in watch.Watch().stream(
            core.list_namespaced_service,
            "demo",
            field_selector="metadata.name=db",
            resource_version=rv,
            timeout_seconds=1,
        )
    ]
    thread.join()
    assert events == ["db"]


def test_it_raises_410_for_a_resource_version_older_than_the_history(core, server):
    rv = core.list_namespaced_service("demo").metadata.resource_version
    core.patch_namespaced_service("web", "demo", {"metadata": {"labels": {"x": "1"}}})
    server.store.compact()
    with pytest.raises(client.ApiException) as caught:
        list(watch.Watch().stream(core.list_namespaced_service, "demo", resource_version=rv, timeout_seconds=2))
    assert caught.value.status == 410
    assert "too old resource version" in str(caught.value)


def test_it_expires_old_rvs_when_the_history_overflows(kubeapi_factory):
    from kubernetes import config

    from .conftest import make_seed

    server = kubeapi_factory(make_seed(), history_size=5)
    core = client.CoreV1Api(config.new_client_from_config(str(server.kubeconfig)))
    rv = core.list_namespaced_service("demo").metadata.resource_version
    for i in range(6):
        core.patch_namespaced_service("web", "demo", {"metadata": {"labels": {"i": str(i)}}})
    with pytest.raises(client.ApiException) as caught:
        list(watch.Watch().stream(core.list_namespaced_service, "demo", resource_version=rv, timeout_seconds=1))
    assert caught.value.status == 410


def test_it_sends_bookmarks_only_when_allowed(core, kubeapi_factory):
    rv = core.list_namespaced_service("demo").metadata.resource_version
    plain = [
        e["type"]
        for e in watch.Watch().stream(core.list_namespaced_service, "demo", resource_version=rv, timeout_seconds=1)
    ]
    assert plain == []
    marked = [
        (e["type"], e["raw_object"]["metadata"]["resourceVersion"])
        for e in watch.Watch().stream(
            core.list_namespaced_service, "demo", resource_version=rv, timeout_seconds=1, allow_watch_bookmarks=True
        )
    ]
    assert marked == [("BOOKMARK", rv)]


def test_it_sends_periodic_bookmarks_at_the_configured_interval(kubeapi_factory):
    from kubernetes import config

    from .conftest import make_seed

    server = kubeapi_factory(make_seed(), bookmark_interval=0.3)
    core = client.CoreV1Api(config.new_client_from_config(str(server.kubeconfig)))
    rv = core.list_namespaced_service("demo").metadata.resource_version
    types = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_service, "demo", resource_version=rv, timeout_seconds=1, allow_watch_bookmarks=True
        )
    ]
    assert types.count("BOOKMARK") >= 3
