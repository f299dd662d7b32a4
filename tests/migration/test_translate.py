"""One test per row of the OSM → Istio mapping (shared/reference/istio-migration.md), with its exact, narrower,
broader and manual cases: what is generated and what the fidelity item says."""

from __future__ import annotations

from apps.migration.equivalence import check
from apps.migration.model import (
    PERMISSIVE,
    TCP,
    UNKNOWN,
    NamespaceInfo,
    ServiceInfo,
    SplitInfo,
    Target,
)
from apps.migration.regex import BROADER, EXACT, MANUAL, NARROWER
from apps.migration.translate import translate_mesh

from .builders import grants, group, http, mesh, tcp

AKS = Target("asm-1-27")


def items(translation, prefix: str = "") -> dict[str, object]:
    return {i.key: i for i in translation.items if i.key.startswith(prefix)}


def manifests(translation, kind: str) -> dict[str, dict]:
    return {f"{m.namespace}/{m.name}": m.body for m in translation.manifests if m.kind == kind}


def one(found: dict):
    assert len(found) == 1, found
    return next(iter(found.values()))


# -- namespaces and injection -----------------------------------------------------------------------------------


def test_namespace_with_injection_gets_the_revision_label_or_upstream_label():
    m = mesh([group("shop/web")])
    aks = translate_mesh(m, AKS)
    ns = one(manifests(aks, "Namespace"))
    assert ns["metadata"]["labels"] == {"istio.io/rev": "asm-1-27"}
    assert items(aks)["ns:shop"].level == EXACT
    upstream = translate_mesh(m, Target())
    assert one(manifests(upstream, "Namespace"))["metadata"]["labels"] == {"istio-injection": "enabled"}


def test_namespace_outside_the_mesh_gets_nothing():
    m = mesh(
        [group("shop/web"), group("legacy/app", meshed=False)],
        namespaces=[NamespaceInfo("shop", True, True, False, "osm"), NamespaceInfo("legacy", False, False, False)],
    )
    t = translate_mesh(m, AKS)
    assert "legacy" not in t.namespaces
    assert not [x for x in t.manifests if x.namespace == "legacy" or x.name == "legacy"]


def test_pod_opt_out_becomes_an_inject_false_label_and_is_broader_for_reachability():
    web = group("shop/web")
    legacy = group("shop/legacy", annotations={"openservicemesh.io/sidecar-injection": "disabled"}, meshed=False)
    t = translate_mesh(mesh([web, legacy]), AKS)
    patch = one({p.ref: p for p in t.patches})
    assert patch.patch == {"spec": {"template": {"metadata": {"labels": {"sidecar.istio.io/inject": "false"}}}}}
    assert items(t)["optout:shop/Deployment/legacy"].level == EXACT
    reach = items(t)["unmeshed-reach:shop/Deployment/legacy"]
    assert reach.level == BROADER and reach.example.startswith("GET / from")


def test_a_pod_without_a_sidecar_is_reached_alike_when_osm_passes_callers_through():
    """SMI mode with enableEgress and no TrafficTarget to the pod: OSM's sidecars pass their requests through in
    plaintext, as Istio's auto mTLS sends them; a TrafficTarget naming it makes its sources' sidecars speak mTLS."""
    egress = {"traffic": {"enablePermissiveTrafficPolicyMode": False, "enableEgress": True}}
    web = group("shop/web")
    legacy = group("shop/legacy", annotations={"openservicemesh.io/sidecar-injection": "disabled"}, meshed=False)
    t = translate_mesh(mesh([web, legacy], meshconfig=egress), AKS)
    assert items(t)["unmeshed-reach:shop/Deployment/legacy"].level == EXACT
    named = grants("shop/t", "shop/legacy", ["shop/web"], [http("r", "all")])
    t = translate_mesh(mesh([web, legacy], named, meshconfig=egress), AKS)
    reach = items(t)["unmeshed-reach:shop/Deployment/legacy"]
    assert reach.level == BROADER and reach.example.startswith("GET / from shop/web to shop/legacy")
    result = check(t)
    assert result.unexplained == [] and {str(d.request.source) for d in result.differences} == {"shop/web"}


