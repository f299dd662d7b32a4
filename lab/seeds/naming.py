"""Deterministic names and identifiers for seeded objects.

Everything a real cluster would make random (uids, pod-name suffixes, pod-template hashes, proxy uuids, container ids)
is derived here from a hash of the seed's random seed and the object's identity, so two loads of a seed are
identical and the synthetic mesh model (lab/synthetic.py) can compute the same pod names the controller
emulation will produce.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid

# The alphabet Kubernetes uses for generated suffixes and pod-template hashes (apimachinery rand.SafeEncodeString):
# no vowels and no look-alike characters, so generated names never spell words.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# One fixed instant for every timestamp the seed writes itself (container start times, condition transitions),
# because "now" would make two loads differ. The stand-in sets creationTimestamp on create.
SEED_TIME = "2025-01-06T09:00:00Z"


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def stable_uuid(*parts: object) -> str:
    """A version-4-shaped UUID derived from `parts` (same parts, same UUID)."""
    return str(uuid.UUID(bytes=_digest(*parts)[:16], version=4))


def safe_suffix(length: int, *parts: object) -> str:
    digest = _digest(*parts)
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:length])


def hex_id(length: int, *parts: object) -> str:
    return _digest(*parts).hex()[:length]


def pod_template_hash(random_seed: int, namespace: str, deployment: str) -> str:
    """The 10-character `pod-template-hash` of a Deployment's (only) ReplicaSet."""
    return safe_suffix(10, random_seed, "pod-template-hash", namespace, deployment)


def replicaset_name(random_seed: int, namespace: str, deployment: str) -> str:
    return f"{deployment}-{pod_template_hash(random_seed, namespace, deployment)}"


def deployment_pod_name(random_seed: int, namespace: str, deployment: str, index: int) -> str:
    rs = replicaset_name(random_seed, namespace, deployment)
    return f"{rs}-{safe_suffix(5, random_seed, 'pod', namespace, rs, index)}"


def statefulset_pod_name(statefulset: str, ordinal: int) -> str:
    return f"{statefulset}-{ordinal}"


def proxy_uuid(random_seed: int, namespace: str, pod: str) -> str:
    """The `osm-proxy-uuid` label OSM's injector gives a meshed pod."""
    return stable_uuid(random_seed, "osm-proxy-uuid", namespace, pod)


def object_uid(random_seed: int, kind: str, namespace: str, name: str) -> str:
    return stable_uuid(random_seed, "uid", kind, namespace, name)


def node_pod_cidr(index: int) -> str:
    # AKS kubenet hands each node a /24 out of 10.244.0.0/16.
    return f"10.244.{index}.0/24"


def nth_host(cidr: str, n: int) -> str:
    return str(ipaddress.ip_network(cidr)[n])
