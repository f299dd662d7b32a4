"""OSM's policy API on the pages, through HTTP: a service page says how the service is reached from outside (Ingress
host/path -> IngressBackend -> port, over what, from whom) or that it is not, and lists the UpstreamTrafficSettings
and Retry policies that apply to it; the Mesh page shows egress, the Egress policies and the certificates."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime, timedelta

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from apps.mesh.services import collect_and_record
from tests.helpers import HOSTILE, assert_shown_as_text

POLICY = ("policy.openservicemesh.io", "v1alpha1")


def _custom(kubeapi) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(k8s_config.new_client_from_config(str(kubeapi.kubeconfig)))


def _section(page: str, start: str, end: str = "</section>") -> str:
    part = page[page.index(start) :]
    return part[: part.index(end)]


def _text(page: str) -> str:
    """The page's words without tags, entities decoded, one space between them: what a reader sees."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_a_service_page_says_how_it_is_reached_from_outside_over_http(client, viewer, bookstore):
    client.force_login(viewer)

    page = client.get("/services/bookstore/bookstore/").content.decode()

    ingress = _section(page, 'id="ingress"')
    text = _text(ingress)
    assert "bookstore/bookstore (class nginx)" in text
    assert "bookstore.example.com/ Prefix" in text and "14001 → 14001" in text
    assert "IngressBackend bookstore/bookstore-http: port 14001, HTTP (no TLS" in text
    assert "from Service ingress-nginx/ingress-nginx-controller" in text
    assert 'href="/services/ingress-nginx/ingress-nginx-controller/"' in ingress
    assert "Not reachable" not in text


def test_a_service_page_lists_the_upstream_traffic_settings_and_retries_that_apply(client, viewer, bookstore):
    client.force_login(viewer)

    page = client.get("/services/bookstore/bookstore/").content.decode()

    text = _text(_section(page, 'id="resilience"'))
    assert "UpstreamTrafficSetting bookstore/bookstore-rate-limit" in text
    assert "at most connections: 100" in text and "connect timeout: 5s" in text
    assert "at most pending requests: 100" in text
    assert "route .*a-book.*new: 480 requests per minute, burst 8, then HTTP 429" in text
    assert "bookbuyer/bookbuyer-to-bookstore" in text and "ServiceAccount bookbuyer/bookbuyer" in text
    assert "on 5xx, up to 3 times, 1s per try, backoff from 100ms" in text
    assert "OSM ignores these Retry policies" not in text  # the seed turns enableRetryPolicy on


def test_a_backend_behind_the_mtls_route_shows_the_client_certificate_and_the_principal(client, viewer, bookstore):
    client.force_login(viewer)

    page = client.get("/services/bookstore/bookstore-v1/").content.decode()

    text = _text(_section(page, 'id="ingress"'))
    assert "bookstore.example.com/v1" in text
    assert "IngressBackend bookstore/bookstore-mtls: port 14001, HTTPS with mTLS, client certificate validated" in text
    assert "AuthenticatedPrincipal ingress-nginx.ingress-nginx.cluster.local" in text


def test_a_service_without_ingress_settings_or_retries_says_so(client, viewer, bookstore):
    client.force_login(viewer)

    page = client.get("/services/bookwarehouse/bookwarehouse/").content.decode()

    text = _text(page)
    assert "Not reachable from outside the mesh: no Ingress routes to it and no IngressBackend admits it." in text
    assert "No UpstreamTrafficSetting applies to it (none in bookwarehouse has host" in text
    assert "bookwarehouse.bookwarehouse.svc.cluster.local" in text
    assert "No Retry policy names it" in text


def test_the_ingress_controllers_page_names_the_ingress_backends_that_admit_it(client, viewer, bookstore):
    client.force_login(viewer)

    page = client.get("/services/ingress-nginx/ingress-nginx-controller/").content.decode()

    text = _text(page)
    assert (
        "Its pods are an ingress source: IngressBackend bookstore/bookstore-http, IngressBackend "
        "bookstore/bookstore-mtls admit their traffic into the mesh." in text
    )


def test_an_ingress_path_no_ingress_backend_admits_is_refused_on_the_page_and_checked(
    client, viewer, bookstore, kubeapi
):
    _custom(kubeapi).delete_namespaced_custom_object(*POLICY, "bookstore", "ingressbackends", "bookstore-http")
    collect_and_record(bookstore)
    client.force_login(viewer)

    page = client.get("/services/bookstore/bookstore/").content.decode()
    text = _text(_section(page, 'id="ingress"'))
    assert "no IngressBackend: its sidecar refuses the ingress controller (MB-INGRESS-004)" in text
    assert "Not reachable from outside: an Ingress routes to it, but no IngressBackend admits" in text
    assert 'data-code="MB-INGRESS-004"' in client.get("/mesh/").content.decode()


