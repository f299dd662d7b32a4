"""Each check code fires on a seed that breaks its rule and stays quiet on one that keeps it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.policies.checks import CATALOG, aks_osm_version, run_checks, weight_problem
from tests.helpers import flagger_canary

from .conftest import find, of_kind

AKS_CODES = {"MB-AKS-001", "MB-AKS-002", "MB-AKS-003", "MB-AKS-004"}  # fire on the bookstore seed as it is


def _split(objects):
    return find(objects, "TrafficSplit", "bookstore", "bookstore-split")


def _set_weights(*backends):
    def edit(objects):
        _split(objects)["spec"]["backends"] = [{"service": s, "weight": w} for s, w in backends]

    return edit


def _second_split(objects):
    objects.append(
        {
            "apiVersion": "split.smi-spec.io/v1alpha2",
            "kind": "TrafficSplit",
            "metadata": {"name": "bookstore-split-2", "namespace": "bookstore"},
            "spec": {
                "service": "bookstore.bookstore.svc.cluster.local",
                "backends": [{"service": "bookstore-v2", "weight": 1}],
            },
        }
    )


def _missing_backend(objects):
    _split(objects)["spec"]["backends"].append({"service": "bookstore-v3", "weight": 0})


def _backend_without_root_port(objects):
    find(objects, "Service", "bookstore", "bookstore-v1")["spec"]["ports"][0]["port"] = 8080


def _root_selector_misses_backend(objects):
    find(objects, "Service", "bookstore", "bookstore")["spec"]["selector"] = {"app": "bookstore", "version": "v2"}


def _flagger_canary(objects):
    _split(objects)["metadata"]["name"] = "bookstore"  # Flagger names the split after the apex service
    objects.append(flagger_canary())


def _target(objects):
    return find(objects, "TrafficTarget", "bookstore", "bookstore")


def _missing_source_account(objects):
    _target(objects)["spec"]["sources"].append({"kind": "ServiceAccount", "name": "bookbuyr", "namespace": "bookbuyer"})


def _missing_route_group(objects):
    _target(objects)["spec"]["rules"][0]["name"] = "bookstore-routes-gone"


def _namespace_mismatch(objects):
    _target(objects)["spec"]["destination"]["namespace"] = "bookwarehouse"


def _permissive(objects):
    find(objects, "MeshConfig", "osm-system", "osm-mesh-config")["spec"]["traffic"][
        "enablePermissiveTrafficPolicyMode"
    ] = True


def _pod_without_sidecar(objects):
    _pod_without_sidecar_edit(next(p for p in of_kind(objects, "Pod") if p["metadata"]["namespace"] == "bookthief"))


def _pod_without_sidecar_edit(pod):
    pod["metadata"]["labels"].pop("osm-proxy-uuid", None)
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "envoy"]
    pod["spec"]["initContainers"] = [c for c in pod["spec"].get("initContainers", []) if c["name"] != "osm-init"]


def _backend_pods(objects, version):
    return [
        p
        for p in of_kind(objects, "Pod")
        if p["metadata"]["namespace"] == "bookstore" and p["metadata"]["labels"].get("version") == version
    ]


def _backend_opted_out(objects):
    """bookstore-v1's pods opted out of injection: MB-MESH-001 skips them, but they back the split."""
    for pod in _backend_pods(objects, "v1"):
        pod["metadata"].setdefault("annotations", {})["openservicemesh.io/sidecar-injection"] = "disabled"
        _pod_without_sidecar_edit(pod)


def _backend_not_ready(objects):
    for pod in _backend_pods(objects, "v1"):
        pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]


def _no_control_plane(objects):
    """A mesh whose control plane is gone (or never installed): no osm-controller, no MeshConfig."""
    objects[:] = [
        o
        for o in objects
        if o.get("kind") != "MeshConfig"
        and not (o.get("kind") in ("Deployment", "ReplicaSet", "Pod") and "osm-controller" in o["metadata"]["name"])
    ]


