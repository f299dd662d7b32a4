"""The RBAC in deploy/kubernetes fits the code: run the cluster collector, the metrics collector and a weight write
against the Kubernetes API stand-in, map every request in its log to what RBAC sees (verb, API group, resource,
namespace, name), and check it against the rules the rendered overlay binds to the identity that makes it.

The stand-in checks no credentials, so each request is attributed by the phase that made it: the cluster
collector runs as `meshboard-collector` (the `cluster` worker), the weight write as `meshboard-web`, the metrics
collector as `meshboard` (no binding: it must not call the API server at all).

For each overlay: every request is allowed; every (verb, group, resource) a rule grants is used by some request;
no wildcard; and the only verb beyond get/list/watch is `patch` on split.smi-spec.io trafficsplits. /version and
/apis are allowed by the API server's own system:discovery role, which the test holds as a fixed rule (rbac.py).
"""

from __future__ import annotations

import html
import time
from collections import defaultdict

import pytest
from django.urls import reverse

from apps.canary.services import change_weights
from apps.canary.weights import BackendWeight, WeightChangeRequest
from apps.clusters.models import Cluster, CollectionRun
from apps.mesh import collector
from apps.mesh.models import TrafficSplit
from apps.mesh.services import collect_and_record
from apps.metrics.services import collect_and_record as collect_metrics
from lab.metrics_data import OpenMetrics, envoy_edge, sample_times

from .conftest import named
from .rbac import (
    DISCOVERY_RULES,
    READ_VERBS,
    Attributes,
    Grant,
    allows,
    grants,
    grants_of,
    request_attributes,
    wildcards,
)

pytestmark = pytest.mark.django_db

STEP = 15.0
T0 = (int(time.time()) // 3600 - 3) * 3600
AT = T0 + 900.0


@pytest.fixture(scope="module")
def prometheus(prometheus_factory):
    """A real Prometheus holding a little bookstore traffic, for the metrics collector."""
    om = OpenMetrics(sample_times(T0, AT, STEP))
    source = {
        "source_namespace": "bookbuyer",
        "source_service": "bookbuyer",
        "source_pod_name": "bookbuyer-7d9c-abcde",
        "source_workload_kind": "Deployment",
        "source_workload_name": "bookbuyer",
    }
    envoy_edge(om, source, "bookstore/bookstore-v1|14001", rps_by_class={"2": 3.0})
    return prometheus_factory(om.text(), name="deploy-rbac")


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
    split = TrafficSplit.objects.get(cluster=cluster, namespace="bookstore", name="bookstore-split")
    change = WeightChangeRequest(
        namespace="bookstore",
        split="bookstore-split",
        backends=(BackendWeight("bookstore-v1", 50), BackendWeight("bookstore-v2", 50)),
        resource_version=split.resource_version,
    )
    outcome = change_weights(cluster, operator, change)
    assert outcome.applied, outcome.record.reason
    made["meshboard-web"] = _attributes(server)
    return made


def _attributes(server) -> list[Attributes]:
    out = []
    for record in server.requests.entries:
        assert 200 <= record.status < 300, f"{record.method} {record.path} answered {record.status}"
        attributes = request_attributes(record.method, record.path, record.query)
        if attributes.is_resource:  # the stand-in's own verb agrees with the mapping
            assert attributes.verb == record.verb, (record, attributes)
        out.append(attributes)
    return out


def _check(docs: list[dict], made: dict[str, list[Attributes]]) -> dict[str, list[Grant]]:
    bound = {account: grants_of(docs, account) for account in made}
    # Every request is allowed for the identity that made it.
    for account, requests in made.items():
        for request in requests:
            ours = any(grant.allows(request) for grant in bound[account])
            builtin = any(allows(rule, request) for rule in DISCOVERY_RULES)
            assert ours or builtin, f"{account} may not {request}"
            if not request.is_resource:
                assert not ours, f"{request}: discovery is the API server's to grant, not ours"
    # Every (verb, group, resource) a rule grants is used by a request of that identity.
    for account, grant_list in bound.items():
        used = {(r.verb, r.group, r.resource) for r in made[account] if r.is_resource}
        for grant in grant_list:
            unused = grants(grant.rule) - used
            assert not unused, f"{grant.role} grants {account} {sorted(unused)}, which no request uses"
    # No wildcard; nothing beyond reading but `patch` on TrafficSplits.
    assert not wildcards(docs)
    for grant_list in bound.values():
        for grant in grant_list:
            assert not grant.rule.get("nonResourceURLs"), grant.role
            for verb, group, resource in grants(grant.rule):
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
    assert len(collector_requests) == 2 + 16 + 1
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
        per_namespace[request.namespace].add((request.verb, request.group, request.resource))
    for namespace in watched:
        rules = [g.rule for g in bound["meshboard-collector"] if g.namespace == namespace]
        assert per_namespace[namespace] == set().union(*(grants(rule) for rule in rules)), namespace
    # Per namespace: its Namespace object, the namespaced built-in kinds, the SMI kinds, canaries and meshconfigs.
    calls = 1 + sum(1 for r in (*collector.BUILTIN, *collector.SMI) if r.namespaced) + 2
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