def test_pod_opt_in_in_a_namespace_without_injection_becomes_a_revision_label():
    m = mesh(
        [group("shop/web", annotations={"openservicemesh.io/sidecar-injection": "enabled"})],
        namespaces=[NamespaceInfo("shop", True, False, False, "osm")],
    )
    t = translate_mesh(m, AKS)
    assert not manifests(t, "Namespace")
    assert one({p.ref: p for p in t.patches}).labels == {"istio.io/rev": "asm-1-27"}
    assert items(t)["optin:shop/Deployment/web"].level == EXACT


# -- mTLS and the policy mode -----------------------------------------------------------------------------------


def test_mtls_becomes_strict_peer_authentication():
    t = translate_mesh(mesh([group("shop/web")]), AKS)
    assert one(manifests(t, "PeerAuthentication"))["spec"] == {"mtls": {"mode": "STRICT"}}
    assert items(t)["mtls:shop"].level == EXACT


def test_permissive_mode_generates_no_authorization_policy():
    web = group("shop/web")
    m = mesh([web], grants("shop/t", "shop/web", ["shop/client"], [http("r", "all")]), mode=PERMISSIVE)
    t = translate_mesh(m, AKS)
    assert not manifests(t, "AuthorizationPolicy")
    assert items(t)["mode"].level == EXACT
    assert items(t)["tt:shop/t"].reason.startswith("Permissive mode ignores")


def test_smi_mode_adds_allow_nothing_per_namespace():
    t = translate_mesh(mesh([group("shop/web"), group("pay/api")]), AKS)
    nothing = {k: v for k, v in manifests(t, "AuthorizationPolicy").items() if k.endswith("meshboard-allow-nothing")}
    assert set(nothing) == {"shop/meshboard-allow-nothing", "pay/meshboard-allow-nothing"}
    assert all(v["spec"] == {} for v in nothing.values())
    assert items(t)["allow-nothing:shop"].level == EXACT


def test_unknown_mode_is_generated_as_smi_mode_and_flagged_manual():
    t = translate_mesh(mesh([group("shop/web")], mode=UNKNOWN), AKS)
    assert "shop/meshboard-allow-nothing" in manifests(t, "AuthorizationPolicy")
    assert items(t)["mode"].level == MANUAL


# -- TrafficTargets ---------------------------------------------------------------------------------------------


def test_traffic_target_becomes_allow_policy_with_selector_and_principals():
    m = mesh(
        [group("shop/web", labels={"app": "web", "version": "v1"}), group("shop/cart")],
        grants("shop/web-access", "shop/web", ["shop/cart", "front/ui"], [http("routes", "all")]),
    )
    t = translate_mesh(m, AKS)
    policy = manifests(t, "AuthorizationPolicy")["shop/meshboard-tt-web-access"]
    assert policy["spec"]["selector"] == {"matchLabels": {"app": "web", "version": "v1"}}
    assert policy["spec"]["action"] == "ALLOW"
    assert policy["spec"]["rules"] == [
        {"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/cart", "cluster.local/ns/front/sa/ui"]}}]}
    ]
    assert policy["metadata"]["labels"]["meshboard.io/generated-from"] == "TrafficTarget.web-access"
    assert policy["metadata"]["annotations"]["meshboard.io/generated-from"] == "TrafficTarget shop/web-access"
    assert one(items(t, "tt:shop/web-access:selector")).level == EXACT


