"""One test per row of the OSM → Istio mapping (shared/reference/istio-migration.md), with its exact, narrower,
broader and manual cases: what is generated and what the fidelity item says."""

from __future__ import annotations

import dataclasses

from apps.migration.equivalence import check
from apps.migration.translate import translate_mesh
from apps.policies.model import (
    PERMISSIVE,
    SMI,
    TCP,
    UNKNOWN,
    EgressInfo,
    IngressBackendInfo,
    IngressInfo,
    NamespaceInfo,
    RetryInfo,
    ServiceInfo,
    SplitInfo,
    Target,
    UpstreamSettingInfo,
)
from apps.policies.regex import BROADER, EXACT, MANUAL, NARROWER
from apps.policies.smi_access import Route

from .builders import grants, group, http, mesh, meshconfig, sa, service, tcp

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


# -- OSM's policy API ---------------------------------------------------------------------------------------------

WEB = group("shop/web", labels={"app": "web"})
CONTROLLER = group("ingress/ctl", labels={"app": "ctl"}, ports=((80, "http"),), meshed=False)
INGRESS_NS = [NamespaceInfo("shop", True, True, False, "osm"), NamespaceInfo("ingress", True, False, False, "osm")]
SERVICES = [service("shop/web"), service("ingress/ctl", ports=((80, 80, "http"),))]
CTL_SOURCE = {"kind": "Service", "name": "ctl", "namespace": "ingress"}


def backend(name: str, protocol: str = "http", *sources: dict, service_name: str = "web") -> IngressBackendInfo:
    tls = {"skipClientCertValidation": False, "sniHosts": []} if protocol == "https" else None
    entry = {"name": service_name, "port": 8080, "protocol": protocol, "tls": tls}
    return IngressBackendInfo("shop", name, (entry,), sources or (CTL_SOURCE,))


def with_ingress(*backends, mode=SMI, ingresses=(), config=None):
    """The controller in namespace ingress (monitored, no injection), OSM's egress passthrough on (its default)."""
    if config is None:
        config = meshconfig(egress=True)
        config["traffic"]["enablePermissiveTrafficPolicyMode"] = mode == PERMISSIVE
    m = mesh(
        [WEB, CONTROLLER],
        mode=mode,
        namespaces=INGRESS_NS,
        services=SERVICES,
        ingress_backends=backends,
        ingresses=ingresses,
        meshconfig=config,
    )
    return translate_mesh(m, AKS)


