"""The bookstore after the move to Istio: the OSM bookstore with OSM removed and the migration assistant's bundle
applied, as a user following its plan would leave the cluster (reference: istio-migration.md, "Facts about the
target").

`istio_bookstore_manifests(bundle_text)` takes the bundle exactly as the assistant writes it (`apps.migration.services.
bundle_yaml`: YAML documents, and `kubectl patch ... --type merge -p '...'` commands in comments) and:
- removes OSM: its control plane (`osm-system`), every object of an OSM or SMI CRD group, and the `openservicemesh.io/`
  labels and annotations of namespaces and pod templates (what `osm namespace remove` and the uninstall leave);
- applies the bundle: its Namespace documents merged into the namespaces (`kubectl apply` of a namespace that exists),
  its Istio objects created, its patch commands applied as JSON merge patches (RFC 7386);
- adds the AKS Istio add-on's control plane: namespace `aks-istio-system` with Deployment `istiod-<revision>` labelled
  `app=istiod` and `istio.io/rev=<revision>`.
Then the controller emulation (`controllers.expand`) runs Istio's sidecar injector (`istio_injector.py`) instead of
OSM's, so the pods carry `istio-proxy`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from lab.seeds import OSM_GROUPS, SMI_GROUPS, cluster
from lab.seeds.bookstore import bookstore_manifests

ISTIO_GROUPS = frozenset({"networking.istio.io", "security.istio.io"})
REVISION = "asm-1-27"  # the bundle's revision; `az aks mesh get-revisions` lists a cluster's
ISTIO_NAMESPACE = "aks-istio-system"
# [unconfirmed] the add-on's image path; the tag is what the collector reads as Istio's version.
PILOT_IMAGE = "mcr.microsoft.com/oss/istio/pilot:1.27.3"
REV_LABEL = "istio.io/rev"
OSM_PREFIX = "openservicemesh.io/"
# The assistant's bundle of the bookstore seed (cluster `lab`, revision REVISION), checked in so that
# `--seed istio-bookstore` needs no database; tests/mesh/test_istio.py checks it is what the assistant writes today.
BUNDLE_FILE = Path(__file__).parent / "data" / "bookstore-istio-bundle.yaml"
PATCH_PREFIX = "# kubectl patch "
KIND_OF_RESOURCE = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet",
                     "ingress": "Ingress", "pod": "Pod"}  # fmt: skip


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386: a null removes, an object merges, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def parse_bundle(text: str) -> tuple[list[dict], list[tuple[str, str, str, dict]]]:
    """The bundle's objects, and its patch commands as (kind, namespace, name, merge patch)."""
    objects = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    patches = []
    for line in text.splitlines():
        if not line.startswith(PATCH_PREFIX):
            continue
        words = shlex.split(line[2:], comments=True)  # kubectl patch RESOURCE NAME -n NS --type merge -p BODY
        resource, name = words[2], words[3]
        namespace = words[words.index("-n") + 1]
        body = json.loads(words[words.index("-p") + 1])
        patches.append((KIND_OF_RESOURCE.get(resource, resource), namespace, name, body))
    return objects, patches


def _api_group(obj: dict) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _without_osm(meta: dict) -> None:
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if isinstance(values, dict):
            meta[field] = {k: v for k, v in values.items() if not k.startswith(OSM_PREFIX)}
            if not meta[field]:
                del meta[field]


def remove_osm(objects: list[dict]) -> list[dict]:
    """The cluster after OSM's uninstall: no control plane, no OSM or SMI objects, no OSM labels or annotations."""
    kept = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        if _api_group(obj) in OSM_GROUPS | SMI_GROUPS:
            continue
        if meta.get("namespace") == cluster.OSM_NAMESPACE or (
            obj["kind"] == "Namespace" and meta.get("name") == cluster.OSM_NAMESPACE
        ):
            continue
        obj = json.loads(json.dumps(obj))
        _without_osm(obj.setdefault("metadata", {}))
        template = (obj.get("spec") or {}).get("template")
        if isinstance(template, dict):
            _without_osm(template.setdefault("metadata", {}))
        kept.append(obj)
    return kept


def istio_control_plane(revision: str = REVISION) -> list[dict]:
    """The AKS Istio add-on's istiod for `revision` (what the collector detects Istio by)."""
    labels = {"app": "istiod", "istio": "pilot", REV_LABEL: revision}
    name = f"istiod-{revision}"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ISTIO_NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ISTIO_NAMESPACE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ISTIO_NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "istiod", REV_LABEL: revision}},
                "template": {
                    # istiod's own pods are never injected (its chart labels them so).
                    "metadata": {"labels": {**labels, "sidecar.istio.io/inject": "false"}},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [
                            {
                                "name": "discovery",
                                "image": PILOT_IMAGE,
                                "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info"],
                                "ports": [
                                    {"containerPort": 8080, "protocol": "TCP"},
                                    {"containerPort": 15010, "protocol": "TCP"},
                                    {"containerPort": 15017, "protocol": "TCP"},
                                ],
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ISTIO_NAMESPACE, "labels": labels},
            "spec": {
                "selector": {"app": "istiod", REV_LABEL: revision},
                "ports": [
                    {"name": "grpc-xds", "port": 15010},
                    {"name": "https-dns", "port": 15012},
                    {"name": "https-webhook", "port": 443, "targetPort": 15017},
                    {"name": "http-monitoring", "port": 15014},
                ],
            },
        },
    ]


