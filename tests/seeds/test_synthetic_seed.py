from collections import Counter

from kubernetes.client import V1Pod

from lab.seeds.loader import load_seed
from lab.synthetic import generate

from .helpers import of_kind


def test_it_builds_about_a_thousand_services_and_five_thousand_pods(synthetic):
    kinds = Counter(o["kind"] for o in synthetic.objects)
    app_services = kinds["Service"] - 5  # default/kubernetes and the four OSM services
    assert app_services == 1000
    assert 4500 <= kinds["Pod"] <= 5500
    namespaces = {o["metadata"]["namespace"] for o in of_kind(synthetic.objects, "Service")}
    assert len(namespaces) >= 10
    assert kinds["TrafficSplit"] == 100


def test_it_meshes_exactly_the_pods_the_model_says(synthetic, model):
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in of_kind(synthetic.objects, "Pod")}
    for mp in model.pods:
        pod = pods[(mp.namespace, mp.name)]
        assert pod["metadata"]["labels"].get("osm-proxy-uuid") == mp.proxy_uuid
        assert ("envoy" in [c["name"] for c in pod["spec"]["containers"]]) is mp.meshed
        assert pod["spec"]["nodeName"] == mp.node and pod["status"]["podIP"] == mp.ip
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
        assert ready is mp.ready
    assert any(not p.meshed for p in model.pods if p.namespace != "legacy")  # opted-out workloads
    assert not any(p.meshed for p in model.pods if p.namespace == "legacy")
    assert any(not p.ready for p in model.pods)


def test_it_keeps_one_namespace_out_of_the_mesh(synthetic):
    monitored = [
        n
        for n in of_kind(synthetic.objects, "Namespace")
        if "openservicemesh.io/monitored-by" in n["metadata"].get("labels", {})
    ]
    legacy = [n for n in of_kind(synthetic.objects, "Namespace") if n["metadata"]["name"] == "legacy"]
    assert legacy and legacy[0] not in monitored
    assert len(monitored) >= 10


def test_it_only_adds_prometheus_annotations_where_metrics_are_enabled(synthetic, model):
    metrics = {n.name: n.metrics for n in model.namespaces}
    for pod in of_kind(synthetic.objects, "Pod"):
        meta = pod["metadata"]
        if meta["namespace"] in metrics:
            scraped = meta.get("annotations", {}).get("prometheus.io/port") == "15010"
            assert scraped is (metrics[meta["namespace"]] and "osm-proxy-uuid" in meta["labels"])
    assert not all(metrics.values())


def test_it_models_traffic_for_the_metrics_side(model):
    assert model.edges
    for edge in model.edges[:200]:
        shares = model.backend_shares(edge)
        assert abs(sum(share for _, share in shares) - 1) < 1e-9
        assert 0 <= edge.error_ratio <= 1 and edge.rps > 0
        assert edge.latency.p50_ms <= edge.latency.p95_ms <= edge.latency.p99_ms
    split = model.splits[0]
    backend = model.service(split.namespace, split.backends[0].service)
    assert model.envoy_cluster_name(backend, backend.ports[0]) == f"{split.namespace}/{backend.name}|8080"
    assert any(not e.allowed for e in model.edges)


def test_it_is_the_same_model_for_the_same_seed():
    assert generate(services=200, random_seed=3) == generate(services=200, random_seed=3)
    assert generate(services=200, random_seed=3) != generate(services=200, random_seed=4)


def test_it_carries_hostile_strings_only_where_kubernetes_allows_them(synthetic):
    hostile = [o for o in synthetic.objects if "<script>" in str(o["metadata"].get("annotations", {}))]
    assert hostile
    for obj in synthetic.objects:
        for value in obj["metadata"].get("labels", {}).values():
            assert len(value) <= 63 and all(c.isalnum() or c in "-_." for c in value)


def test_it_deserializes_pods_with_the_official_client(synthetic):
    for pod in of_kind(synthetic.objects, "Pod")[:300]:
        assert V1Pod.from_dict(pod).metadata.name == pod["metadata"]["name"]


def test_it_scales_down_to_a_tiny_mesh():
    seed = load_seed("synthetic", services=3)
    assert len(of_kind(seed.objects, "TrafficSplit")) == 1
