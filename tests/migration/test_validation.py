"""Every generated object is accepted by a server-side dry run (`dryRun=All`) against the stand-in serving Istio's
CRDs (lab/kubeapi/crds/istio_*.yaml, istio/api v1.29.6), through the official client: namespaces as a merge patch of
their labels, Istio's custom resources as creates, workload patches as merge patches of the pod template.

The stand-in validates the CRDs' structural schemas (types, enums, required fields, pruning of unknown fields, which
this test also refuses); it evaluates none of their CEL rules (`x-kubernetes-validations`). So this test evaluates by
hand the CEL rules that reach a field the assistant generates, and lists the others as not applicable. The rules
of the kinds generated: AuthorizationPolicy (only one of selector, targetRef, targetRefs; matchLabels keys
without `*` and not empty; values without `*`; serviceAccounts not with principals or namespaces; targetRef(s) in
the same namespace), PeerAuthentication (portLevelMtls needs a selector, ports 1-65535, the same matchLabels rules),
VirtualService and DestinationRule (durations of at least 1 ms: retries, connect timeouts), ServiceEntry (hosts not
`*`, unique port numbers 1-65535, CIDR addresses only with resolution NONE or STATIC, no endpoints with NONE).
istiod's validating webhook, stricter still, is not reproduced. The Ingress patches are dry-run as merge patches.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from apps.migration import services
from lab.kubeapi.registry import CRD_DIR

PLURALS = {
    "AuthorizationPolicy": "authorizationpolicies",
    "PeerAuthentication": "peerauthentications",
    "VirtualService": "virtualservices",
    "DestinationRule": "destinationrules",
    "ServiceEntry": "serviceentries",
}
# An IngressBackend with an IPRange source (ipBlocks and a PeerAuthentication with portLevelMtls), an Egress to an
# IP range (a ServiceEntry with addresses), and one with an HTTPRouteGroup match (a VirtualService on its host).
EXTRA = [
    {
        "apiVersion": "policy.openservicemesh.io/v1alpha1",
        "kind": "IngressBackend",
        "metadata": {"name": "bookstore-v2-lb", "namespace": "bookstore"},
        "spec": {
            "backends": [{"name": "bookstore-v2", "port": {"number": 14001, "protocol": "http"}}],
            "sources": [{"kind": "IPRange", "name": "10.224.0.0/16"}],
        },
    },
    {
        "apiVersion": "policy.openservicemesh.io/v1alpha1",
        "kind": "Egress",
        "metadata": {"name": "bookbuyer-db", "namespace": "bookbuyer"},
        "spec": {
            "sources": [{"kind": "ServiceAccount", "name": "bookbuyer", "namespace": "bookbuyer"}],
            "ipAddresses": ["192.0.2.0/24"],
            "ports": [{"number": 5432, "protocol": "tcp"}],
        },
    },
    {
        "apiVersion": "policy.openservicemesh.io/v1alpha1",
        "kind": "Egress",
        "metadata": {"name": "bookbuyer-catalog", "namespace": "bookbuyer"},
        "spec": {
            "sources": [{"kind": "ServiceAccount", "name": "bookbuyer", "namespace": "bookbuyer"}],
            "hosts": ["catalog.example.com"],
            "ports": [{"number": 80, "protocol": "http"}],
            "matches": [{"apiGroup": "specs.smi-spec.io/v1alpha4", "kind": "HTTPRouteGroup", "name": "catalog-get"}],
        },
    },
    {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "catalog-get", "namespace": "bookbuyer"},
        "spec": {"matches": [{"name": "get", "pathRegex": "/catalog/.*", "methods": ["GET"]}]},
    },
]


def _edit(objects: list[dict]) -> None:
    """A pod that opts out, interception exclusions in the MeshConfig, the 50/50 split, `EXTRA`."""
    for obj in objects:
        meta = obj.get("metadata") or {}
        if (
            obj["kind"] == "Pod"
            and meta.get("namespace") == "bookwarehouse"
            and "bookwarehouse" in meta.get("name", "")
        ):
            meta.setdefault("annotations", {})["openservicemesh.io/sidecar-injection"] = "disabled"
        if obj["kind"] == "MeshConfig":
            traffic = obj["spec"]["traffic"]
            traffic["outboundIPRangeExclusionList"] = ["169.254.169.254/32", "168.63.129.16/32"]
            traffic["inboundPortExclusionList"] = [9901]
        if obj["kind"] == "TrafficSplit":
            obj["spec"]["backends"] = [
                {"service": "bookstore-v1", "weight": 50},
                {"service": "bookstore-v2", "weight": 50},
            ]
    objects += EXTRA


@pytest.fixture
def bundle(collected):
    cluster, server = collected(_edit)
    migration = services.build(cluster, "asm-1-27")
    api = config.new_client_from_config(str(server.kubeconfig))
    return migration, api


def test_every_generated_object_passes_a_server_side_dry_run(bundle):
    migration, api = bundle
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    kinds = set()
    for manifest in migration.translation.manifests:
        body = manifest.body
        kinds.add(manifest.kind)
        if manifest.kind == "Namespace":
            answer = core.patch_namespace(
                manifest.name,
                {"metadata": body["metadata"]},
                dry_run="All",
                _content_type="application/merge-patch+json",
            )
            assert answer.metadata.labels["istio.io/rev"] == "asm-1-27"
            continue
        group, version = body["apiVersion"].split("/")
        answer = custom.create_namespaced_custom_object(
            group, version, manifest.namespace, PLURALS[manifest.kind], body, dry_run="All"
        )
        assert answer["spec"] == body["spec"], f"{manifest.ref}: the server pruned or defaulted fields"
        assert answer["metadata"]["labels"] == body["metadata"]["labels"]
    assert kinds == {"Namespace", *PLURALS}
    assert "bookbuyer/meshboard-egress-bookbuyer-catalog-catalog.example.com" in {
        f"{m.namespace}/{m.name}" for m in migration.translation.manifests if m.kind == "VirtualService"
    }
    # Nothing was stored: a dry run.
    assert not custom.list_cluster_custom_object("security.istio.io", "v1", "authorizationpolicies")["items"]


def test_every_workload_patch_passes_a_server_side_dry_run(bundle):
    migration, api = bundle
    apps = client.AppsV1Api(api)
    patches = migration.translation.patches
    assert {p.kind for p in patches} == {"Deployment", "StatefulSet"}
    optout = next(p for p in patches if p.name == "bookwarehouse")
    assert optout.labels == {"sidecar.istio.io/inject": "false"}
    for patch in patches:
        call = apps.patch_namespaced_deployment if patch.kind == "Deployment" else apps.patch_namespaced_stateful_set
        answer = call(
            patch.name, patch.namespace, patch.patch, dry_run="All", _content_type="application/merge-patch+json"
        )
        template = answer.spec.template.metadata
        for key, value in patch.labels.items():
            assert template.labels[key] == value
        for key, value in patch.annotations.items():
            assert template.annotations[key] == value
    controller = next(p for p in patches if p.name == "ingress-nginx-controller")
    assert controller.labels == {"istio.io/rev": "asm-1-27"}
    assert controller.annotations == {"traffic.sidecar.istio.io/includeInboundPorts": ""}
    mysql = next(p for p in patches if p.name == "mysql")
    assert mysql.annotations == {
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32,168.63.129.16/32",
        "traffic.sidecar.istio.io/excludeInboundPorts": "9901",
    }


def test_every_ingress_patch_passes_a_server_side_dry_run(bundle):
    migration, api = bundle
    networking = client.NetworkingV1Api(api)
    patches = migration.translation.object_patches
    assert {p.name for p in patches} == {"bookstore", "bookstore-mtls"}
    for patch in patches:
        answer = networking.patch_namespaced_ingress(
            patch.name, patch.namespace, patch.patch, dry_run="All", _content_type="application/merge-patch+json"
        )
        annotations = answer.metadata.annotations or {}
        for key, value in patch.patch["metadata"]["annotations"].items():
            assert annotations.get(key) == value  # set, or (null) removed
    mtls = next(p for p in patches if p.name == "bookstore-mtls")
    assert mtls.patch["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] is None


def test_the_dry_run_refuses_what_the_schema_forbids(bundle):
    """The stand-in really checks Istio's schema: a policy with a wrong action is refused."""
    _migration, api = bundle
    bad = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "bad", "namespace": "bookstore"},
        "spec": {"action": "PERMIT"},
    }
    with pytest.raises(client.ApiException) as caught:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "security.istio.io", "v1", "bookstore", "authorizationpolicies", bad, dry_run="All"
        )
    assert caught.value.status == 422