def _osm_version(version):
    def edit(objects):
        find(objects, "Deployment", "osm-system", "osm-controller")["metadata"]["labels"][
            "app.kubernetes.io/version"
        ] = version

    return edit


def _exclusions(*ranges):
    def edit(objects):
        traffic = find(objects, "MeshConfig", "osm-system", "osm-mesh-config")["spec"]["traffic"]
        traffic["outboundIPRangeExclusionList"] = list(ranges)

    return edit


def _windows_node(objects):
    node = of_kind(objects, "Node")[1]
    node["metadata"]["labels"]["kubernetes.io/os"] = "windows"
    node["status"]["nodeInfo"]["operatingSystem"] = "windows"


def _not_aks(objects):
    for node in of_kind(objects, "Node"):
        node["metadata"]["labels"] = {
            k: v for k, v in node["metadata"]["labels"].items() if not k.startswith("kubernetes.azure.com/")
        }


def _ingress_backend(objects, name="bookstore-http"):
    return find(objects, "IngressBackend", "bookstore", name)["spec"]


def _backend_edit(**fields):
    def edit(objects):
        backend = _ingress_backend(objects)["backends"][0]
        if "name" in fields:
            backend["name"] = fields["name"]
        backend["port"].update({k: v for k, v in fields.items() if k in ("number", "protocol")})

    return edit


def _backend_port_with_app_protocol_tcp(objects):
    find(objects, "Service", "bookstore", "bookstore")["spec"]["ports"][0]["appProtocol"] = "tcp"


def _no_ingress_backend(objects):
    objects.remove(find(objects, "IngressBackend", "bookstore", "bookstore-http"))


def _missing_ingress_source(objects):
    _ingress_backend(objects)["sources"][0]["name"] = "nginx-controller"


def _feature_flag(name, value):
    def edit(objects):
        find(objects, "MeshConfig", "osm-system", "osm-mesh-config")["spec"]["featureFlags"][name] = value

    return edit


def _egress_match(name, api_group="specs.smi-spec.io/v1alpha4"):
    def edit(objects):
        find(objects, "Egress", "bookbuyer", "bookbuyer-external")["spec"]["matches"] = [
            {"apiGroup": api_group, "kind": "HTTPRouteGroup", "name": name}
        ]

    return edit


def _egress_match_that_exists(objects):
    _egress_match("books-get")(objects)
    objects.append(
        {
            "apiVersion": "specs.smi-spec.io/v1alpha4",
            "kind": "HTTPRouteGroup",
            "metadata": {"name": "books-get", "namespace": "bookbuyer"},
            "spec": {"matches": [{"name": "get", "pathRegex": "/books.*", "methods": ["GET"]}]},
        }
    )


def _upstream_host(host):
    def edit(objects):
        find(objects, "UpstreamTrafficSetting", "bookstore", "bookstore-rate-limit")["spec"]["host"] = host

    return edit


def _second_upstream_setting(objects):
    objects.append(
        {
            "apiVersion": "policy.openservicemesh.io/v1alpha1",
            "kind": "UpstreamTrafficSetting",
            "metadata": {"name": "bookstore-circuit-breaker", "namespace": "bookstore"},
            "spec": {
                "host": "bookstore.bookstore.svc.cluster.local",
                "connectionSettings": {"tcp": {"maxConnections": 1}},
            },
        }
    )


def _retry_to_missing_service(objects):
    find(objects, "Retry", "bookbuyer", "bookbuyer-to-bookstore")["spec"]["destinations"][0]["name"] = "bookstre"


def _root_certificate(state, since):
    def edit(objects):
        mrc = find(objects, "MeshRootCertificate", "osm-system", "osm-mesh-root-certificate")
        mrc["status"] = {
            "state": state,
            "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
            ],
        }

    return edit


NOW = datetime.now(UTC)
ALL_EXCLUDED = _exclusions("169.254.0.0/16", "168.63.129.16/32", "203.0.113.10/32")

