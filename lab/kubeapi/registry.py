"""Which resources exist: the built-in kinds the stand-in serves, plus the CRDs loaded from `crds/`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

CRD_DIR = Path(__file__).with_name("crds")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for core
    plural: str
    kind: str
    namespaced: bool
    builtin: bool
    # Served versions, the first being the storage version; every served version holds the same objects.
    versions: tuple[str, ...]
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # openAPIV3Schema per served version (CRDs only).
    schemas: dict[str, dict] = field(default_factory=dict, compare=False, hash=False)
    has_status_subresource: bool = False
    # Registries with ReturnDeletedObject (pods, services, serviceaccounts) answer DELETE with the object.
    returns_deleted_object: bool = False
    # Deployments count spec changes in metadata.generation; so do all CRs.
    tracks_generation: bool = False
    allow_create_on_update: bool = False
    # Extra fieldSelector keys beyond metadata.name / metadata.namespace.
    field_selectors: tuple[str, ...] = ()

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


def _builtin(group: str, version: str, plural: str, kind: str, namespaced: bool = True, **kw) -> ResourceType:
    return ResourceType(
        group=group,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        builtin=True,
        versions=(version,),
        singular=kind.lower(),
        has_status_subresource=kw.pop("status", False),
        **kw,
    )


BUILTINS: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", False, short_names=("ns",), status=True),
    _builtin("", "v1", "nodes", "Node", False, short_names=("no",), status=True),
    _builtin("", "v1", "services", "Service", short_names=("svc",), status=True, returns_deleted_object=True),
    _builtin(
        "",
        "v1",
        "pods",
        "Pod",
        short_names=("po",),
        categories=("all",),
        status=True,
        returns_deleted_object=True,
        field_selectors=("spec.nodeName", "status.phase"),
    ),
    _builtin("", "v1", "endpoints", "Endpoints", short_names=("ep",), allow_create_on_update=True),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",), returns_deleted_object=True),
    _builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        categories=("all",),
        status=True,
        tracks_generation=True,
    ),
    _builtin(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        short_names=("rs",),
        categories=("all",),
        status=True,
        tracks_generation=True,
    ),
    _builtin(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        short_names=("sts",),
        categories=("all",),
        status=True,
        tracks_generation=True,
    ),
    _builtin(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        short_names=("ds",),
        categories=("all",),
        status=True,
        tracks_generation=True,
    ),
    _builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    # Read by the collector for OSM's ingress (an Ingress's backends, then the IngressBackend that admits them).
    _builtin(
        "networking.k8s.io", "v1", "ingresses", "Ingress", short_names=("ing",), status=True, tracks_generation=True
    ),
    _builtin("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, tracks_generation=True),
)


@lru_cache(maxsize=8)
def load_crds(directory: Path = CRD_DIR) -> tuple[ResourceType, ...]:
    """Every CRD in `directory`, with only its served versions (storage version first).

    Cached: parsing the YAML costs more than starting a server, and the schemas are only ever read."""
    types = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=_Loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            types.append(crd_to_type(doc))
    return tuple(types)


def crd_to_type(crd: dict) -> ResourceType:
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec["versions"] if v.get("served")]
    served.sort(key=lambda v: not v.get("storage"))
    schemas = {v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in served}
    return ResourceType(
        group=spec["group"],
        plural=names["plural"],
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        builtin=False,
        versions=tuple(v["name"] for v in served),
        singular=names.get("singular", names["kind"].lower()),
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        schemas=schemas,
        has_status_subresource=any("status" in (v.get("subresources") or {}) for v in served),
        tracks_generation=True,
    )


class Registry:
    """Looks resource types up by (group, version, plural); knows which groups exist for discovery."""

    def __init__(self, crds: Iterable[ResourceType], crd_groups: Iterable[str]):
        self._all_crds = list(crds)
        self.set_crd_groups(crd_groups)

    def set_crd_groups(self, crd_groups: Iterable[str]) -> None:
        groups = frozenset(crd_groups)
        self.crd_groups = groups
        self.types = list(BUILTINS) + [t for t in self._all_crds if t.group in groups]
        self._by_path = {(t.group, v, t.plural): t for t in self.types for v in t.versions}

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for t in self.types:
            if t.group == group and t.kind == kind and version in t.versions:
                return t
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Group -> served versions, preferred (storage) first; core omitted."""
        out: dict[str, list[str]] = {}
        for t in self.types:
            if not t.group:
                continue
            versions = out.setdefault(t.group, [])
            for v in t.versions:
                if v not in versions:
                    versions.append(v)
        return out

    def types_in(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and version in t.versions]
