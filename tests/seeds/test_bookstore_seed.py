from collections import Counter

from kubernetes.client import (
    V1Deployment,
    V1Endpoints,
    V1EndpointSlice,
    V1Namespace,
    V1Node,
    V1Pod,
    V1ReplicaSet,
    V1Service,
    V1StatefulSet,
)

from lab.seeds.controllers import PROMETHEUS_ANNOTATIONS

from .helpers import of_kind, one

MODELS = {
    "Namespace": V1Namespace,
    "Node": V1Node,
    "Service": V1Service,
    "Pod": V1Pod,
    "Deployment": V1Deployment,
    "ReplicaSet": V1ReplicaSet,
    "StatefulSet": V1StatefulSet,
    "Endpoints": V1Endpoints,
    "EndpointSlice": V1EndpointSlice,
}
BOOK_NAMESPACES = ("bookstore", "bookbuyer", "bookthief", "bookwarehouse")


def test_it_has_the_demo_objects(bookstore):
    kinds = Counter(o["kind"] for o in bookstore.objects)
    assert kinds["Node"] == 2
    assert kinds["TrafficSplit"] == 1
    assert kinds["TrafficTarget"] == 4  # bookstore, bookstore-access-bookwarehouse, mysql, bookstore-v2
    assert kinds["HTTPRouteGroup"] == 2
    assert kinds["TCPRoute"] == 1
    assert kinds["MeshConfig"] == 1
    deployments = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(bookstore.objects, "Deployment")
    }
    assert {
        ("bookbuyer", "bookbuyer"),
        ("bookthief", "bookthief"),
        ("bookstore", "bookstore"),
        ("bookstore", "bookstore-v2"),
        ("bookwarehouse", "bookwarehouse"),
        ("osm-system", "osm-controller"),
    } <= deployments
    mysql = one(bookstore.objects, "Service", "bookwarehouse", "mysql")
    assert mysql["spec"]["clusterIP"] == "None"
    assert one(bookstore.objects, "Pod", "bookwarehouse", "mysql-0")["metadata"]["ownerReferences"][0]["kind"] == (
        "StatefulSet"
    )


def test_it_deserializes_every_builtin_with_the_official_client(bookstore):
    for obj in bookstore.objects:
        model = MODELS.get(obj["kind"])
        if model:
            assert model.from_dict(obj) is not None, obj["metadata"]["name"]


def test_it_applies_namespaces_before_what_lives_in_them(bookstore):
    seen = set()
    for obj in bookstore.objects:
        if obj["kind"] == "Namespace":
            seen.add(obj["metadata"]["name"])
        elif "namespace" in obj["metadata"]:
            assert obj["metadata"]["namespace"] in seen


def test_it_labels_the_book_namespaces_for_the_mesh(bookstore):
    for name in BOOK_NAMESPACES:
        meta = one(bookstore.objects, "Namespace", None, name)["metadata"]
        assert meta["labels"]["openservicemesh.io/monitored-by"] == "osm"
        assert meta["annotations"]["openservicemesh.io/sidecar-injection"] == "enabled"
        assert meta["annotations"]["openservicemesh.io/metrics"] == "enabled"


def test_it_injects_sidecars_only_into_book_namespaces(bookstore):
    for pod in of_kind(bookstore.objects, "Pod"):
        meta, spec = pod["metadata"], pod["spec"]
        meshed = meta["namespace"] in BOOK_NAMESPACES
        assert ("osm-proxy-uuid" in meta["labels"]) is meshed
        assert ("envoy" in [c["name"] for c in spec["containers"]]) is meshed
        assert ("osm-init" in [c["name"] for c in spec.get("initContainers", [])]) is meshed
        annotations = meta.get("annotations", {})
        if meshed:
            assert PROMETHEUS_ANNOTATIONS.items() <= annotations.items()
        else:
            assert annotations.get("prometheus.io/port") != "15010"


def test_it_gives_the_mysql_tcp_probe_to_osm_healthcheck(bookstore):
    pod = one(bookstore.objects, "Pod", "bookwarehouse", "mysql-0")
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["mysql", "envoy", "osm-healthcheck"]
    probe = pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["port"] == 15904 and probe["httpHeaders"] == [{"name": "Original-Tcp-Port", "value": "3306"}]


def test_it_splits_bookstore_all_to_v1(bookstore):
    split = one(bookstore.objects, "TrafficSplit", "bookstore", "bookstore-split")
    assert split["spec"]["service"] == "bookstore.bookstore"
    assert split["spec"]["backends"] == [{"service": "bookstore-v1", "weight": 100}]


def test_it_denies_bookthief_in_smi_mode(bookstore):
    mesh_config = one(bookstore.objects, "MeshConfig", "osm-system", "osm-mesh-config")
    assert mesh_config["apiVersion"] == "config.openservicemesh.io/v1alpha2"
    assert mesh_config["spec"]["traffic"]["enablePermissiveTrafficPolicyMode"] is False
    certificate = mesh_config["spec"]["certificate"]
    assert (certificate["serviceCertValidityDuration"], certificate["certKeyBitSize"]) == ("24h", 2048)
    target = one(bookstore.objects, "TrafficTarget", "bookstore", "bookstore")
    assert [s["name"] for s in target["spec"]["sources"]] == ["bookbuyer"]


def test_it_runs_osm_controller_as_the_chart_renders_it(bookstore):
    deploy = one(bookstore.objects, "Deployment", "osm-system", "osm-controller")
    labels = deploy["metadata"]["labels"]
    assert labels["app"] == "osm-controller"
    assert labels["meshName"] == "osm"
    assert labels["app.kubernetes.io/version"] == "v1.2.4"
    assert labels["app.kubernetes.io/name"] == "openservicemesh.io"
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--certificate-manager") + 1] == "tresor"
    assert args[args.index("--mesh-name") + 1] == "osm"
    assert args[args.index("--osm-namespace") + 1] == "osm-system"
    assert deploy["status"]["readyReplicas"] == 1