def test_a_selector_that_also_picks_another_service_account_is_broader():
    twin = group("shop/other", labels={"app": "web"}, name="web-2")
    m = mesh(
        [group("shop/web", labels={"app": "web"}), twin],
        grants("shop/t", "shop/web", ["shop/cart"], [http("routes", "all")]),
    )
    t = translate_mesh(m, AKS)
    selector = one(items(t, "tt:shop/t:selector"))
    assert selector.level == BROADER
    assert "Deployment shop/web-2" in selector.reason
    result = check(t)
    assert result.broader and all(d.explained for d in result.differences)


def test_one_policy_per_workload_when_no_shared_label_separates_the_service_account():
    a = group("shop/web", labels={"app": "web", "track": "a"}, name="web-a")
    b = group("shop/web", labels={"app": "web", "track": "b"}, name="web-b")
    other = group("shop/other", labels={"app": "web", "track": "c"})
    t = translate_mesh(mesh([a, b, other], grants("shop/t", "shop/web", ["shop/cart"], [http("r", "all")])), AKS)
    names = sorted(k for k in manifests(t, "AuthorizationPolicy") if "tt-" in k)
    assert names == ["shop/meshboard-tt-t-web-a", "shop/meshboard-tt-t-web-b"]
    assert all(i.level == EXACT for i in items(t, "tt:shop/t:selector").values())


def test_a_destination_without_pods_or_labels_is_manual():
    t = translate_mesh(
        mesh([group("shop/cart")], grants("shop/t", "shop/ghost", ["shop/cart"], [http("r", "all")])), AKS
    )
    assert items(t)["tt:shop/t"].level == MANUAL
    unlabelled = group("shop/web", labels={})
    t = translate_mesh(mesh([unlabelled], grants("shop/t", "shop/web", ["shop/cart"], [http("r", "all")])), AKS)
    assert one(items(t, "tt:shop/t:selector")).level == MANUAL
    assert "shop/meshboard-tt-t" not in manifests(t, "AuthorizationPolicy")


def test_ignored_traffic_target_generates_nothing():
    m = mesh([group("shop/web")], grants("shop/t", "shop/web", ["a/b"], [http("r", "all")], ignored="namespace"))
    t = translate_mesh(m, AKS)
    assert items(t)["tt:shop/t"].level == EXACT and "ignores it" in items(t)["tt:shop/t"].reason
    assert "shop/meshboard-tt-t" not in manifests(t, "AuthorizationPolicy")


# -- HTTPRouteGroup matches ---------------------------------------------------------------------------------------


def rule_of(t, name: str = "shop/meshboard-tt-t", index: int = 0) -> dict:
    return manifests(t, "AuthorizationPolicy")[name]["spec"]["rules"][index]


def http_mesh(route):
    return mesh([group("shop/web")], grants("shop/t", "shop/web", ["shop/cart"], [route]))


def test_methods_copy_exactly_and_a_wildcard_leaves_them_out():
    t = translate_mesh(http_mesh(http("r", "m", "/x", ("GET", "POST"))), AKS)
    assert rule_of(t)["to"] == [{"operation": {"methods": ["GET", "POST"], "paths": ["/x"]}}]
    assert items(t)["tt:shop/t:route:shop/HTTPRouteGroup/r/m:methods"].level == EXACT
    t = translate_mesh(http_mesh(http("r", "m", "/x", ("*",))), AKS)
    assert rule_of(t)["to"] == [{"operation": {"paths": ["/x"]}}]


def test_path_regex_rows_exact_narrower_manual():
    exact = translate_mesh(http_mesh(http("r", "m", "/api/.*")), AKS)
    assert rule_of(exact)["to"][0]["operation"]["paths"] == ["/api/*"]
    assert items(exact)["tt:shop/t:route:shop/HTTPRouteGroup/r/m:path"].level == EXACT
    narrower = translate_mesh(http_mesh(http("r", "m", ".*a-book.*new", ("GET",))), AKS)
    path_item = items(narrower)["tt:shop/t:route:shop/HTTPRouteGroup/r/m:path"]
    assert path_item.level == NARROWER
    assert path_item.example == "GET /a-booknew from shop/cart to shop/web port 8080"
    assert rule_of(narrower)["to"][0]["operation"]["paths"] == ["*a-book/new"]
    manual = translate_mesh(http_mesh(http("r", "m", "(?=/a)/a")), AKS)
    assert items(manual)["tt:shop/t:route:shop/HTTPRouteGroup/r/m:path"].level == MANUAL
    assert "shop/meshboard-tt-t" not in manifests(manual, "AuthorizationPolicy")  # fail closed: no rule, no policy


