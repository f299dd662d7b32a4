"""The policies page and the Mesh page's checks through HTTP, as each persona sees them."""

from __future__ import annotations

import pytest
from django.utils import timezone
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from apps.mesh.services import collect_and_record
from apps.metrics import catalog
from apps.metrics.models import MetricsState, Refusal
from tests.helpers import HOSTILE, assert_shown_as_text, set_bookstore_backends


def test_it_sends_anonymous_users_to_the_login_page(client, db):
    response = client.get("/policies/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_refuses_a_user_without_a_role(client, nobody, bookstore):
    client.force_login(nobody)

    assert client.get("/policies/").status_code == 403
    assert client.get("/policies/?from=bookbuyer/bookbuyer&to=bookstore/bookstore").status_code == 403


def test_it_shows_the_smi_banner_the_matrix_and_the_checks_of_each_target(client, viewer, bookstore):
    client.force_login(viewer)

    html = client.get("/policies/").content.decode()

    assert 'data-mode="smi"' in html and "SMI mode: traffic is denied unless a TrafficTarget" in html
    assert 'data-pair="bookbuyer/bookbuyer→bookstore/bookstore"' in html
    assert "bookstore-service-routes" in html and "books-bought" in html and ".*a-book.*new" in html
    assert "TCPRoute <strong>mysql</strong>: ports 3306" in html
    assert 'data-target="bookstore/bookstore"' in html
    assert "no metrics collected yet" in html


def test_it_answers_can_a_talk_to_b_in_the_page_and_as_an_htmx_partial(client, viewer, bookstore):
    client.force_login(viewer)

    html = client.get("/policies/?from=workload+bookbuyer/bookbuyer&to=service+bookstore/bookstore").content.decode()
    assert 'data-answer="yes"' in html and "TrafficTarget bookstore/bookstore via HTTPRouteGroup" in html

    response = client.get(
        "/policies/?from=bookthief/bookthief&to=bookstore/bookstore",
        headers={"HX-Request": "true", "HX-Target": "verdict"},
    )
    part = response.content.decode()
    assert "<html" not in part and 'id="verdict"' in part and 'id="policies"' not in part
    assert 'data-answer="no"' in part and "source ServiceAccount bookthief/bookthief" in part
    assert response["Vary"].count("HX-Request") == 1

    part = client.get("/policies/", headers={"HX-Request": "true"}).content.decode()
    assert 'id="policies"' in part and "<html" not in part

    bad = client.get("/policies/?from=bookstore/nope&to=bookstore/bookstore").content.decode()
    assert "no service, workload or pod bookstore/nope" in bad


def test_it_says_targets_are_ignored_in_permissive_mode(client, viewer, bookstore):
    state = bookstore.mesh_state
    state.meshconfig["traffic"]["enablePermissiveTrafficPolicyMode"] = True
    state.save()
    client.force_login(viewer)

    html = client.get("/policies/").content.decode()

    assert 'data-mode="permissive"' in html and "TrafficTargets are ignored: the 4 below have no effect" in html
    assert "MB-ACCESS-004" in html


def test_it_shows_refused_traffic_by_workload_or_why_it_cannot(client, viewer, bookstore):
    now = timezone.now()
    state = MetricsState.objects.create(
        cluster=bookstore, collected_at=now, denials_unavailable_reason=catalog.DENIALS_NOT_KEPT
    )
    client.force_login(viewer)
    assert "not observable on this Prometheus: this Prometheus keeps none of the refusal counters" in (
        client.get("/policies/").content.decode()
    )

    state.denials_unavailable_reason = ""
    state.save()
    assert "No sidecar refused traffic" in client.get("/policies/").content.decode()

    def refusal(side, kind, namespace, app, workload, rate):
        Refusal.objects.create(
            cluster=bookstore,
            side=side,
            kind=kind,
            namespace=namespace,
            app=app,
            workload_kind="Deployment",
            workload_name=workload,
            rate=rate,
            collected_at=now,
        )

    # bookstore-v2 shares the app label "bookstore" with v1, but has its own workload and service account.
    refusal("caller", "passthrough", "bookstore", "bookstore", "bookstore-v2", 1.0)
    refusal("destination", "no-mtls", "bookwarehouse", "bookwarehouse", "bookwarehouse", 1.0)
    html = client.get("/policies/").content.decode()
    callers = html[html.index('class="refusing-callers"') : html.index('class="refusing-destinations"')]
    assert 'data-caller="bookstore/bookstore-v2"' in callers and 'data-caller="bookstore/bookstore"' not in callers
    assert "sent outside its routes (egress passthrough): <span" in callers and ">1</span> conn/s" in callers
    assert "bookwarehouse/bookwarehouse" in callers  # policy denies bookstore-v2 → bookwarehouse
    destinations = html[html.index('class="refusing-destinations"') :]
    assert "arrived without mTLS" in destinations and "bookstore/bookstore-v2" in destinations
    assert "Attributed by workload" in html


def test_it_lists_mesh_facts_namespaces_and_the_checks_on_the_mesh_page(client, viewer, bookstore):
    client.force_login(viewer)

    html = client.get("/mesh/").content.decode()

    for code in ("MB-AKS-001", "MB-AKS-002", "MB-AKS-003", "MB-AKS-004"):
        assert f'data-code="{code}"' in html
    assert "AKS cluster (nodes labelled kubernetes.azure.com/cluster)" in html
    assert "Permissive traffic policy mode</dt><dd>off" in html
    assert "Outbound IP range exclusions</dt><dd>(empty)" in html
    row = html[html.index('data-namespace="bookstore"') :]
    row = row[: row.index("</tr>")]
    assert "osm" in row and "enabled" in row
    part = client.get("/mesh/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in part and "MB-AKS-002" in part


def test_it_shows_the_split_checks_with_codes_on_the_splits_page(client, viewer, bookstore, kubeapi):
    set_bookstore_backends(
        kubeapi, [{"service": "bookstore-v1", "weight": -1}, {"service": "bookstore-v9", "weight": 2}]
    )
    collect_and_record(bookstore)
    client.force_login(viewer)

    html = client.get("/splits/").content.decode()

    assert "MB-SPLIT-004 bookstore-v1: weight -1 is negative" in html
    assert "MB-SPLIT-002 backend service bookstore/bookstore-v9 does not exist" in html


@pytest.mark.parametrize(
    ("path", "section_start"),
    [
        # the matches of the route group a TrafficTarget grants, in the policies' list of grants
        ("/policies/", 'data-route="bookstore-service-routes"'),
        # the same matches in the answer to "can bookbuyer talk to bookstore?"
        ("/policies/?from=bookbuyer/bookbuyer&to=bookstore/bookstore", 'id="verdict"'),
    ],
    ids=["grants", "verdict"],
)
def test_it_shows_hostile_route_matches_as_text(client, viewer, bookstore, kubeapi, path, section_start):
    api = k8s.CustomObjectsApi(k8s_config.new_client_from_config(str(kubeapi.kubeconfig)))
    api.patch_namespaced_custom_object(
        "specs.smi-spec.io",
        "v1alpha4",
        "bookstore",
        "httproutegroups",
        "bookstore-service-routes",
        {"spec": {"matches": [{"name": "buy-a-book", "pathRegex": HOSTILE, "headers": [{"x-evil": HOSTILE}]}]}},
    )
    collect_and_record(bookstore)
    client.force_login(viewer)

    html = client.get(path).content.decode()

    section = html[html.index(section_start) :]
    assert_shown_as_text(section[: section.index("</ul>")])
    assert_shown_as_text(html)


def test_it_shows_a_hostile_injection_annotation_on_the_mesh_page_as_text(client, viewer, bookstore, kubeapi):
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeapi.kubeconfig)))
    core.patch_namespace("bookstore", {"metadata": {"annotations": {"openservicemesh.io/sidecar-injection": HOSTILE}}})
    _run, error = collect_and_record(bookstore)
    assert error is None, error
    client.force_login(viewer)

    html = client.get("/mesh/").content.decode()

    row = html[html.index('data-namespace="bookstore"') :]
    assert_shown_as_text(row[: row.index("</tr>")])
    assert_shown_as_text(html)


def test_it_takes_the_examples_in_can_a_talk_to_b_from_the_cluster_shown(client, viewer, db):
    from apps.clusters.models import Cluster
    from apps.mesh.models import Service, Workload

    shop = Cluster.objects.create(name="shop", kubeconfig_path="unused")
    Service.objects.create(cluster=shop, namespace="shop", name="cart")
    Workload.objects.create(cluster=shop, namespace="shop", name="frontend", kind="Deployment")
    client.force_login(viewer)

    html = client.get("/policies/?cluster=shop").content.decode()

    assert 'placeholder="workload shop/frontend"' in html and 'placeholder="service shop/cart"' in html
    assert "bookbuyer" not in html and "bookstore" not in html
