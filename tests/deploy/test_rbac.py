"""The RBAC in deploy/kubernetes fits the code: run the cluster collector, the metrics collector and a weight write
against the Kubernetes API stand-in, map every request in its log to what RBAC sees (verb, API group, resource,
namespace, name), and check it against the rules the rendered overlay binds to the identity that makes it.

The stand-in checks no credentials, so each request is attributed by the phase that made it: the cluster
collector runs as `meshboard-collector` (the `cluster` worker), the weight write as `meshboard-web`, the metrics
collector as `meshboard` (no binding: it must not call the API server at all).

For each overlay: every request is allowed; every (verb, group, resource) a rule grants is used by some request;
no wildcard; and the only verb beyond get/list/watch is `patch` on split.smi-spec.io trafficsplits. /version and
/apis are allowed by the API server's own system:discovery role, which the stand-in's authorizer holds as a fixed
rule. The RBAC evaluation (request attributes, bindings, rule matching) is the stand-in's, lab/kubeapi/rbac.py.
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections import defaultdict

import pytest
from django.urls import reverse

from apps.clusters.models import Cluster, CollectionRun
from apps.mesh import collector
from apps.mesh.services import collect_and_record
from apps.metrics.services import collect_and_record as collect_metrics
from lab.kubeapi.auth import UserInfo
from lab.kubeapi.rbac import (
    DISCOVERY_RULES,
    Attributes,
    Authorizer,
    Grant,
    granted,
    logged_request_attributes,
    rule_allows,
)
from lab.seeds.istio import ISTIO_GROUPS
from lab.seeds.loader import load_seed
from tests.helpers import bookbuyer_to_bookstore_openmetrics, change_bookstore_weights

from .conftest import named

pytestmark = pytest.mark.django_db

READ_VERBS = {"get", "list", "watch"}

STEP = 15.0
T0 = (int(time.time()) // 3600 - 3) * 3600
AT = T0 + 900.0


@pytest.fixture(scope="module")
def prometheus(prometheus_factory):
    """A real Prometheus holding a little bookstore traffic, for the metrics collector."""
    return prometheus_factory(bookbuyer_to_bookstore_openmetrics(T0, AT, STEP), name="deploy-rbac")


@pytest.fixture
def kubeapi(kubeapi_factory):
    """The bookstore demo on an API server that also serves Istio's groups (as during a move from OSM to Istio), so
    that the collector makes every list it can: Istio's kinds are listed only when their groups are served."""
    seed = load_seed("bookstore")
    return kubeapi_factory(dataclasses.replace(seed, crd_groups=seed.crd_groups | ISTIO_GROUPS))


def _run_everything(server, cluster: Cluster, operator) -> dict[str, list[Attributes]]:
    """Every API request each identity made, collecting and writing once; each phase must succeed."""
    made: dict[str, list[Attributes]] = {}

    server.requests.reset()
    run, error = collect_and_record(cluster)
    assert error is None and run.status == CollectionRun.Status.OK, (error, run.warnings)
    made["meshboard-collector"] = _attributes(server)

    server.requests.reset()
    run, error = collect_metrics(cluster, at=AT)
    assert error is None and run.status in {CollectionRun.Status.OK, CollectionRun.Status.PARTIAL}, error
    assert run.api_requests, "the metrics collector asked Prometheus nothing"
    made["meshboard"] = _attributes(server)

    server.requests.reset()
    outcome = change_bookstore_weights(cluster, operator, 50, 50)
    assert outcome.applied, outcome.record.reason
    made["meshboard-web"] = _attributes(server)
    return made


def _attributes(server) -> list[Attributes]:
    out = []
    for record in server.requests.entries:
        assert 200 <= record.status < 300, f"{record.method} {record.path} answered {record.status}"
        attributes = logged_request_attributes(record)
        if attributes.is_resource:  # the stand-in's own verb agrees with the mapping
            assert attributes.verb == record.verb, (record, attributes)
        out.append(attributes)
    return out


def _wildcards(objects: list[dict]) -> list[str]:
    found = []
    for role in objects:
        if role["kind"] not in {"Role", "ClusterRole"}:
            continue
        for rule in role.get("rules") or []:
            for field in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
                if any("*" in value for value in rule.get(field) or []):
                    found.append(f"{role['kind']} {role['metadata']['name']}: {field} {rule[field]}")
    return found


def _check(docs: list[dict], made: dict[str, list[Attributes]]) -> dict[str, list[Grant]]:
    authorizer = Authorizer(docs)
    assert not authorizer.unresolved_role_refs()
    bound = {account: authorizer.grants_for(UserInfo(f"system:serviceaccount:meshboard:{account}")) for account in made}
    # Every request is allowed for the identity that made it.
    for account, requests in made.items():
        for request in requests:
            ours = any(grant.allows(request) for grant in bound[account])
            builtin = any(rule_allows(rule, request) for rule in DISCOVERY_RULES)
            assert ours or builtin, f"{account} may not {request}"
            if not request.is_resource:
                assert not ours, f"{request}: discovery is the API server's to grant, not ours"
    # Every (verb, group, resource) a rule grants is used by a request of that identity.
    for account, grant_list in bound.items():
        used = {(r.verb, r.group, r.rule_resource) for r in made[account] if r.is_resource}
        for grant in grant_list:
            unused = granted(grant.rule) - used
            assert not unused, f"{grant.role} grants {account} {sorted(unused)}, which no request uses"
    # No wildcard; nothing beyond reading but `patch` on TrafficSplits.
    assert not _wildcards(docs)
    for grant_list in bound.values():
        for grant in grant_list:
            assert not grant.rule.get("nonResourceURLs"), grant.role
            for verb, group, resource in granted(grant.rule):
                assert verb in READ_VERBS or (verb, group, resource) == ("patch", "split.smi-spec.io", "trafficsplits")
    assert not bound["meshboard"] and not made["meshboard"], "beat and the metrics worker need no API access"
    return bound


