"""A viewer limited to namespaces sees only those on every page, partial, chart, graph and export, and is told that
the others are hidden; an operator limited to namespaces changes weights only there (403 and an audit record
elsewhere)."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from apps.canary.models import WeightChange
from apps.clusters.models import Access
from apps.clusters.scope import allowed_namespaces
from apps.metrics.models import BoundaryTraffic
from tests.crawl import crawl, crawl_as
from tests.graph.conftest import BOOKSTORE_EDGES, IDLE_EDGES, add_edges

NAMESPACES = ("bookstore", "bookbuyer", "bookthief", "bookwarehouse")
EXPORTS = ["/migrate/bundle.yaml", "/migrate/report.txt", "/graph/data", "/graph/data?idle=1"]


class RecordingClient(Client):
    """The test client, keeping every answer's body so the crawl can be searched for names."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.bodies: dict[str, str] = {}

    def get(self, path: str, *args: object, **kwargs: object):  # type: ignore[override]
        response = super().get(path, *args, **kwargs)
        if not getattr(response, "streaming", False):
            htmx = " (htmx)" if (kwargs.get("headers") or {}).get("HX-Request") else ""
            self.bodies[path + htmx] = response.content.decode("utf-8", "replace")
        return response


def limit(user, namespaces: list[str], operate: list[str] | None = None) -> None:
    Access.objects.update_or_create(user=user, defaults={"namespaces": namespaces, "operate_namespaces": operate or []})


def leaks(bodies: dict[str, str], hidden: list[str]) -> list[str]:
    """Where a hidden namespace's name appears (as a word: `bookstore` in `bookstore-v1` counts)."""
    found = []
    for url, body in bodies.items():
        for name in hidden:
            for match in re.finditer(rf"(?<![a-z0-9-]){re.escape(name)}", body):
                found.append(f"{url}: {name!r} in …{body[max(0, match.start() - 80) : match.end() + 40]!r}…")
                break
    return found


# A limited viewer sees their namespaces' objects whole, references to identities elsewhere included: bookstore's
# TrafficTargets allow bookbuyer's service account (and its HTTPRouteGroup matches a `client-app: bookbuyer` header),
# which is bookstore's own configuration. What they never see is another namespace's objects: its services,
# workloads, splits, KPIs, edges, history, checks and plans. bookbuyer's own configuration names no other namespace,
# so a bookbuyer viewer must meet no other namespace's name at all.
CASES = {
    "bookbuyer": ["bookstore", "bookthief", "bookwarehouse"],
    "bookstore": ["bookthief", "bookwarehouse"],
}


def object_links(bodies: dict[str, str], hidden: list[str]) -> list[str]:
    """Links to a page of an object in a hidden namespace."""
    kinds = r"(?:services|workloads|splits|canaries|migrate|history/[a-z]+)"
    return [
        f"{url}: {m.group(0)}"
        for url, body in bodies.items()
        for m in re.finditer(rf"/{kinds}/(?:{'|'.join(hidden)})/", body)
    ]


@pytest.mark.parametrize("mine", sorted(CASES))
def test_it_shows_a_namespace_limited_viewer_nothing_of_other_namespaces_on_any_page(viewer, bookstore, mine):
    add_edges(bookstore, {**BOOKSTORE_EDGES, **IDLE_EDGES})  # traffic between the namespaces, for the graph
    limit(viewer, [mine])
    client = RecordingClient()
    result = crawl_as(client, viewer, max_requests=500)
    # Beyond what the navigation links to: the exports, the audit, the history, and another namespace's pages asked
    # for by URL (each must answer 404, not the page).
    others = [ns for ns in NAMESPACES if ns != mine]
    start = [f"/services/{mine}/{mine}/", *EXPORTS, "/splits/audit/", "/history/", "/?q=book", "/graph/data?find=book"]
    more = crawl(client, start)
    assert result.failures() == [] and more.failures() == [], result.report(result.failures() + more.failures())
    assert len(client.bodies) > 40  # the crawl reached the pages, partials, charts and exports

    found = leaks(client.bodies, CASES[mine]) + object_links(client.bodies, others)
    assert found == [], "\n".join(found)

    # Every page says that other namespaces are hidden.
    pages = result.pages()
    untold = [u for u in pages if "every other namespace is hidden" not in client.bodies[u]]
    assert pages and untold == []
    assert client.bodies["/migrate/report.txt"].startswith(f"# You see the namespace {mine} only;")
    # The graph draws their own services and callers, and their traffic with the hidden namespaces to one anonymous
    # peer: bookbuyer calls bookstore, bookstore is called by bookbuyer and bookthief and calls bookwarehouse.
    graph = json.loads(client.bodies["/graph/data"])
    nodes = {n["data"]["id"]: n["data"] for n in graph["elements"]["nodes"]}
    edges = {(e["data"]["source"], e["data"]["target"]): e["data"] for e in graph["elements"]["edges"]}
    hidden = "svc:(hidden)/(other namespaces)"
    assert nodes[hidden]["reasons"] == ["namespaces hidden from you: their traffic with yours, summed"]
    if mine == "bookbuyer":
        assert edges[("wl:bookbuyer/bookbuyer", hidden)]["rps"] == 10.0  # 7.5 + 2.5 to bookstore's two versions
        # The workload page says how much it sent to hidden namespaces, without naming them.
        page = client.bodies["/workloads/bookbuyer/deployment/bookbuyer/"]
        assert re.search(r'data-hidden-traffic="outbound">Not listed, nor in the totals above: 10(\.0)? req/s', page)
    else:
        # bookbuyer's 7.5 and 2.5 to the two versions and bookthief's 3, wherever the graph draws them.
        assert sum(e["rps"] or 0 for (source, _), e in edges.items() if source == hidden) == 13.0
        assert [e["rps"] for (_, target), e in edges.items() if target == hidden] == [5.0]  # to bookwarehouse
        # The service page says how much traffic it has with hidden namespaces, without naming them.
        page = client.bodies["/services/bookstore/bookstore/"]
        assert re.search(r'data-hidden-traffic="inbound">Not listed: 3(\.0)? req/s from namespaces hidden', page)
        assert re.search(r'data-hidden-traffic="outbound">Not listed: 5(\.0)? req/s to namespaces hidden', page)