# code: (an edit of the bookstore seed that breaks the rule, an edit that keeps it (None: the seed as it is))
CASES = {
    "MB-SPLIT-001": (_second_split, None),
    "MB-SPLIT-002": (_missing_backend, None),
    "MB-SPLIT-003": (_backend_without_root_port, None),
    "MB-SPLIT-004": (_set_weights(("bookstore-v1", -1), ("bookstore-v2", 2)), None),
    "MB-SPLIT-005": (_set_weights(("bookstore-v1", 33.5), ("bookstore-v2", 66.5)), _set_weights(("bookstore-v1", 1))),
    "MB-SPLIT-006": (
        _set_weights(("bookstore-v1", 0), ("bookstore-v2", 0)),
        _set_weights(("bookstore-v1", 0), ("bookstore-v2", 1)),
    ),
    "MB-SPLIT-007": (_root_selector_misses_backend, None),
    "MB-SPLIT-008": (_flagger_canary, None),
    "MB-SPLIT-009": (_backend_opted_out, None),
    "MB-SPLIT-010": (_backend_not_ready, None),
    "MB-ACCESS-001": (_missing_source_account, None),
    "MB-ACCESS-002": (_missing_route_group, None),
    "MB-ACCESS-003": (_namespace_mismatch, None),
    "MB-ACCESS-004": (_permissive, None),
    "MB-MESH-001": (_pod_without_sidecar, None),
    "MB-MESH-002": (_no_control_plane, None),
    "MB-AKS-001": (None, _osm_version("v1.2.5")),
    "MB-AKS-002": (_exclusions("168.63.129.16/32", "203.0.113.10/32"), ALL_EXCLUDED),
    "MB-AKS-003": (_exclusions("169.254.169.254/32", "203.0.113.10/32"), ALL_EXCLUDED),
    "MB-AKS-004": (_exclusions("169.254.169.254/32", "168.63.129.16/32"), ALL_EXCLUDED),
    "MB-AKS-005": (_windows_node, None),
    "MB-INGRESS-001": (_backend_edit(name="bookstore-v3"), None),
    "MB-INGRESS-002": (_backend_edit(number=80), None),
    "MB-INGRESS-003": (_backend_edit(protocol="grpc"), _backend_edit(protocol="HTTP")),
    "MB-INGRESS-004": (_no_ingress_backend, None),
    "MB-INGRESS-005": (_missing_ingress_source, None),
    "MB-EGRESS-001": (_feature_flag("enableEgressPolicy", False), None),
    "MB-EGRESS-002": (_egress_match("books-get"), _egress_match_that_exists),
    "MB-UPSTREAM-001": (_upstream_host("bookstore.bookstore"), None),
    "MB-UPSTREAM-002": (_second_upstream_setting, None),
    "MB-RETRY-001": (_feature_flag("enableRetryPolicy", False), None),
    "MB-RETRY-002": (_retry_to_missing_service, None),
    "MB-CERT-001": (
        _root_certificate("issuingRollout", NOW - timedelta(days=2)),
        _root_certificate("issuingRollout", NOW - timedelta(minutes=5)),
    ),
}


def test_it_has_a_case_for_every_code_in_the_catalog():
    assert set(CASES) == set(CATALOG)


@pytest.mark.parametrize("code", sorted(CASES))
def test_it_fires_each_check_on_a_seed_that_breaks_its_rule(mesh, code):
    findings = [f for f in run_checks(mesh(CASES[code][0])) if f.code == code]

    assert findings, code
    for f in findings:
        assert f.objects and f.fix and f.message and f.severity in {"error", "warning", "info"}


@pytest.mark.parametrize("code", sorted(CASES))
def test_it_stays_quiet_when_the_rule_holds(mesh, code):
    codes = {f.code for f in run_checks(mesh(CASES[code][1]))}

    assert code not in codes


def test_it_names_the_objects_and_the_fix(mesh):
    findings = {f.code: f for f in run_checks(mesh(_second_split))}

    dup = findings["MB-SPLIT-001"]
    assert dup.severity == "error"
    assert "bookstore-split, bookstore-split-2" in dup.message
    assert dup.concerns("TrafficSplit", "bookstore", "bookstore-split-2")
    assert dup.fix.startswith("Keep one TrafficSplit per root")