def test_headers_sit_in_the_same_rule_as_sources_and_paths():
    route = http("r", "m", "/books-bought", ("GET",), (("client-app", "bookbuyer"), ("user-agent", "Go-.*")))
    t = translate_mesh(http_mesh(route), AKS)
    rule = rule_of(t)
    assert set(rule) == {"from", "to", "when"}
    assert rule["when"] == [
        {"key": "request.headers[client-app]", "values": ["bookbuyer"]},
        {"key": "request.headers[user-agent]", "values": ["Go-*"]},
    ]
    assert len(manifests(t, "AuthorizationPolicy")["shop/meshboard-tt-t"]["spec"]["rules"]) == 1
    item = items(t)["tt:shop/t:route:shop/HTTPRouteGroup/r/m:headers"]
    assert item.level == EXACT and "same rule" in item.reason


def test_a_header_regex_istio_cannot_say_is_narrower():
    route = http("r", "m", "/b", ("GET",), (("user-agent", ".*-http-client/*.*"),))
    t = translate_mesh(http_mesh(route), AKS)
    item = items(t)["tt:shop/t:route:shop/HTTPRouteGroup/r/m:headers"]
    assert item.level == NARROWER
    assert item.example == "GET /b [user-agent: 'x-http-client/x'] from shop/cart to shop/web port 8080"


def test_a_host_header_is_manual_and_left_out():
    t = translate_mesh(http_mesh(http("r", "m", "/b", (), (("host", "web.example.com"),))), AKS)
    assert items(t)["tt:shop/t:route:shop/HTTPRouteGroup/r/m:host"].level == MANUAL
    assert "shop/meshboard-tt-t" not in manifests(t, "AuthorizationPolicy")


# -- TCPRoutes --------------------------------------------------------------------------------------------------


def test_tcp_route_ports_copy_exactly():
    db = group("shop/db", ports=((5432, TCP),))
    t = translate_mesh(mesh([db], grants("shop/t", "shop/db", ["shop/api"], [tcp("pg", 5432)])), AKS)
    assert rule_of(t) == {
        "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/api"]}}],
        "to": [{"operation": {"ports": ["5432"]}}],
    }
    assert items(t)["tt:shop/t:route:shop/TCPRoute/pg/"].level == EXACT


def test_http_only_traffic_target_keeps_osm_admitting_its_sources_on_tcp_ports():
    db = group("shop/db", ports=((8080, "http"), (5432, TCP)))
    t = translate_mesh(mesh([db], grants("shop/t", "shop/db", ["shop/api"], [http("r", "m", "/x")])), AKS)
    assert rule_of(t, index=1)["to"] == [{"operation": {"ports": ["5432"]}}]
    assert items(t)["tt:shop/t:tcp-ports"].level == EXACT


def test_a_port_protocol_the_meshes_read_differently_is_manual():
    db = group("shop/db", ports=((5432, "http"),), istio_protocols={5432: TCP})
    t = translate_mesh(mesh([db], grants("shop/t", "shop/db", ["shop/api"], [http("r", "all")])), AKS)
    assert one(items(t, "protocol:")).level == MANUAL


# -- TrafficSplits ----------------------------------------------------------------------------------------------


def split_mesh(backends, ports=({"port": 80},)):
    services = [ServiceInfo("shop", name, (("app", "web"),), tuple(ports)) for name in ("web", "web-v1", "web-v2")]
    return mesh([group("shop/web")], services=services, splits=[SplitInfo("shop", "web-split", "web", backends)])