def test_it_grants_the_cluster_wide_identities_exactly_what_the_code_uses(kubeapi, objects, operator, prometheus):
    docs = objects["cluster-wide"]
    # The external-database overlay binds the same rules, so this test covers it too.
    rbac_kinds = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert [d for d in docs if d["kind"] in rbac_kinds] == [
        d for d in objects["cluster-wide-external-db"] if d["kind"] in rbac_kinds
    ]
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(kubeapi.kubeconfig), prometheus_url=prometheus.url)

    made = _run_everything(kubeapi, cluster, operator)

    bound = _check(docs, made)
    assert {g.namespace for grants_ in bound.values() for g in grants_} == {""}, "ClusterRoleBindings only"
    # One call per kind, whatever the mesh: discovery (2), one list per kind, the API server's Endpoints.
    collector_requests = made["meshboard-collector"]
    # The lists: 10 built-in kinds, 4 SMI, canaries, metrictemplates, meshconfigs, ingresses, ingressclasses, OSM's 4
    # policy kinds, meshrootcertificates and Istio's 6 kinds.
    assert len(collector_requests) == 2 + 30 + 1
    assert all(r.namespace == "" for r in collector_requests if r.verb == "list")
    assert [str(r) for r in made["meshboard-web"]] == [
        "get trafficsplits.split.smi-spec.io/bookstore-split in bookstore",
        "patch trafficsplits.split.smi-spec.io/bookstore-split in bookstore",  # the server-side dry run
        "patch trafficsplits.split.smi-spec.io/bookstore-split in bookstore",
    ]


def test_it_grants_the_namespace_scoped_identities_exactly_what_the_code_uses(
    kubeapi, objects, operator, prometheus, client, viewer
):
    docs = objects["namespace-scoped"]
    watched = named(docs, "ConfigMap", "meshboard")["data"]["MESHBOARD_WATCH_NAMESPACES"].split(",")
    cluster = Cluster.objects.create(
        name="lab",
        kubeconfig_path=str(kubeapi.kubeconfig),
        prometheus_url=prometheus.url,
        watched_namespaces=watched,
    )

    made = _run_everything(kubeapi, cluster, operator)

    bound = _check(docs, made)
    assert {g.namespace for grants_ in bound.values() for g in grants_} == set(watched), "RoleBindings only"
    # One call per kind per watched namespace: every collector rule is used in every watched namespace.
    collector_requests = [r for r in made["meshboard-collector"] if r.is_resource]
    per_namespace = defaultdict(set)
    for request in collector_requests:
        assert request.namespace in watched, f"{request} is outside the watched namespaces"
        per_namespace[request.namespace].add((request.verb, request.group, request.rule_resource))
    for namespace in watched:
        rules = [g.rule for g in bound["meshboard-collector"] if g.namespace == namespace]
        assert per_namespace[namespace] == set().union(*(granted(rule) for rule in rules)), namespace
    # Per namespace: its Namespace object, the namespaced built-in kinds, the SMI kinds, the namespaced optional kinds
    # (canaries, metrictemplates, ingresses, OSM's policy kinds; not the cluster-scoped ingressclasses), meshconfigs,
    # meshrootcertificates and Istio's kinds.
    namespaced = [r for r in (*collector.BUILTIN, *collector.SMI, *collector.OPTIONAL) if r.namespaced]
    calls = 1 + len(namespaced) + 2 + len(collector.ISTIO_KINDS)
    assert len(collector_requests) == len(watched) * calls
    assert len(made["meshboard-collector"]) == len(collector_requests) + 2  # + /version, /apis

    # What the collector could not see is said, in sentences, on the Mesh page.
    run = CollectionRun.objects.filter(cluster=cluster, kind=CollectionRun.Kind.CLUSTER).latest("started_at")
    expected = collector.scope_warnings(tuple(watched))
    assert run.warnings[: len(expected)] == expected
    assert any("No OSM controller in the watched namespaces" in w for w in run.warnings)
    client.force_login(viewer)
    page = html.unescape(client.get(reverse("policies:mesh")).content.decode())
    for sentence in expected:
        assert sentence in page
    # Every page beside the data's age says the view is narrowed, linking to those sentences.
    scope = f"namespace-scoped: {', '.join(watched)} only"
    for url in ("/", "/graph/", "/policies/", "/splits/", "/services/bookstore/bookstore/"):
        page = html.unescape(client.get(url).content.decode())
        assert scope in page, url
        assert f"#warnings-{cluster.pk}-cluster" in page, url

    # The weight writer's Role is bound in every watched namespace, since a split may live in any of them; the write
    # above used it in one. Nothing else is bound to it.
    assert {g.namespace for g in bound["meshboard-web"]} == set(watched)
    assert {(r.namespace, r.verb) for r in made["meshboard-web"]} == {("bookstore", "get"), ("bookstore", "patch")}