# -- the CEL rules, which the stand-in does not evaluate -----------------------------------------------------------


def _duration(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|us|ns|h|m|s)", text))


def _cidr(value: str) -> bool:
    return "/" in value


CEL = {
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1": lambda v: (
        sum(k in v for k in ("selector", "targetRef", "targetRefs")) <= 1
    ),
    'self.all(key, !key.contains("*"))': lambda v: all("*" not in k for k in v),
    "self.all(key, key.size() != 0)": lambda v: all(k != "" for k in v),
    '!self.contains("*")': lambda v: "*" not in v,
    "self.size() == 0": lambda v: len(v) == 0,
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? self.selector.matchLabels "
    ": {}).size() > 0) : true": lambda v: (
        "portLevelMtls" not in v or bool((v.get("selector") or {}).get("matchLabels"))
    ),
    "self.all(key, 0 < int(key) && int(key) <= 65535)": lambda v: all(0 < int(k) <= 65535 for k in v),
    "duration(self) >= duration('1ms')": lambda v: _duration(v) >= 0.001,
    "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&\n!has(self.notPrincipals) "
    "&& !has(self.namespaces) && !has(self.notNamespaces)) : true": lambda v: (
        not (
            ("serviceAccounts" in v or "notServiceAccounts" in v)
            and any(k in v for k in ("principals", "notPrincipals", "namespaces", "notNamespaces"))
        )
    ),
    # ServiceEntry
    "(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1": lambda v: (
        ("workloadSelector" in v) + ("endpoints" in v) <= 1
    ),
    '!((has(self.addresses) ? self.addresses : []).exists(k, k.contains("/")) && !((has(self.resolution) ? '
    'self.resolution : "NONE") in ["STATIC", "NONE"]))': lambda v: (
        not (any(_cidr(a) for a in v.get("addresses") or []) and v.get("resolution", "NONE") not in ("STATIC", "NONE"))
    ),
    '((has(self.resolution) ? self.resolution : "NONE") == "NONE") ? !has(self.endpoints) : true': lambda v: (
        v.get("resolution", "NONE") != "NONE" or "endpoints" not in v
    ),
    '((has(self.resolution) ? self.resolution : "") == "DNS_ROUND_ROBIN") ? ((has(self.endpoints) ? self.endpoints '
    ": []).size() <= 1) : true": lambda v: (
        v.get("resolution", "") != "DNS_ROUND_ROBIN" or len(v.get("endpoints") or []) <= 1
    ),
    'self != "*"': lambda v: v != "*",
    "self.all(l1, self.exists_one(l2, l1.number == l2.number))": lambda v: all(
        sum(1 for b in v if b.get("number") == a.get("number")) == 1 for a in v
    ),
    "0 < self && self <= 65535": lambda v: 0 < v <= 65535,
}


