"""Random SMI policies: every request the report calls exact evaluates the same in both meshes.

Hypothesis draws a small mesh (service accounts in two namespaces, HTTP and TCP ports, some pods opted out) and
TrafficTargets with HTTPRouteGroup matches (path regexes Istio can and cannot say, methods, header regexes) and
TCPRoutes; and OSM's policy API: IngressBackends (an ingress controller's Service, an IPRange, an authenticated
principal; HTTP or HTTPS) and an Egress (hosts over HTTP or HTTPS, an IP range over TCP), with egress passthrough
on or off. The equivalence check judges every generated request with OSM's rules and with the generated policies; a
request both treat alike needs nothing, and one they treat differently must be explained by an item whose fidelity
is not exact. So no difference may go unexplained, and no exact item may explain one.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.migration.equivalence import check
from apps.migration.translate import translate_mesh
from apps.policies.model import PERMISSIVE, SMI, TCP, EgressInfo, IngressBackendInfo, NamespaceInfo, Target
from apps.policies.regex import EXACT

from .builders import grants, group, http, mesh, meshconfig, sa, service, tcp

PATHS = ["", ".*", "/a", "/a/b", "/a.*", ".*/b", "(/a|/b)", "/v[12]", "/a.+", ".*a.*b", "/x/[0-9]+", "(?i)/a", "a"]
HEADERS = ["v1", "v.*", ".*x", ".+", ".*", "a|b", ".*mid.*", "(?=x)x"]
METHODS = ["GET", "POST", "*"]
ACCOUNTS = ["a/s0", "a/s1", "a/s2", "b/s0", "b/s1"]
INGRESS_SOURCES = [
    {"kind": "Service", "name": "ctl", "namespace": "c"},
    {"kind": "IPRange", "name": "10.9.0.0/16"},
    {"kind": "AuthenticatedPrincipal", "name": "gw.example"},
    {"kind": "AuthenticatedPrincipal", "name": "s1.b.cluster.local"},
]


@st.composite
def routes(draw, index: int):
    if draw(st.integers(0, 4)) == 0:
        return tcp(f"tcp{index}", *draw(st.lists(st.sampled_from([5432, 8080, 9999]), min_size=1, max_size=2)))
    headers = draw(
        st.lists(
            st.tuples(st.sampled_from(["x-a", "X-B"]), st.sampled_from(HEADERS)), max_size=2, unique_by=lambda h: h[0]
        )
    )
    return http(
        f"routes{index}",
        f"m{draw(st.integers(0, 2))}",
        draw(st.sampled_from(PATHS)),
        tuple(draw(st.lists(st.sampled_from(METHODS), max_size=2, unique=True))),
        tuple(headers),
    )


@st.composite
def meshes(draw):
    groups = []
    for account in ACCOUNTS:
        ports = [(8080, "http")] + ([(5432, TCP)] if draw(st.booleans()) else [])
        opt_out = draw(st.integers(0, 9)) == 0
        annotations = {"openservicemesh.io/sidecar-injection": "disabled"} if opt_out else {}
        name = account.split("/")[1]
        # Labels that may be shared with another service account's workload (a selector then picks both), and a
        # second workload of the same service account.
        labels = draw(st.sampled_from([{"app": name}, {"app": "shared"}, {"app": "shared", "v": name}]))
        groups.append(group(account, ports=tuple(ports), annotations=annotations, labels=labels))
        if draw(st.integers(0, 4)) == 0:
            groups.append(group(account, ports=tuple(ports), labels={**labels, "track": "b"}, name=f"{name}-b"))
    grant_list = []
    for index in range(draw(st.integers(0, 4))):
        destination = draw(st.sampled_from(ACCOUNTS))
        sources = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=3, unique=True))
        route_list = draw(st.lists(routes(index), min_size=1, max_size=3))
        namespace = destination.split("/")[0]
        grant_list += grants(f"{namespace}/t{index}", destination, sources, route_list)
    mode = draw(st.sampled_from([SMI, SMI, PERMISSIVE]))
    groups.append(group("c/ctl", labels={"app": "ctl"}, ports=((80, "http"),), meshed=False))
    services = [service(a, {"app": a.split("/")[1]}) for a in ACCOUNTS] + [service("c/ctl", ports=((80, 80, "http"),))]
    backends = []
    for index in range(draw(st.integers(0, 2))):
        account = draw(st.sampled_from(ACCOUNTS))
        protocol = draw(st.sampled_from(["http", "https"]))
        tls = {"skipClientCertValidation": draw(st.booleans()), "sniHosts": []} if protocol == "https" else None
        sources = draw(st.lists(st.sampled_from(INGRESS_SOURCES), min_size=1, max_size=3, unique_by=str))
        entry = {"name": account.split("/")[1], "port": 8080, "protocol": protocol, "tls": tls}
        backends.append(IngressBackendInfo(account.split("/")[0], f"ib{index}", (entry,), tuple(sources)))
    egresses = []
    if draw(st.booleans()):
        ports = draw(st.lists(st.sampled_from([(80, "http"), (443, "https"), (5432, "tcp")]), min_size=1, unique=True))
        sources = tuple(sa(a) for a in draw(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=2, unique=True)))
        ranges = ("192.0.2.0/24",) if any(p == "tcp" for _n, p in ports) else ()
        egresses.append(EgressInfo(sources[0].namespace, "out", sources, ("ext.example",), ranges, tuple(ports)))
    config = meshconfig(egress=draw(st.sampled_from([True, False, None])), enableEgressPolicy=True)
    config["traffic"]["enablePermissiveTrafficPolicyMode"] = mode == PERMISSIVE
    config["certificate"] = {"ingressGateway": {"subjectAltNames": ["gw.example"]}}
    namespaces = [NamespaceInfo(n, True, n != "c", False, "osm") for n in ("a", "b", "c")]
    return mesh(
        groups,
        grant_list,
        mode=mode,
        namespaces=namespaces,
        services=services,
        ingress_backends=backends,
        egresses=egresses,
        meshconfig=config,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meshes())
def test_every_request_called_exact_evaluates_the_same_in_both_meshes(m):
    translation = translate_mesh(m, Target("asm-1-27"))
    result = check(translation)
    assert result.requests > 0
    assert not result.unsupported
    unexplained = [(d.request.text(), d.direction, d.osm.reason, d.istio.reason) for d in result.unexplained]
    assert unexplained == []
    assert all(i.level != EXACT for d in result.differences for i in d.explained_by)
