"""Seeds for the Kubernetes API stand-in: what a cluster holds before the first request.

A seed is plain data: the objects (as `kubectl apply -f` would create them, plus what the cluster's controllers and
OSM's injector would have produced, since the stand-in runs no controllers) and the set of CRD groups installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SMI_GROUPS = frozenset({"split.smi-spec.io", "access.smi-spec.io", "specs.smi-spec.io"})
OSM_GROUPS = frozenset({"config.openservicemesh.io", "policy.openservicemesh.io"})
FLAGGER_GROUPS = frozenset({"flagger.app"})
ALL_CRD_GROUPS = SMI_GROUPS | OSM_GROUPS | FLAGGER_GROUPS


@dataclass(frozen=True)
class Seed:
    name: str
    # Full objects (apiVersion, kind, metadata, spec/status), in apply order: namespaces before what lives in them.
    objects: list[dict] = field(default_factory=list)
    # CRD groups the simulated cluster has installed; paths of other CRD groups answer 404.
    crd_groups: frozenset[str] = ALL_CRD_GROUPS
    # gitVersion served at /version.
    kubernetes_version: str = "v1.30.4"