def test_traffic_split_becomes_a_virtual_service_with_the_weights_as_they_are():
    t = translate_mesh(split_mesh((("web-v1", 90), ("web-v2", 10))), AKS)
    vs = manifests(t, "VirtualService")["shop/meshboard-ts-web-split"]
    assert vs["spec"] == {
        "hosts": ["web.shop.svc.cluster.local"],
        "http": [
            {
                "route": [
                    {"destination": {"host": "web-v1.shop.svc.cluster.local"}, "weight": 90},
                    {"destination": {"host": "web-v2.shop.svc.cluster.local"}, "weight": 10},
                ]
            }
        ],
    }
    assert items(t)["ts:shop/web-split"].level == EXACT
    assert all(s.same for s in check(t).splits)


def test_a_zero_weight_backend_stays_listed_and_tcp_roots_get_tcp_routes():
    t = translate_mesh(split_mesh((("web-v1", 0), ("web-v2", 100)), ({"port": 5432, "appProtocol": "tcp"},)), AKS)
    spec = manifests(t, "VirtualService")["shop/meshboard-ts-web-split"]["spec"]
    assert "http" not in spec
    assert [r["weight"] for r in spec["tcp"][0]["route"]] == [0, 100]


def test_weights_osm_cannot_use_are_manual_and_generate_nothing():
    t = translate_mesh(split_mesh((("web-v1", 33.3), ("web-v2", -1))), AKS)
    assert items(t)["ts:shop/web-split"].level == MANUAL
    assert not manifests(t, "VirtualService")


# -- MeshConfig ---------------------------------------------------------------------------------------------------


def test_exclusion_lists_become_pod_annotations_per_workload():
    meshconfig = {
        "traffic": {
            "enablePermissiveTrafficPolicyMode": False,
            "outboundIPRangeExclusionList": ["169.254.169.254/32", "168.63.129.16/32"],
            "outboundPortExclusionList": [6379],
            "inboundPortExclusionList": [],
        }
    }
    web = group("shop/web", annotations={"openservicemesh.io/outbound-ip-range-exclusion-list": "10.0.0.1/32"})
    t = translate_mesh(mesh([web], meshconfig=meshconfig), AKS)
    patch = one({p.ref: p for p in t.patches})
    assert patch.annotations == {
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32,168.63.129.16/32,10.0.0.1/32",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "6379",
    }
    assert items(t)["exclusions:shop/Deployment/web"].level == EXACT


def test_egress_off_and_certificates_are_manual():
    meshconfig = {"traffic": {"enablePermissiveTrafficPolicyMode": False, "enableEgress": False}}
    t = translate_mesh(mesh([group("shop/web")], meshconfig=meshconfig), AKS)
    assert items(t)["egress"].level == MANUAL
    assert "istio-shared-configmap-asm-1-27" in items(t)["egress"].reason
    assert items(t)["certificates"].level == MANUAL


def test_policy_api_kinds_are_listed_as_not_collected_and_never_translated():
    t = translate_mesh(mesh([group("shop/web")]), AKS)
    assert [n.kind for n in t.not_collected] == ["Egress", "IngressBackend", "UpstreamTrafficSetting", "Retry"]
    assert not {m.kind for m in t.manifests} & {"ServiceEntry", "DestinationRule", "EnvoyFilter"}


def test_names_are_predictable_dns_subdomains():
    long_name = "t" * 250
    t = translate_mesh(
        mesh([group("shop/web")], grants(f"shop/{long_name}", "shop/web", ["a/b"], [http("r", "all")])), AKS
    )
    names = [m.name for m in t.manifests]
    assert all(len(n) <= 253 for n in names)
    again = translate_mesh(
        mesh([group("shop/web")], grants(f"shop/{long_name}", "shop/web", ["a/b"], [http("r", "all")])), AKS
    )
    assert names == [m.name for m in again.manifests]
