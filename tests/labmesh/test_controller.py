"""The lab controller against the stand-in alone (no Envoy): watch, apply, and resume after 410 Gone."""

from __future__ import annotations

import pytest
from kubernetes import client, config

from lab.kubeapi import KubeAPIServer
from lab.mesh.controller import LabController
from lab.mesh.topology import Policy
from lab.waiting import wait_for

SPLIT = ("split.smi-spec.io", "v1alpha2", "bookstore", "trafficsplits", "bookstore-split")
TT = ("access.smi-spec.io", "v1alpha3", "bookstore", "traffictargets", "bookstore")


@pytest.fixture
def controller(kubeapi: KubeAPIServer):
    applied: list[Policy] = []
    api_client = config.new_client_from_config(config_file=str(kubeapi.kubeconfig))
    ctl = LabController(api_client, applied.append, watch_timeout=1, bookmarks=False)
    ctl.applied_policies = applied
    ctl.start()
    yield ctl, client.CustomObjectsApi(api_client)
    ctl.stop()


def sources(policy: Policy) -> list[str]:
    return [s["name"] for s in policy.targets["bookstore/bookstore"]["spec"]["sources"]]


def test_it_applies_each_change_it_watches(controller) -> None:
    ctl, api = controller
    assert ctl.snapshot().split_for is not None and not ctl.snapshot().permissive
    api.patch_namespaced_custom_object(
        *SPLIT,
        {"spec": {"backends": [{"service": "bookstore-v1", "weight": 10}, {"service": "bookstore-v2", "weight": 90}]}},
    )
    wait_for(
        lambda: (
            ctl.applied_policies
            and ctl.applied_policies[-1].splits["bookstore/bookstore-split"]["spec"]["backends"][-1]["weight"] == 90
        ),
        timeout=2,
    )


def test_it_lists_again_and_carries_on_after_410(controller, kubeapi: KubeAPIServer) -> None:
    ctl, api = controller
    assert ctl.relists["traffictargets"] == 1
    # a change elsewhere moves the resourceVersion on; compaction then makes the TrafficTarget watch's rv too old
    api.patch_namespaced_custom_object(*SPLIT, {"metadata": {"labels": {"touched": "yes"}}})
    kubeapi.store.compact()
    wait_for(lambda: ctl.relists["traffictargets"] >= 2, timeout=5)
    body = api.get_namespaced_custom_object(*TT)
    new = [*body["spec"]["sources"], {"kind": "ServiceAccount", "name": "bookthief", "namespace": "bookthief"}]
    api.patch_namespaced_custom_object(*TT, {"spec": {"sources": new}})
    wait_for(lambda: ctl.applied_policies and "bookthief" in sources(ctl.applied_policies[-1]), timeout=3)
    assert not [e for e in ctl.errors if "410" not in e]