def test_an_ingress_backend_admits_the_controllers_principal_on_the_backend_port():
    t = with_ingress(backend("web"))
    policy = manifests(t, "AuthorizationPolicy")["shop/meshboard-ib-web-web"]
    assert policy["spec"] == {
        "selector": {"matchLabels": {"app": "web"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"principals": ["cluster.local/ns/ingress/sa/ctl"]}}],
                "to": [{"operation": {"ports": ["8080"]}}],
            }
        ],
    }
    assert items(t)["ib:shop/web:web:8080"].level == EXACT
    # The controller: an Istio sidecar for its outbound only, and plaintext from in-cluster callers kept.
    patch = one({p.ref: p for p in t.patches})
    assert patch.labels == {"istio.io/rev": "asm-1-27"}
    assert patch.annotations == {"traffic.sidecar.istio.io/includeInboundPorts": ""}
    assert t.outbound_only == {CONTROLLER.key: CONTROLLER.identity}
    rule = manifests(t, "DestinationRule")["ingress/meshboard-dr-ctl"]
    assert rule["spec"] == {"host": "ctl.ingress.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
    assert items(t)["ingress-controller:ingress/Deployment/ctl"].level == MANUAL
    result = check(t)
    assert result.unexplained == [] and not result.differences


def test_an_https_backends_authenticated_principal_is_the_certificate_osm_issues_to_the_ingress_controller():
    """Over HTTPS OSM admits the name on the client certificate, which for the controller is the MeshConfig's ingress
    gateway certificate; under Istio its sidecar presents its service account's principal instead."""
    config = meshconfig(egress=True)
    config["certificate"] = {"ingressGateway": {"subjectAltNames": ["ingress-gateway.example"]}}
    gateway = {"kind": "AuthenticatedPrincipal", "name": "ingress-gateway.example"}
    t = with_ingress(backend("web", "https", CTL_SOURCE, gateway), config=config)
    policy = manifests(t, "AuthorizationPolicy")["shop/meshboard-ib-web-web"]
    assert policy["spec"]["rules"][0]["from"] == [{"source": {"principals": ["cluster.local/ns/ingress/sa/ctl"]}}]
    result = check(t)
    # Only the controller's plaintext differs: OSM wants HTTPS there, while Istio's sidecar gives every request of
    # the controller its identity (the controller's item says so).
    assert result.unexplained == [] and {d.request.source_text() for d in result.differences} == {
        "ingress/ctl (ingress controller)"
    }
    assert all(d.explained_by[0].key == "ingress-controller:ingress/Deployment/ctl" for d in result.differences)
    # Another name: OSM admits nobody (the controller presents the gateway's certificate), and nothing is generated.
    other = {"kind": "AuthenticatedPrincipal", "name": "ctl.ingress.cluster.local"}
    t = with_ingress(backend("web", "https", CTL_SOURCE, other), config=config)
    assert "shop/meshboard-ib-web-web" not in manifests(t, "AuthorizationPolicy")
    assert "OSM admits nobody" in items(t)["ib:shop/web:web:8080"].reason
    assert check(t).unexplained == []
    # Without a Service source nothing says who presents the name (a meshed service account's own principal would
    # be its sidecar, which reaches the pod through the mesh in OSM): manual, nothing generated.
    t = with_ingress(backend("web", "https", other), config=config)
    assert items(t)["ib:shop/web:web:8080"].level == MANUAL
    assert "shop/meshboard-ib-web-web" not in manifests(t, "AuthorizationPolicy")
    assert check(t).unexplained == []


def test_an_ip_range_source_becomes_ip_blocks_with_plaintext_accepted_on_that_port():
    t = with_ingress(backend("web", "http", {"kind": "IPRange", "name": "10.1.0.0/16"}))
    policy = manifests(t, "AuthorizationPolicy")["shop/meshboard-ib-web-web"]
    assert policy["spec"]["rules"] == [
        {"from": [{"source": {"ipBlocks": ["10.1.0.0/16"]}}], "to": [{"operation": {"ports": ["8080"]}}]}
    ]
    peer = manifests(t, "PeerAuthentication")["shop/meshboard-ib-web-web-mtls"]
    assert peer["spec"]["portLevelMtls"] == {"8080": {"mode": "PERMISSIVE"}}
    assert not t.patches  # no Service source: no controller to mesh
    result = check(t)
    assert result.unexplained == [] and not result.differences


def test_an_ingress_backend_osm_cannot_use_generates_nothing():
    t = with_ingress(backend("web", "tcp"))
    assert "OSM refuses the protocol" in items(t)["ib:shop/web:web:8080"].reason
    assert set(manifests(t, "AuthorizationPolicy")) == {
        "shop/meshboard-allow-nothing",
        "ingress/meshboard-allow-nothing",
    }
    assert not t.patches


def test_in_permissive_mode_the_meshed_ingress_controller_is_broader():
    """No AuthorizationPolicy in permissive mode: with its sidecar the controller reaches every meshed workload, where
    OSM admitted it only through IngressBackends. An IPRange source becomes a DENY of plaintext from elsewhere."""
    api = group("shop/api", labels={"app": "api"})
    config = meshconfig(egress=True)
    config["traffic"]["enablePermissiveTrafficPolicyMode"] = True
    m = mesh(
        [WEB, api, CONTROLLER],
        mode=PERMISSIVE,
        namespaces=INGRESS_NS,
        services=[*SERVICES, service("shop/api")],
        ingress_backends=[backend("web", "http", CTL_SOURCE, {"kind": "IPRange", "name": "10.1.0.0/16"})],
        meshconfig=config,
    )
    t = translate_mesh(m, AKS)
    assert set(manifests(t, "AuthorizationPolicy")) == {"shop/meshboard-ib-web-web-deny"}
    deny = manifests(t, "AuthorizationPolicy")["shop/meshboard-ib-web-web-deny"]["spec"]
    assert deny["action"] == "DENY"
    assert deny["rules"][0]["from"] == [{"source": {"notPrincipals": ["*"], "notIpBlocks": ["10.1.0.0/16"]}}]
    item = items(t)["ingress-controller:ingress/Deployment/ctl"]
    assert item.level == BROADER
    result = check(t)
    assert result.unexplained == []
    from_controller = [d for d in result.broader if d.request.source_text() == "ingress/ctl (ingress controller)"]
    assert from_controller and all(d.explained_by == (item,) for d in from_controller)
    assert {d.request.destination.name for d in from_controller} == {"api"}


def test_the_controllers_nginx_ingresses_send_to_the_service_without_osms_https():
    ingresses = [
        IngressInfo(
            "shop",
            "web",
            "nginx",
            "k8s.io/ingress-nginx",
            ({"host": "web.example.com", "path": "/", "service": "web", "port": 8080},),
            (("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS"),),
        ),
        IngressInfo("shop", "other", "traefik", "traefik.io/ingress-controller", ({"service": "web", "port": 8080},)),
    ]
    t = with_ingress(backend("web"), ingresses=ingresses)
    patch = one({p.ref: p for p in t.object_patches})
    assert patch.patch == {
        "metadata": {
            "annotations": {
                "nginx.ingress.kubernetes.io/service-upstream": "true",
                "nginx.ingress.kubernetes.io/upstream-vhost": "web.shop.svc.cluster.local",
                "nginx.ingress.kubernetes.io/backend-protocol": None,
            }
        }
    }
    assert "traefik.io/ingress-controller" in items(t)["ingress-controller:ingress/Deployment/ctl"].reason


EGRESS = EgressInfo("shop", "books", (sa("shop/web"),), ("books.example.com",), (), ((80, "http"), (443, "https")))


def with_egress(*egresses, egress: bool | None, groups=(WEB,), flag: bool = True):
    config = meshconfig(egress=egress, enableEgressPolicy=flag)
    return translate_mesh(mesh(list(groups), meshconfig=config, egresses=egresses), AKS)


def test_an_egress_becomes_a_service_entry_exported_to_its_sources_namespaces():
    t = with_egress(EGRESS, egress=False)
    entry = manifests(t, "ServiceEntry")["shop/meshboard-egress-books"]
    assert entry["spec"] == {
        "hosts": ["books.example.com"],
        "ports": [
            {"number": 80, "name": "http-80", "protocol": "HTTP"},
            {"number": 443, "name": "tls-443", "protocol": "TLS"},
        ],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "exportTo": ["shop"],
    }
    assert t.outbound_policy == "REGISTRY_ONLY" and items(t)["egress"].level == MANUAL
    assert items(t)["egress:shop/books"].level == EXACT
    result = check(t)
    assert result.external == 3 and result.unexplained == [] and not result.differences


def test_an_egress_source_namespace_with_other_service_accounts_is_broader():
    t = with_egress(EGRESS, egress=False, groups=(WEB, group("shop/other")))
    item = items(t)["egress:shop/books"]
    assert item.level == BROADER and "egress gateway" in item.reason
    result = check(t)
    assert result.unexplained == [] and {str(d.request.source) for d in result.broader} == {"shop/other"}


def test_with_enable_egress_the_egress_http_port_is_broader_and_nothing_else():
    t = with_egress(EGRESS, egress=True, groups=(WEB, group("shop/other")))
    assert t.outbound_policy == "ALLOW_ANY" and items(t)["egress:shop/books"].level == EXACT
    capture = items(t)["egress-capture:shop/web:80"]
    assert capture.level == BROADER
    result = check(t)
    assert result.unexplained == []
    assert {d.request.text() for d in result.broader} == {
        "GET / from shop/web to http://meshboard-unlisted.example:80 (outside the mesh)"
    }


def test_an_egress_to_hosts_over_tcp_is_manual():
    tcp_hosts = EgressInfo("shop", "db", (sa("shop/web"),), ("db.example.com",), (), ((5432, "tcp"),))
    t = with_egress(tcp_hosts, egress=False)
    assert items(t)["egress:shop/db"].level == MANUAL and "by IP range" in items(t)["egress:shop/db"].reason
    assert check(t).unexplained == []


def test_an_egress_osm_ignores_generates_nothing():
    t = with_egress(EGRESS, egress=False, flag=False)
    assert not manifests(t, "ServiceEntry") and "enableEgressPolicy" in items(t)["egress:shop/books"].reason


SETTING = UpstreamSettingInfo(
    "shop",
    "limits",
    "web.shop.svc.cluster.local",
    {
        "tcp": {"maxConnections": 100, "connectTimeout": "500ms"},
        "http": {"maxRequests": 200, "maxPendingRequests": 10, "maxRequestsPerConnection": 5, "maxRetries": 3},
    },
    {"local": {"http": {"requests": 10, "unit": "second"}}},
)


def test_an_upstream_traffic_setting_becomes_a_connection_pool_and_its_rate_limit_is_manual():
    t = translate_mesh(mesh([WEB], services=[service("shop/web")], upstream_settings=[SETTING]), AKS)
    rule = manifests(t, "DestinationRule")["shop/meshboard-dr-web"]
    assert rule["spec"] == {
        "host": "web.shop.svc.cluster.local",
        "trafficPolicy": {
            "connectionPool": {
                "tcp": {"maxConnections": 100, "connectTimeout": "0.5s"},
                "http": {
                    "http2MaxRequests": 200,
                    "http1MaxPendingRequests": 10,
                    "maxRequestsPerConnection": 5,
                    "maxRetries": 3,
                },
            }
        },
    }
    assert items(t)["uts:shop/limits"].level == EXACT
    rate = items(t)["uts-rate:shop/limits"]
    assert rate.level == MANUAL and "EnvoyFilter" in rate.reason and "10 requests per second" in rate.subject


RETRY = RetryInfo(
    "client",
    "retry-web",
    {"kind": "ServiceAccount", "name": "app", "namespace": "client"},
    ({"kind": "Service", "name": "web", "namespace": "shop"},),
    {"retryOn": "5xx", "perTryTimeout": "1s", "numRetries": 3, "retryBackoffBaseInterval": "25ms"},
)


def with_retry(*groups, flag: bool = True, retry=RETRY, splits=()):
    config = meshconfig(enableRetryPolicy=flag)
    services = [service("shop/web"), service("shop/web-v2", {"app": "web"})]
    return translate_mesh(
        mesh([WEB, *groups], meshconfig=config, services=services, retries=[retry], splits=splits), AKS
    )


def test_a_retry_becomes_a_route_matching_the_sources_pods_before_the_default_route():
    t = with_retry(group("client/app", labels={"app": "client"}))
    vs = manifests(t, "VirtualService")["shop/meshboard-retry-web"]
    assert vs["spec"] == {
        "hosts": ["web.shop.svc.cluster.local"],
        "http": [
            {
                "name": "retry-client-retry-web",
                "match": [{"sourceNamespace": "client", "sourceLabels": {"app": "client"}}],
                "route": [{"destination": {"host": "web.shop.svc.cluster.local"}}],
                "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx", "retryIgnorePreviousHosts": False},
            },
            {"route": [{"destination": {"host": "web.shop.svc.cluster.local"}}]},
        ],
    }
    assert items(t)["retry:client/retry-web:shop/web"].level == EXACT  # 25 ms is Envoy's default backoff