def test_it_serves_the_api_server_address_in_default_kubernetes(bookstore):
    svc = one(bookstore.objects, "Service", "default", "kubernetes")
    assert svc["spec"]["clusterIP"] == "10.0.0.1" and svc["spec"]["ports"][0]["port"] == 443
    endpoints = one(bookstore.objects, "Endpoints", "default", "kubernetes")
    assert endpoints["subsets"][0]["addresses"][0]["ip"]
    assert endpoints["subsets"][0]["ports"][0]["port"] == 443


def test_it_runs_on_linux_aks_nodes(bookstore):
    for node in of_kind(bookstore.objects, "Node"):
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/os"] == "linux"
        assert labels["kubernetes.azure.com/cluster"]
        assert labels["node.kubernetes.io/instance-type"]
        info = node["status"]["nodeInfo"]
        assert info["kubeletVersion"] == bookstore.kubernetes_version
        assert info["osImage"].startswith("Ubuntu")


def test_it_chains_deployment_replicaset_pod(bookstore):
    deploy = one(bookstore.objects, "Deployment", "bookstore", "bookstore-v2")
    rs = [
        r
        for r in of_kind(bookstore.objects, "ReplicaSet", "bookstore")
        if r["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]
    ]
    assert len(rs) == 1
    hash_ = rs[0]["metadata"]["labels"]["pod-template-hash"]
    assert rs[0]["metadata"]["name"] == f"bookstore-v2-{hash_}"
    pods = [
        p
        for p in of_kind(bookstore.objects, "Pod", "bookstore")
        if p["metadata"]["ownerReferences"][0]["uid"] == rs[0]["metadata"]["uid"]
    ]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["name"].startswith(rs[0]["metadata"]["name"] + "-")
    assert pod["spec"]["serviceAccountName"] == "bookstore-v2"
    assert pod["spec"]["nodeName"] in {n["metadata"]["name"] for n in of_kind(bookstore.objects, "Node")}
    assert pod["status"]["phase"] == "Running"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"


def test_it_admits_ingress_nginx_to_bookstore_as_osms_nginx_demo_does(bookstore):
    namespace = one(bookstore.objects, "Namespace", None, "ingress-nginx")["metadata"]
    assert namespace["labels"]["openservicemesh.io/monitored-by"] == "osm"  # OSM resolves the controller's endpoints
    assert namespace["annotations"]["openservicemesh.io/sidecar-injection"] == "disabled"
    controller = one(bookstore.objects, "Service", "ingress-nginx", "ingress-nginx-controller")
    assert [p["appProtocol"] for p in controller["spec"]["ports"]] == ["http", "https"]
    [pod] = of_kind(bookstore.objects, "Pod", "ingress-nginx")
    assert "envoy" not in [c["name"] for c in pod["spec"]["containers"]]
    assert one(bookstore.objects, "IngressClass", None, "nginx")["spec"]["controller"] == "k8s.io/ingress-nginx"
    ingress = one(bookstore.objects, "Ingress", "bookstore", "bookstore")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "bookstore",
        "port": {"number": 14001},
    }
    http = one(bookstore.objects, "IngressBackend", "bookstore", "bookstore-http")["spec"]
    assert http["backends"] == [{"name": "bookstore", "port": {"number": 14001, "protocol": "http"}}]
    assert http["sources"] == [{"kind": "Service", "namespace": "ingress-nginx", "name": "ingress-nginx-controller"}]
    mtls = one(bookstore.objects, "IngressBackend", "bookstore", "bookstore-mtls")["spec"]
    assert mtls["backends"][0]["port"]["protocol"] == "https"
    assert mtls["backends"][0]["tls"] == {"skipClientCertValidation": False}
    principal = {"kind": "AuthenticatedPrincipal", "name": "ingress-nginx.ingress-nginx.cluster.local"}
    assert principal in mtls["sources"]
    mesh_config = one(bookstore.objects, "MeshConfig", "osm-system", "osm-mesh-config")["spec"]
    assert mesh_config["certificate"]["ingressGateway"]["subjectAltNames"] == [principal["name"]]


def test_it_has_the_egress_rate_limit_retry_and_root_certificate_the_lab_mesh_reads(bookstore):
    egress = one(bookstore.objects, "Egress", "bookbuyer", "bookbuyer-external")["spec"]
    assert (egress["hosts"], egress["ports"]) == (["books.example.com"], [{"number": 80, "protocol": "http"}])
    setting = one(bookstore.objects, "UpstreamTrafficSetting", "bookstore", "bookstore-rate-limit")["spec"]
    assert setting["host"] == "bookstore.bookstore.svc.cluster.local"
    assert setting["httpRoutes"][0]["rateLimit"]["local"]["requests"] >= 1
    retry = one(bookstore.objects, "Retry", "bookbuyer", "bookbuyer-to-bookstore")["spec"]
    assert retry["destinations"] == [{"kind": "Service", "name": "bookstore", "namespace": "bookstore"}]
    mrc = one(bookstore.objects, "MeshRootCertificate", "osm-system", "osm-mesh-root-certificate")
    assert mrc["status"] == {"state": "active"}
    flags = one(bookstore.objects, "MeshConfig", "osm-system", "osm-mesh-config")["spec"]["featureFlags"]
    assert flags["enableEgressPolicy"] is True and flags["enableRetryPolicy"] is True
    controller = one(bookstore.objects, "Deployment", "osm-system", "osm-controller")
    assert "--enable-mesh-root-certificate=true" in controller["spec"]["template"]["spec"]["containers"][0]["args"]