def test_the_mesh_page_shows_egress_the_egress_policies_and_the_certificates(client, viewer, bookstore):
    client.force_login(viewer)

    page = client.get("/mesh/").content.decode()

    text = _text(page)
    assert "Global egress on: meshed pods may reach any destination outside the mesh" in text
    assert "Egress policy on: OSM applies Egress policies" in text
    row = _text(_section(page, 'data-egress="bookbuyer/bookbuyer-external"', "</tr>"))
    assert "books.example.com" in row and "80/http" in row and "every request" in row
    assert "ServiceAccount bookbuyer/bookbuyer" in row
    certificates = _text(_section(page, "<h3>Certificates</h3>", "<h3>Namespaces</h3>"))
    assert "Provider Tresor (osm-controller --certificate-manager)" in certificates
    assert "Service certificate validity 24h, 2048-bit keys" in certificates
    assert "SAN ingress-nginx.ingress-nginx.cluster.local, valid 24h" in certificates
    assert "used (--enable-mesh-root-certificate)" in certificates
    root = _text(_section(page, 'data-root="osm-system/osm-mesh-root-certificate"', "</tr>"))
    assert "active" in root and "Tresor CA in Secret osm-system/osm-ca-bundle" in root and "cluster.local" in root


def test_the_mesh_page_shows_a_rotation_stuck_in_an_intermediate_state(client, viewer, bookstore, kubeapi):
    since = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _custom(kubeapi).patch_namespaced_custom_object_status(
        "config.openservicemesh.io",
        "v1alpha2",
        "osm-system",
        "meshrootcertificates",
        "osm-mesh-root-certificate",
        {"status": {"state": "validatingRollout", "conditions": [{"type": "Ready", "lastTransitionTime": since}]}},
    )
    collect_and_record(bookstore)
    client.force_login(viewer)

    page = client.get("/mesh/").content.decode()

    root = _text(_section(page, 'data-root="osm-system/osm-mesh-root-certificate"', "</tr>"))
    assert "validatingRollout rotation in progress" in root
    finding = _section(page, 'data-code="MB-CERT-001"', "</li>")
    words = _text(finding)
    assert "in state validatingRollout since" in words
    assert "longer than the service certificates' validity (24 h)" in words


def test_it_says_osm_ignores_retries_when_the_retry_policy_is_off(client, viewer, bookstore, kubeapi):
    _custom(kubeapi).patch_namespaced_custom_object(
        "config.openservicemesh.io",
        "v1alpha2",
        "osm-system",
        "meshconfigs",
        "osm-mesh-config",
        {"spec": {"featureFlags": {"enableRetryPolicy": False, "enableEgressPolicy": False}}},
    )
    collect_and_record(bookstore)
    client.force_login(viewer)

    service = _text(client.get("/services/bookstore/bookstore/").content.decode())
    mesh = client.get("/mesh/").content.decode()

    assert "OSM ignores these Retry policies: featureFlags.enableRetryPolicy is off (MB-RETRY-001)." in service
    assert "Egress policy off: OSM ignores Egress policies" in _text(mesh)
    assert 'data-code="MB-RETRY-001"' in mesh and 'data-code="MB-EGRESS-001"' in mesh


def test_hostile_strings_of_the_policy_api_show_as_text(client, viewer, bookstore, kubeapi):
    api = _custom(kubeapi)
    api.patch_namespaced_custom_object(
        *POLICY, "bookbuyer", "egresses", "bookbuyer-external", {"spec": {"hosts": [HOSTILE]}}
    )
    api.patch_namespaced_custom_object(
        *POLICY,
        "bookstore",
        "upstreamtrafficsettings",
        "bookstore-rate-limit",
        {"spec": {"httpRoutes": [{"path": HOSTILE, "rateLimit": {"local": {"requests": 1, "unit": "second"}}}]}},
    )
    api.patch_namespaced_custom_object(
        *POLICY,
        "bookstore",
        "ingressbackends",
        "bookstore-http",
        {
            "spec": {
                "sources": [
                    {"kind": "Service", "namespace": HOSTILE, "name": HOSTILE},
                    {"kind": HOSTILE, "name": HOSTILE},
                ]
            }
        },
    )
    api.patch_namespaced_custom_object(
        *POLICY,
        "bookbuyer",
        "retries",
        "bookbuyer-to-bookstore",
        {
            "spec": {
                "retryPolicy": {
                    "retryOn": HOSTILE,
                    "perTryTimeout": HOSTILE,
                    "numRetries": 3,
                    "retryBackoffBaseInterval": "1s",
                }
            }
        },
    )
    _run, error = collect_and_record(bookstore)
    assert error is None, error
    client.force_login(viewer)

    mesh = client.get("/mesh/").content.decode()
    service = client.get("/services/bookstore/bookstore/")

    assert service.status_code == 200
    page = service.content.decode()
    assert_shown_as_text(_section(mesh, 'data-egress="bookbuyer/bookbuyer-external"', "</tr>"))
    assert_shown_as_text(mesh)
    assert_shown_as_text(_section(page, 'id="ingress"'))
    assert_shown_as_text(_section(page, 'id="resilience"'))
    assert_shown_as_text(page)
    # A source Service whose name breaks Kubernetes' rules gets no link, and the check says it does not exist.
    assert 'href="/services/&lt;' not in page
    assert 'data-code="MB-INGRESS-005"' in mesh