def test_a_retry_joins_the_split_virtual_service_and_flags_backoff_and_shared_labels():
    split = SplitInfo("shop", "split", "web", (("web", 50), ("web-v2", 50)))
    slow = RetryInfo(
        RETRY.namespace,
        RETRY.name,
        RETRY.source,
        RETRY.destinations,
        {**RETRY.policy, "retryBackoffBaseInterval": "1s"},
    )
    t = with_retry(group("client/app", labels={"app": "client"}), splits=[split], retry=slow)
    vs = one(manifests(t, "VirtualService"))
    assert [r.get("name") for r in vs["spec"]["http"]] == ["retry-client-retry-web", None]
    assert vs["spec"]["http"][0]["route"] == vs["spec"]["http"][1]["route"]  # the split's weights
    assert vs["spec"]["http"][0]["retries"]["backoff"] == "1s"
    assert items(t)["retry:client/retry-web:shop/web"].level == MANUAL
    shared = with_retry(group("client/app", labels={"app": "client"}), group("client/other", labels={"app": "client"}))
    assert items(shared)["retry:client/retry-web:shop/web"].level == BROADER


def test_a_retry_osm_ignores_or_cannot_place_generates_nothing():
    assert not manifests(with_retry(group("client/app"), flag=False), "VirtualService")
    t = with_retry()  # no pod runs as client/app
    assert items(t)["retry:client/retry-web:shop/web"].level == MANUAL and not manifests(t, "VirtualService")


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


