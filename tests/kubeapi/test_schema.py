"""Custom resources are validated against the CRD files' openAPIV3Schema, as a structural schema."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from lab.kubeapi import KubeAPIServer, SeedError
from lab.seeds import Seed

from .conftest import raw

TS = "/apis/split.smi-spec.io/v1alpha2/namespaces/demo/trafficsplits"


def _create_split(server, spec: dict, name: str = "s"):
    body = {
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": "TrafficSplit",
        "metadata": {"name": name},
        "spec": spec,
    }
    return raw(server, "POST", TS, body)


@pytest.mark.parametrize("weight", [33.5, -1, 0, 100])
def test_it_accepts_any_number_as_a_trafficsplit_weight_as_the_crd_allows(server, weight):
    reply = _create_split(server, {"service": "web", "backends": [{"service": "web-v1", "weight": weight}]})
    assert reply.status == 201
    assert reply.body["spec"]["backends"][0]["weight"] == weight


def test_it_words_a_type_error_like_the_apiserver(server):
    reply = _create_split(server, {"service": "web", "backends": [{"service": "web-v1", "weight": "string"}]})
    assert reply.status == 422
    assert reply.body["reason"] == "Invalid"
    assert reply.body["details"]["kind"] == "TrafficSplit"
    assert reply.body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "string": spec.backends[0].weight in body must be of type number: "string"',
            "field": "spec.backends[0].weight",
        }
    ]
    assert reply.body["message"].startswith('TrafficSplit.split.smi-spec.io "s" is invalid: spec.backends[0].weight')


def test_it_reports_every_missing_required_field(server):
    reply = _create_split(server, {"backends": [{"service": "web-v1"}]})
    assert reply.status == 422
    causes = {(c["field"], c["reason"]) for c in reply.body["details"]["causes"]}
    assert causes == {("spec.service", "FieldValueRequired"), ("spec.backends[0].weight", "FieldValueRequired")}
    assert reply.body["message"].count("Required value") == 2


def test_it_reports_enum_violations_as_not_supported(server):
    body = {
        "apiVersion": "access.smi-spec.io/v1alpha3",
        "kind": "TrafficTarget",
        "metadata": {"name": "tt"},
        "spec": {
            "destination": {"kind": "ServiceAccount", "name": "web"},
            "rules": [{"kind": "GRPCRoute", "name": "r"}],
            "sources": [{"kind": "ServiceAccount", "name": "a"}],
        },
    }
    reply = raw(server, "POST", "/apis/access.smi-spec.io/v1alpha3/namespaces/demo/traffictargets", body)
    assert reply.status == 422
    [cause] = reply.body["details"]["causes"]
    assert (cause["field"], cause["reason"]) == ("spec.rules[0].kind", "FieldValueNotSupported")
    assert cause["message"].startswith('Unsupported value: "GRPCRoute": supported values: "HTTPRouteGroup"')


def test_it_checks_integer_against_number_and_bounds_and_one_of(server):
    mrc = {
        "apiVersion": "config.openservicemesh.io/v1alpha2",
        "kind": "MeshRootCertificate",
        "metadata": {"name": "mrc"},
        "spec": {"provider": {}},
    }
    reply = raw(server, "POST", "/apis/config.openservicemesh.io/v1alpha2/namespaces/demo/meshrootcertificates", mrc)
    assert reply.status == 422
    assert any("oneOf" in c["message"] for c in reply.body["details"]["causes"])
    upstream = {
        "apiVersion": "policy.openservicemesh.io/v1alpha1",
        "kind": "UpstreamTrafficSetting",
        "metadata": {"name": "u"},
        "spec": {"host": "web.demo.svc.cluster.local", "connectionSettings": {"tcp": {"maxConnections": 1.5}}},
    }
    reply = raw(
        server, "POST", "/apis/policy.openservicemesh.io/v1alpha1/namespaces/demo/upstreamtrafficsettings", upstream
    )
    assert reply.status == 422
    [cause] = reply.body["details"]["causes"]
    assert cause["field"] == "spec.connectionSettings.tcp.maxConnections"
    assert "must be of type integer" in cause["message"]


def test_it_prunes_unknown_fields_with_a_warning_and_applies_defaults(server, custom):
    reply = _create_split(server, {"service": "web", "backends": [], "extra": 1})
    assert reply.status == 201
    assert "extra" not in reply.body["spec"]
    assert 'unknown field \\"spec.extra\\"' in reply.headers["Warning"]
    config = custom.get_namespaced_custom_object(
        "config.openservicemesh.io", "v1alpha2", "demo", "meshconfigs", "osm-mesh-config"
    )
    assert config["spec"]["sidecar"]["tlsMinProtocolVersion"] == "TLSv1_2"
    assert config["spec"]["sidecar"]["logLevel"] == "error"


def test_it_validates_patches_against_the_schema_through_the_client(custom):
    with pytest.raises(client.ApiException) as caught:
        custom.patch_namespaced_custom_object(
            "split.smi-spec.io", "v1alpha2", "demo", "trafficsplits", "web-split", {"spec": {"service": 7}}
        )
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["details"]["causes"][0]["field"] == "spec.service"


def test_it_refuses_at_start_a_seed_object_the_schema_rejects():
    seed = Seed(
        name="broken",
        objects=[
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}},
            {
                "apiVersion": "split.smi-spec.io/v1alpha2",
                "kind": "TrafficSplit",
                "metadata": {"name": "bad", "namespace": "demo"},
                "spec": {"service": "web", "backends": [{"service": "a", "weight": "ten"}]},
            },
        ],
    )
    with pytest.raises(SeedError, match=r"TrafficSplit demo/bad: .*must be of type number"):
        KubeAPIServer(seed)
