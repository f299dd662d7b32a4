import pytest

from lab.seeds.controllers import BUILTIN_GROUPS, expand
from lab.seeds.loader import load_seed

from .helpers import crd_schemas, of_kind, one, schema_errors


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


@pytest.mark.parametrize("seed_name", ["bookstore", "synthetic"])
def test_it_points_endpoints_at_the_ready_pods_the_selector_matches(seed_name, bookstore, synthetic):
    seed = bookstore if seed_name == "bookstore" else synthetic
    pods_by_ns: dict[str, list[dict]] = {}
    for pod in of_kind(seed.objects, "Pod"):
        pods_by_ns.setdefault(pod["metadata"]["namespace"], []).append(pod)
    endpoints = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in of_kind(seed.objects, "Endpoints")}
    slices: dict[tuple[str, str], list[dict]] = {}
    for s in of_kind(seed.objects, "EndpointSlice"):
        slices.setdefault(
            (s["metadata"]["namespace"], s["metadata"]["labels"]["kubernetes.io/service-name"]), []
        ).append(s)
    checked = 0
    for svc in of_kind(seed.objects, "Service"):
        selector = svc["spec"].get("selector")
        if not selector:
            continue
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        matching = [
            p
            for p in pods_by_ns.get(key[0], [])
            if selector.items() <= p["metadata"]["labels"].items() and p["status"].get("podIP")
        ]
        ready = {p["metadata"]["name"] for p in matching if _ready(p)}
        not_ready = {p["metadata"]["name"] for p in matching if not _ready(p)}
        subsets = endpoints[key].get("subsets", [])
        assert {a["targetRef"]["name"] for s in subsets for a in s.get("addresses", [])} == ready
        assert {a["targetRef"]["name"] for s in subsets for a in s.get("notReadyAddresses", [])} == not_ready
        eps = [e for s in slices[key] for e in s["endpoints"]]
        assert {e["targetRef"]["name"] for e in eps if e["conditions"]["ready"]} == ready
        assert {e["targetRef"]["name"] for e in eps if not e["conditions"]["ready"]} == not_ready
        for s in slices[key]:
            assert s["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
        checked += 1
    assert checked > 5


@pytest.mark.parametrize("seed_name", ["bookstore", "synthetic"])
def test_it_writes_custom_resources_the_crds_accept(seed_name, bookstore, synthetic):
    seed = bookstore if seed_name == "bookstore" else synthetic
    schemas = crd_schemas()
    custom = [
        o
        for o in seed.objects
        if "/" in o["apiVersion"]
        and o["apiVersion"].split("/")[0].count(".") >= 1
        and o["apiVersion"].split("/")[0] not in BUILTIN_GROUPS  # discovery.k8s.io, networking.k8s.io
    ]
    assert custom
    for obj in custom:
        group, version = obj["apiVersion"].split("/")
        schema = schemas[(group, version, obj["kind"])]
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        assert schema_errors(body, schema) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_it_builds_identical_seeds_on_every_load(bookstore):
    assert load_seed("bookstore") == bookstore
    assert load_seed("synthetic", services=60) == load_seed("synthetic", services=60)
    assert load_seed("synthetic", services=60, random_seed=8) != load_seed("synthetic", services=60)


def test_it_rejects_unknown_names_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="unknown seed"):
        load_seed("bookshop")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_seed(str(bad))
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ValueError, match="not a Kubernetes object"):
        load_seed(str(scalar))


def test_it_expands_a_yaml_file_like_kubectl_apply(tmp_path):
    manifest = tmp_path / "web.yaml"
    manifest.write_text(
        """
apiVersion: v1
kind: Namespace
metadata:
  name: web
  labels: {openservicemesh.io/monitored-by: osm}
  annotations: {openservicemesh.io/sidecar-injection: enabled}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {openservicemesh.io/sidecar-injection: disabled}
    spec:
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: meshed, namespace: web}
spec:
  selector: {matchLabels: {app: meshed}}
  template:
    metadata: {labels: {app: meshed}}
    spec:
      containers: [{name: meshed, image: nginx}]
"""
    )
    seed = load_seed(str(manifest))
    assert seed.name == "web"
    pods = of_kind(seed.objects, "Pod", "web")
    assert len(pods) == 4
    web = [p for p in pods if p["metadata"]["labels"]["app"] == "web"]
    assert all("osm-proxy-uuid" not in p["metadata"]["labels"] for p in web)  # the pod annotation opts out
    meshed = [p for p in pods if p["metadata"]["labels"]["app"] == "meshed"]
    assert "osm-proxy-uuid" in meshed[0]["metadata"]["labels"]
    assert "prometheus.io/scrape" not in meshed[0]["metadata"].get("annotations", {})  # metrics not enabled
    endpoints = one(seed.objects, "Endpoints", "web", "web")
    assert endpoints["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert len(endpoints["subsets"][0]["addresses"]) == 3
    assert of_kind(seed.objects, "Service", "default")  # the base cluster is there too


def test_it_refuses_objects_in_a_missing_namespace():
    with pytest.raises(ValueError, match='namespaces "nowhere" not found'):
        expand([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "nowhere"}}])


def test_it_drops_custom_resources_of_groups_the_cluster_lacks():
    seed = load_seed("bookstore", crd_groups=frozenset({"config.openservicemesh.io"}))
    assert not of_kind(seed.objects, "TrafficSplit")
    assert of_kind(seed.objects, "MeshConfig")
    assert seed.crd_groups == frozenset({"config.openservicemesh.io"})