def test_an_egress_http_route_group_becomes_the_routes_of_a_virtual_service_on_its_host():
    """OSM routes only the HTTPRouteGroup's matches to the host (404 otherwise); so does a VirtualService on the host
    with those routes and no other, regexes matched whole by Envoy in both meshes."""
    routes = (
        Route("HTTPRouteGroup", "books-get", "catalog", "/catalog/.*", ("GET",), (("x-team", "books|shop"),)),
        Route("HTTPRouteGroup", "books-get", "orders", "/orders", ("POST", "PUT")),
    )
    routed = dataclasses.replace(EGRESS, routes=routes)
    t = with_egress(routed, egress=False)
    vs = manifests(t, "VirtualService")["shop/meshboard-egress-books-books.example.com"]
    assert vs["spec"] == {
        "hosts": ["books.example.com"],
        "exportTo": ["shop"],
        "http": [
            {
                "name": "books-get-catalog-80",
                "match": [
                    {
                        "port": 80,
                        "uri": {"regex": "/catalog/.*"},
                        "method": {"exact": "GET"},
                        "headers": {"x-team": {"regex": "books|shop"}},
                    }
                ],
                "route": [{"destination": {"host": "books.example.com", "port": {"number": 80}}}],
            },
            {
                "name": "books-get-orders-80",
                "match": [{"port": 80, "uri": {"regex": "/orders"}, "method": {"regex": "POST|PUT"}}],
                "route": [{"destination": {"host": "books.example.com", "port": {"number": 80}}}],
            },
        ],
    }
    item = items(t)["egress:shop/books"]
    assert item.level == EXACT and "VirtualService" in item.reason
    result = check(t)
    # each match's sample and the requests just outside it (another path, method or header) answer alike
    assert result.unexplained == [] and not result.differences, [d.request.text() for d in result.differences]


def test_an_egress_naming_a_missing_route_group_is_broader():
    t = with_egress(dataclasses.replace(EGRESS, routes=()), egress=False)
    item = items(t)["egress:shop/books"]
    assert item.level == BROADER and "routes nothing" in item.reason
    assert check(t).unexplained == []