def _rules(schema: dict, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    found = [(path, r["rule"]) for r in schema.get("x-kubernetes-validations") or []]
    for key, sub in (schema.get("properties") or {}).items():
        found += _rules(sub, (*path, key))
    if isinstance(schema.get("items"), dict):
        found += _rules(schema["items"], (*path, "[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        found += _rules(schema["additionalProperties"], (*path, "{}"))
    return found


def _reach(value: object, path: tuple[str, ...]) -> list[object]:
    if not path:
        return [value]
    head, rest = path[0], path[1:]
    if head == "[]":
        return [v for item in value or [] for v in _reach(item, rest)] if isinstance(value, list) else []
    if head == "{}":
        return [v for item in (value or {}).values() for v in _reach(item, rest)] if isinstance(value, dict) else []
    return _reach(value[head], rest) if isinstance(value, dict) and head in value else []


def _crd_rules() -> dict[str, list[tuple[tuple[str, ...], str]]]:
    out = {}
    for path in sorted(Path(CRD_DIR).glob("istio_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        out[crd["spec"]["names"]["kind"]] = _rules(version["schema"]["openAPIV3Schema"])
    return out


def test_every_cel_rule_that_reaches_a_generated_field_holds(bundle):
    migration, _api = bundle
    rules = _crd_rules()
    assert set(rules) >= set(PLURALS)
    evaluated, not_applicable = set(), set()
    for manifest in migration.translation.manifests:
        if manifest.kind not in PLURALS:
            continue
        for path, rule in rules[manifest.kind]:
            values = _reach(manifest.body, path)
            if not values:
                not_applicable.add((manifest.kind, ".".join(path), rule))
                continue
            assert rule in CEL, f"{manifest.kind} {'.'.join(path)}: no Python reading of the CEL rule {rule!r}"
            for value in values:
                assert CEL[rule](value), f"{manifest.ref} breaks {rule!r} at {'.'.join(path)}"
            evaluated.add((manifest.kind, ".".join(path), rule))
    assert ("AuthorizationPolicy", "spec", next(iter(CEL))) in evaluated
    reached = {(kind, path) for kind, path, _rule in evaluated}
    assert {
        ("PeerAuthentication", "spec"),
        ("ServiceEntry", "spec"),
        ("ServiceEntry", "spec.ports"),
        ("DestinationRule", "spec.trafficPolicy.connectionPool.tcp.connectTimeout"),
        ("VirtualService", "spec.http.[].retries.perTryTimeout"),
        ("VirtualService", "spec.http.[].retries.backoff"),
    } <= reached
    assert any(kind == "VirtualService" for kind, _path, _rule in not_applicable)