def test_it_fires_only_the_aks_checks_on_the_bookstore_demo(mesh):
    assert {f.code for f in run_checks(mesh())} == AKS_CODES


def test_it_skips_the_aks_checks_when_the_cluster_is_not_aks(mesh):
    codes = {f.code for f in run_checks(mesh(lambda objects: (_not_aks(objects), _windows_node(objects))))}

    assert not {c for c in codes if c.startswith("MB-AKS-")}


def test_it_recognises_the_aks_add_on_by_its_control_plane_in_kube_system(mesh):
    def edit(objects):
        _not_aks(objects)
        taken = {(o["kind"], o["metadata"]["name"]) for o in objects if o["metadata"].get("namespace") == "kube-system"}
        for obj in list(objects):
            if obj["metadata"].get("namespace") == "osm-system":
                if (obj["kind"], obj["metadata"]["name"]) in taken:
                    objects.remove(obj)
                obj["metadata"]["namespace"] = "kube-system"

    assert {f.code for f in run_checks(mesh(edit))} >= AKS_CODES


def test_it_reads_the_add_on_version_table():
    assert aks_osm_version("v1.30.4") == "1.2.5"
    assert aks_osm_version("v1.24.0") == "1.2.5"
    assert aks_osm_version("v1.23.5") == "1.1.3"
    assert aks_osm_version("v1.23.4") == "1.0.0"
    assert aks_osm_version("garbage") == ""


def test_it_judges_weights_the_way_osm_uses_them():
    assert weight_problem(0) == weight_problem(100) == ""
    assert weight_problem(-1).startswith("negative")
    assert weight_problem(0.5).startswith("not a whole number")
    assert weight_problem("50") == weight_problem(True) == "not a number"


def test_it_says_what_it_looked_for_when_there_is_no_control_plane(client, viewer, mesh):
    cluster = mesh(_no_control_plane)
    (finding,) = [f for f in run_checks(cluster) if f.code == "MB-MESH-002"]
    assert finding.message.startswith("no Deployment labelled app=osm-controller and no MeshConfig osm-mesh-config")
    assert "checks that could not run: MB-ACCESS-004, MB-AKS-001" in finding.message
    client.force_login(viewer)
    page = client.get("/mesh/").content.decode()
    assert "no OSM control plane found (looked for a Deployment labelled app=osm-controller in every namespace" in page
    assert "not set" not in page  # no MeshConfig: no list of settings as if one existed


@pytest.mark.parametrize(
    "edit, words",
    [
        (_backend_port_with_app_protocol_tcp, "appProtocol tcp, which OSM serves as TCP"),
        (_upstream_host("bookstore.bookbuyer.svc.cluster.local"), "names a Service of namespace bookbuyer"),
        (_upstream_host("bookstre.bookstore.svc.cluster.local"), "bookstore/bookstre, which does not exist"),
        (_egress_match("books-get", "specs.smi-spec.io/v1alpha3"), "names apiGroup specs.smi-spec.io/v1alpha3"),
    ],
)
def test_it_says_which_rule_of_a_check_the_object_breaks(mesh, edit, words):
    assert any(words in f.message for f in run_checks(mesh(edit))), words


def test_it_checks_the_ingress_backend_port_against_the_target_port_not_the_service_port(mesh):
    def edit(objects):
        port = find(objects, "Service", "bookstore", "bookstore")["spec"]["ports"][0]
        port["port"], port["targetPort"] = 80, 14001  # the IngressBackend keeps 14001: the target port

    codes = {f.code for f in run_checks(mesh(edit))}
    assert not codes & {"MB-INGRESS-002", "MB-INGRESS-004"}


def test_it_skips_pods_of_a_namespace_added_without_sidecar_injection(mesh):
    """ingress-nginx as `osm namespace add --disable-sidecar-injection` leaves it: monitored, no sidecar, on purpose."""
    cluster = mesh()
    assert not [f for f in run_checks(cluster) if f.code == "MB-MESH-001"]
