"""The synthetic seed as a real cluster serves it (lab.seeds.payloads): each object's writers in managedFields with
real field sets, kubectl's last-applied annotation, and the weight these add, pinned to recorded real shapes."""

from __future__ import annotations

import json

from lab.seeds.payloads import KUBECTL, LAST_APPLIED
from lab.seeds.synthetic import synthetic_manifests
from tests.kubeapi.conftest import load_recorded

from .helpers import of_kind, one


def _size(obj: dict) -> int:
    return len(json.dumps(obj, separators=(",", ":")))


def _writers(obj: dict) -> list[tuple[str, str, str | None]]:
    return [(e["manager"], e["operation"], e.get("subresource")) for e in obj["metadata"]["managedFields"]]


def test_it_gives_pods_their_creator_and_the_kubelet_as_writers_with_keyed_field_sets(synthetic):
    pod = next(p for p in of_kind(synthetic.objects, "Pod") if "osm-proxy-uuid" in p["metadata"]["labels"])
    assert _writers(pod) == [("kube-controller-manager", "Update", None), ("kubelet", "Update", "status")]
    creator, kubelet = (e["fieldsV1"] for e in pod["metadata"]["managedFields"])
    containers = creator["f:spec"]["f:containers"]
    assert {f'k:{{"name":"{c["name"]}"}}' for c in pod["spec"]["containers"]} == set(containers) - {"."}
    assert "f:nodeName" not in creator["f:spec"]  # the scheduler's binding, not the creator's write
    assert creator["f:metadata"]["f:ownerReferences"] == {
        ".": {},
        **{
            f'k:{{"uid":"{r["uid"]}"}}': {".": {}, **{f"f:{k}": {} for k in r}}
            for r in pod["metadata"]["ownerReferences"]
        },
    }
    status = kubelet["f:status"]
    assert {f'k:{{"type":"{c["type"]}"}}' for c in pod["status"]["conditions"]} == set(status["f:conditions"]) - {"."}
    assert f'k:{{"ip":"{pod["status"]["podIP"]}"}}' in status["f:podIPs"]
    assert status["f:containerStatuses"] == {}  # atomic, as the kubelet's entry shows it
    assert "f:spec" not in kubelet and "f:status" not in creator


def test_it_shapes_each_entry_as_the_recorded_real_one(synthetic):
    recorded = load_recorded("managed_fields_builtin_entry")["response"]
    deployment = one(synthetic.objects, "Deployment", "osm-system", "osm-controller")
    applied = deployment["metadata"]["managedFields"][0]
    assert list(applied) == list(recorded)  # the same keys in the same order
    assert (applied["manager"], applied["operation"], applied["apiVersion"]) == (KUBECTL, "Update", "apps/v1")
    assert set(recorded["fieldsV1"]["f:spec"]) <= set(applied["fieldsV1"]["f:spec"])  # defaults included
    assert applied["fieldsV1"]["f:metadata"]["f:labels"]["."] == {}
    assert ("kube-controller-manager", "Update", "status") in _writers(deployment)


def test_it_remembers_what_was_applied_as_kubectl_does(synthetic, model):
    manifests = {
        (m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"]): m for m in synthetic_manifests(model)
    }
    checked = 0
    for obj in synthetic.objects:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if obj["kind"] in ("Service", "Deployment", "TrafficSplit", "Namespace") and key in manifests:
            annotation = obj["metadata"]["annotations"][LAST_APPLIED]
            assert annotation.endswith("\n") and json.loads(annotation) == manifests[key]
            assert _writers(obj)[0] == (KUBECTL, "Update", None)
            checked += 1
    assert checked > 2000
    assert LAST_APPLIED not in (of_kind(synthetic.objects, "Pod")[0]["metadata"].get("annotations") or {})


def test_it_weighs_a_pod_as_a_real_one_does(synthetic):
    # A real pod answered by kube-apiserver (one container, its creator's and the kubelet's entries) carries 32 % of
    # its bytes in managedFields. Ours have more containers and env, so each listed field weighs a bit more.
    pods = of_kind(synthetic.objects, "Pod")
    share = sum(_size(p["metadata"]["managedFields"]) for p in pods) / sum(_size(p) for p in pods)
    assert 0.28 <= share <= 0.5
    for kind in ("Service", "Deployment", "ReplicaSet", "EndpointSlice", "TrafficSplit", "Namespace"):
        assert all(o["metadata"]["managedFields"] for o in of_kind(synthetic.objects, kind)), kind
    assert not any(n["metadata"].get("managedFields") for n in of_kind(synthetic.objects, "Node"))
