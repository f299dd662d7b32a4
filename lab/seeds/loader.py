"""`load_seed()`: one call from a seed's name (or a YAML file) to the `Seed` the stand-in serves."""

from __future__ import annotations

import math
from pathlib import Path

from lab.seeds import ALL_CRD_GROUPS, Seed, cluster, controllers
from lab.seeds.bookstore import bookstore_manifests
from lab.seeds.istio import BUNDLE_FILE, ISTIO_GROUPS, istio_bookstore_manifests, istio_synthetic_objects
from lab.seeds.yamlfiles import read_manifests

KUBERNETES_VERSION = Seed.__dataclass_fields__["kubernetes_version"].default
NAMED_SEEDS = ("bookstore", "istio-bookstore", "synthetic", "istio-synthetic")


def load_seed(
    name_or_path: str,
    *,
    services: int = 1000,
    random_seed: int = 7,
    crd_groups: frozenset[str] | None = None,
) -> Seed:
    """Build a seed: "bookstore", "istio-bookstore" (the bookstore moved to Istio with the migration assistant's
    bundle: `lab.seeds.istio`; its CRD groups are Istio's), "synthetic" (`services` and `random_seed` apply),
    "istio-synthetic" (the same mesh on Istio), or a multi-document YAML file.

    A YAML file is applied like `kubectl apply -f` onto an AKS-like cluster (nodes, system namespaces,
    `default/kubernetes`; no OSM control plane unless the file has it), then expanded by the controller emulation.
    `crd_groups` chooses which CRD groups the cluster has (default: all); custom resources of other groups are left
    out, since a cluster without their CRDs could not hold them. Raises ValueError for an unknown name or a bad file.
    """
    groups = ALL_CRD_GROUPS if crd_groups is None else frozenset(crd_groups)
    if name_or_path == "bookstore":
        objects = controllers.expand(
            bookstore_manifests(kubernetes_version=KUBERNETES_VERSION, random_seed=random_seed),
            random_seed=random_seed,
        )
        name = "bookstore"
    elif name_or_path == "istio-bookstore":
        return istio_bookstore_seed(BUNDLE_FILE.read_text(), random_seed=random_seed)
    elif name_or_path == "istio-synthetic":
        return Seed(
            name="istio-synthetic",
            objects=istio_synthetic_objects(services, random_seed),
            crd_groups=ISTIO_GROUPS,
            kubernetes_version=KUBERNETES_VERSION,
        )
    elif name_or_path == "synthetic":
        # Imported here: the generator is only needed for this seed.
        from lab.seeds.synthetic import synthetic_objects
        from lab.synthetic import generate

        if services < 1:
            raise ValueError(f"a synthetic seed needs at least 1 service, not {services}")
        objects = synthetic_objects(
            generate(services=services, random_seed=random_seed), kubernetes_version=KUBERNETES_VERSION
        )
        name = "synthetic"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(
                f"unknown seed {name_or_path!r}: use one of {', '.join(NAMED_SEEDS)} or the path of a YAML file"
            )
        objects = expand_file_objects(read_manifests(path), random_seed=random_seed)
        name = path.stem
    return Seed(
        name=name, objects=_keep_installed(objects, groups), crd_groups=groups, kubernetes_version=KUBERNETES_VERSION
    )


def istio_bookstore_seed(bundle_text: str, *, random_seed: int = 7) -> Seed:
    """The bookstore after the move to Istio with `bundle_text` (the assistant's bundle YAML) applied."""
    manifests = istio_bookstore_manifests(bundle_text, kubernetes_version=KUBERNETES_VERSION, random_seed=random_seed)
    return Seed(
        name="istio-bookstore",
        objects=controllers.expand(manifests, random_seed=random_seed),
        crd_groups=ISTIO_GROUPS,
        kubernetes_version=KUBERNETES_VERSION,
    )


def expand_file_objects(applied: list[dict], *, random_seed: int = 7) -> list[dict]:
    """Objects from a user's file onto the base cluster, with enough nodes for their pods."""
    has_nodes = any(isinstance(o, dict) and o.get("kind") == "Node" for o in applied)
    replicas = sum(
        int((o.get("spec") or {}).get("replicas", 1))
        for o in applied
        if isinstance(o, dict) and o.get("kind") in ("Deployment", "StatefulSet")
    )
    nodes = 0 if has_nodes else max(2, math.ceil(replicas / 100))
    base = cluster.base_cluster(nodes=nodes, kubernetes_version=KUBERNETES_VERSION, random_seed=random_seed)
    return controllers.expand(base + applied, random_seed=random_seed)


def _keep_installed(objects: list[dict], groups: frozenset[str]) -> list[dict]:
    missing = ALL_CRD_GROUPS - groups
    return [o for o in objects if controllers.api_group(o) not in missing]
