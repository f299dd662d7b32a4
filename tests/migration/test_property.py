"""Random SMI policies: every request the report calls exact evaluates the same in both meshes.

Hypothesis draws a small mesh (service accounts in two namespaces, HTTP and TCP ports, some pods opted out) and
TrafficTargets with HTTPRouteGroup matches (path regexes Istio can and cannot say, methods, header regexes) and
TCPRoutes. The equivalence check judges every generated request with OSM's rules and with the generated policies; a
request both treat alike needs nothing, and one they treat differently must be explained by an item whose fidelity
is not exact. So no difference may go unexplained, and no exact item may explain one.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.migration.equivalence import check
from apps.migration.model import PERMISSIVE, SMI, TCP, Target
from apps.migration.regex import EXACT
from apps.migration.translate import translate_mesh

from .builders import grants, group, http, mesh, tcp

PATHS = ["", ".*", "/a", "/a/b", "/a.*", ".*/b", "(/a|/b)", "/v[12]", "/a.+", ".*a.*b", "/x/[0-9]+", "(?i)/a", "a"]
HEADERS = ["v1", "v.*", ".*x", ".+", ".*", "a|b", ".*mid.*", "(?=x)x"]
METHODS = ["GET", "POST", "*"]
ACCOUNTS = ["a/s0", "a/s1", "a/s2", "b/s0", "b/s1"]


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
    return mesh(groups, grant_list, mode=mode)


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
