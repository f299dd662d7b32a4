"""The rules of apps.policies.osm_policy that need no cluster: Go durations, target ports, what an IngressBackend
entry admits, and how a route's transport is said."""

from __future__ import annotations

import pytest

from apps.mesh.models import IngressBackend, Service
from apps.policies import osm_policy


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("500ms", 0.5), ("0", 0), ("-2m", -120)],
)
def test_it_reads_go_durations(text, seconds):
    assert osm_policy.go_duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "1d", "24 h", "1h junk", None, 24, "<script>"])
def test_it_refuses_what_go_would_not_parse(text):
    assert osm_policy.go_duration_seconds(text) is None


def test_it_takes_the_target_port_or_the_port_itself():
    assert osm_policy.target_port({"port": 80, "targetPort": 8080}) == 8080
    assert osm_policy.target_port({"port": 80}) == 80
    assert osm_policy.target_port({"port": 80, "targetPort": "http"}) == "http"


def test_an_entry_admits_its_service_on_the_target_port_and_on_any_named_one():
    entry = {"name": "web", "port": 8080}
    assert osm_policy.admits(entry, "web", 8080)
    assert not osm_policy.admits(entry, "web", 80)
    assert not osm_policy.admits(entry, "api", 8080)
    assert osm_policy.admits(entry, "web", "http")  # resolved per pod: not judged here


def test_it_finds_the_service_port_an_ingress_names_by_number_or_name():
    service = Service(namespace="a", name="web", ports=[{"name": "http", "port": 80}, {"name": "admin", "port": 9000}])
    assert osm_policy.service_port(service, 80)["name"] == "http"
    assert osm_policy.service_port(service, "admin")["port"] == 9000
    assert osm_policy.service_port(service, 81) is None and osm_policy.service_port(service, None) is None


def test_it_says_over_what_an_ingress_backend_admits():
    policy = IngressBackend(namespace="a", name="b")

    def transport(protocol, tls=None):
        return osm_policy.Admission(policy, 443, protocol, tls, []).transport

    assert transport("http").startswith("HTTP (no TLS")
    assert transport("HTTPS", {"skipClientCertValidation": False}) == "HTTPS with mTLS, client certificate validated"
    assert transport("https", {"skipClientCertValidation": True, "sniHosts": ["web.example.com"]}) == (
        "HTTPS, client certificate not validated (skipClientCertValidation), SNI web.example.com"
    )


def test_it_names_the_certificate_providers():
    assert [osm_policy.provider_name(k) for k in ("tresor", "cert-manager", "certManager", "vault", "", "x")] == [
        "Tresor",
        "cert-manager",
        "cert-manager",
        "Vault",
        "",
        "x",
    ]