def apply_bundle(objects: list[dict], bundle_text: str) -> list[dict]:
    """`objects` with the bundle applied: namespaces merged, Istio objects added, patch commands applied."""
    docs, patches = parse_bundle(bundle_text)
    out = [json.loads(json.dumps(o)) for o in objects]
    by_key = {(o["kind"], (o.get("metadata") or {}).get("namespace", ""), o["metadata"]["name"]): o for o in out}
    for doc in docs:
        meta = doc.get("metadata") or {}
        existing = by_key.get((doc["kind"], meta.get("namespace", ""), meta.get("name")))
        if doc["kind"] == "Namespace" and existing is not None:
            for field in ("labels", "annotations"):
                if meta.get(field):
                    existing["metadata"][field] = {**(existing["metadata"].get(field) or {}), **meta[field]}
            continue
        out.append(doc)
    for kind, namespace, name, body in patches:
        target = by_key.get((kind, namespace, name))
        if target is None:
            raise ValueError(f"the bundle patches {kind} {namespace}/{name}, which the cluster does not have")
        patched = merge_patch(target, body)
        target.clear()
        target.update(patched)  # type: ignore[arg-type]
    return out


def istio_bookstore_manifests(
    bundle_text: str, *, revision: str = REVISION, kubernetes_version: str = "v1.30.4", random_seed: int = 7
) -> list[dict]:
    """What gets applied (before the controller emulation): the bookstore without OSM, istiod, the bundle."""
    objects = remove_osm(bookstore_manifests(kubernetes_version=kubernetes_version, random_seed=random_seed))
    objects += istio_control_plane(revision)
    return apply_bundle(objects, bundle_text)


def _split_virtual_service(namespace: str, name: str, root: str, backends: list[tuple[str, int]], tcp: bool) -> dict:
    """A TrafficSplit as the migration assistant writes it: a VirtualService on the root's host, weighted routes."""
    route = [{"destination": {"host": f"{b}.{namespace}.svc.cluster.local"}, "weight": w} for b, w in backends]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": f"meshboard-ts-{name}", "namespace": namespace},
        "spec": {"hosts": [f"{root}.{namespace}.svc.cluster.local"], ("tcp" if tcp else "http"): [{"route": route}]},
    }


def istio_synthetic_objects(services: int, random_seed: int = 7, *, revision: str = REVISION) -> list[dict]:
    """The synthetic mesh (`lab.synthetic.generate`) on Istio: the same namespaces, workloads, pods (on the same nodes,
    with the same IPs) and the same pods meshed, by Istio's labels instead of OSM's; its TrafficSplits as
    VirtualServices; istiod of the AKS add-on. `lab.metrics_data.istio_synthetic_openmetrics` holds its traffic."""
    from lab.seeds import controllers
    from lab.seeds.synthetic import synthetic_manifests
    from lab.synthetic import generate

    mesh = generate(services, random_seed)
    injected = {n.name for n in mesh.namespaces if n.monitored and n.injection}
    monitored = {n.name for n in mesh.namespaces if n.monitored}
    opt = {(w.namespace, w.name): w.injection for w in mesh.workloads if w.namespace in monitored}
    manifests = synthetic_manifests(mesh)
    for obj in manifests:
        meta = obj.get("metadata") or {}
        if obj["kind"] == "Namespace" and meta["name"] in injected:
            meta.setdefault("labels", {})[REV_LABEL] = revision
        choice = (
            opt.get((meta.get("namespace"), meta.get("name"))) if obj["kind"] in ("Deployment", "StatefulSet") else None
        )
        if choice is not None:
            labels = obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})
            labels.update({REV_LABEL: revision} if choice else {"sidecar.istio.io/inject": "false"})
    objects = remove_osm(manifests) + istio_control_plane(revision)
    for split in mesh.splits:
        root = mesh.service(split.namespace, split.root_service)
        backends = [(b.service, b.weight) for b in split.backends]
        objects.append(
            _split_virtual_service(split.namespace, split.name, root.name, backends, root.ports[0].protocol != "http")
        )
    placements: dict[tuple[str, str, str], list[controllers.PodPlacement]] = {}
    for pod in mesh.pods:
        placements.setdefault((pod.namespace, pod.workload_kind, pod.workload), []).append(
            controllers.PodPlacement(name=pod.name, node=pod.node, ip=pod.ip, ready=pod.ready)
        )
    return controllers.expand(objects, random_seed=random_seed, placements=placements)