@pytest.mark.parametrize(
    "path",
    [
        "/services/bookwarehouse/bookwarehouse/",
        "/services/bookwarehouse/bookwarehouse/series?window=1h",
        "/workloads/bookwarehouse/deployment/bookwarehouse/",
        "/splits/bookstore/bookstore-split/",
        "/splits/bookstore/bookstore-split/compare/",
        "/history/service/bookwarehouse/bookwarehouse/",
        "/migrate/bookwarehouse/bundle.yaml",
    ],
)
def test_it_answers_404_for_another_namespaces_objects_by_url(client, viewer, bookstore, path):
    limit(viewer, ["bookbuyer"])
    client.force_login(viewer)
    assert client.get(path).status_code == 404


def test_it_lets_an_unlimited_viewer_see_every_namespace(client, viewer, bookstore):
    client.force_login(viewer)
    body = client.get("/").content.decode()
    assert all(f"/services/{ns}/" in body for ns in ("bookstore", "bookwarehouse"))
    assert "every other namespace is hidden" not in body
    assert "data-hidden-traffic" not in client.get("/services/bookstore/bookstore/").content.decode()
    assert allowed_namespaces(viewer) is None


@pytest.fixture
def full_bookstore(kubeapi_factory, operator):
    """The bookstore demo with a Flagger Canary, traffic between the namespaces and one applied weight change, so
    every kind of page has something to show: the crawl below reaches each URL pattern."""
    from apps.clusters.models import Cluster
    from apps.mesh.services import collect_and_record
    from lab.seeds.loader import load_seed
    from tests.helpers import change_bookstore_weights, flagger_canary

    seed = load_seed("bookstore")
    seed.objects.append(flagger_canary())
    server = kubeapi_factory(seed)
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(server.kubeconfig))
    _run, error = collect_and_record(cluster)
    assert error is None, error
    add_edges(cluster, {**BOOKSTORE_EDGES, **IDLE_EDGES})
    # Traffic across the mesh's edge: from outside into bookstore and bookwarehouse, out of bookthief.
    now = timezone.now()
    for direction, namespace, peer in (
        ("ingress", "bookstore", ""),
        ("ingress", "bookwarehouse", ""),
        ("egress", "bookthief", "httpbin_org_443"),
    ):
        BoundaryTraffic.objects.create(
            cluster=cluster,
            direction=direction,
            namespace=namespace,
            app=namespace,
            workload_kind="Deployment",
            workload_name=namespace,
            peer=peer,
            request_rate=2.0,
            collected_at=now,
        )
    assert change_bookstore_weights(cluster, operator, 50, 50).applied
    return cluster


def app_url_names() -> set[str]:
    """Every URL pattern of Meshboard's apps (`app:name`): the pages, partials, charts and exports."""
    from django.urls import URLResolver, get_resolver

    names = set()
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and (entry.app_name or "") in APPS:
            names |= {f"{entry.app_name}:{p.name}" for p in entry.url_patterns}
    return names


APPS = {"overview", "canary", "graph", "policies", "migration", "history"}


def test_it_crawls_every_url_pattern_as_a_limited_viewer_and_shows_no_other_namespace(viewer, full_bookstore):
    from urllib.parse import urlsplit

    from django.urls import resolve

    limit(viewer, ["bookstore"])
    client = RecordingClient()
    rollback = f"/splits/audit/{WeightChange.objects.get().pk}/rollback/"
    result = crawl_as(client, viewer, max_requests=600)
    more = crawl(client, [*EXPORTS, "/splits/audit/", "/history/service/bookstore/bookstore/", rollback])
    assert result.failures() == [] and more.failures() == [], result.report(result.failures() + more.failures())

    visited = {resolve(urlsplit(v.url).path).view_name for v in result.visits + more.visits}
    assert app_url_names() - visited == set()
    found = leaks(client.bodies, CASES["bookstore"]) + object_links(client.bodies, ["bookbuyer", *CASES["bookstore"]])
    assert found == [], "\n".join(found)


def test_it_scopes_only_the_request_not_the_thread_after_it(client, viewer, bookstore):
    from apps.mesh.models import Service

    limit(viewer, ["bookbuyer"])
    client.force_login(viewer)
    assert "/services/bookstore/" not in client.get("/").content.decode()
    # The same thread after the answer (as a collector or a management command runs): every namespace.
    assert Service.objects.filter(cluster=bookstore, namespace="bookstore").exists()


def test_it_keeps_the_scope_while_a_streamed_answer_is_produced(rf, viewer, bookstore):
    """A streamed body is produced after the middleware returns; it must read under the same scope."""
    from django.http import StreamingHttpResponse

    from apps.clusters.scope import NamespaceScopeMiddleware
    from apps.mesh.models import Pod

    def names():
        yield from (f"{s.namespace}/{s.name}\n".encode() for s in Pod.objects.filter(cluster=bookstore))

    limit(viewer, ["bookbuyer"])
    request = rf.get("/export")
    request.user = viewer
    response = NamespaceScopeMiddleware(lambda r: StreamingHttpResponse(names()))(request)
    body = b"".join(response.streaming_content).decode()
    assert body and all(line.startswith("bookbuyer/") for line in body.splitlines())
