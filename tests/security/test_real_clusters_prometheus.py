"""The metrics collector against Prometheus guarded as real deployments guard it: the real Prometheus with
--web.config.file (HTTPS from a lab CA, basic auth with bcrypt hashes), and a real Envoy in front of Prometheus that
passes only a known bearer token (as Azure Monitor's managed Prometheus or kube-rbac-proxy do). The password and the
token come from files (or an environment variable) and are never stored in the database; a rotated token file is
used by the next request, without a restart. Each failure says which credential or CA was used and what to fix.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.clusters.freshness import freshness
from apps.clusters.models import Cluster, CollectionRun
from apps.metrics.prometheus import PrometheusError, gateway_for
from apps.metrics.services import collect_and_record as collect_metrics
from lab.kubeapi.tls import CertificateAuthority
from lab.prometheus import backfill_openmetrics
from lab.prometheus_secure import BearerProxy, SecuredPrometheus
from tests.helpers import bookbuyer_to_bookstore_openmetrics

pytestmark = pytest.mark.django_db

STEP = 15.0
T0 = (int(time.time()) // 3600 - 3) * 3600
AT = T0 + 900.0
USER, PASSWORD = "meshboard", "correct horse battery staple"
REFUSED = "Prometheus: Prometheus refused access. Check the credentials or proxy in the cluster's Prometheus URL."


def _openmetrics() -> str:
    return bookbuyer_to_bookstore_openmetrics(T0, AT, STEP)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """The real Prometheus over HTTPS (a lab CA) with basic auth."""
    workdir = tmp_path_factory.mktemp("secured-prometheus")
    backfill_openmetrics(_openmetrics(), workdir / "data")
    server = SecuredPrometheus(
        workdir,
        {"global": {"scrape_interval": "15s"}},
        ca=CertificateAuthority("prometheus-ca"),
        users={USER: PASSWORD},
        tsdb_dir=workdir / "data",
        retention="3650d",
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bearer_proxy(prometheus_factory, tmp_path_factory):
    """A real Envoy accepting the bearer tokens `token-a` and `token-b` in front of a plain Prometheus."""
    upstream = prometheus_factory(_openmetrics(), name="behind-envoy")
    proxy = BearerProxy(tmp_path_factory.mktemp("bearer-envoy"), upstream.port, ["token-a", "token-b"]).start()
    yield proxy
    proxy.stop()


def _secret_file(path: Path, text: str) -> Path:
    """Written as kubelet rotates a projected token: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def _basic_cluster(secured, tmp_path, password=PASSWORD, **fields) -> Cluster:
    return Cluster.objects.create(
        name="secured",
        kubeconfig_path="/nonexistent/kubeconfig",
        prometheus_url=secured.url,
        prometheus_ca_file=str(secured.ca_path),
        prometheus_username=USER,
        prometheus_password_file=str(_secret_file(tmp_path / "password", password + "\n")),
        **fields,
    )


def _ok(cluster: Cluster) -> CollectionRun:
    run, error = collect_metrics(cluster, at=AT)
    assert error is None and run.status in (CollectionRun.Status.OK, CollectionRun.Status.PARTIAL), run.error
    assert not run.counts.get("failed_queries"), run.error
    assert run.counts["edges"] >= 1  # the bookbuyer -> bookstore-v1 traffic came through
    return run


def test_metrics_through_tls_and_basic_auth(secured, tmp_path):
    cluster = _basic_cluster(secured, tmp_path)

    _ok(cluster)

    stored = Cluster.objects.values().get(pk=cluster.pk)
    assert PASSWORD not in str(stored)  # the database holds the file's path, not the password


def test_the_password_may_come_from_an_environment_variable(secured, monkeypatch):
    monkeypatch.setenv("MESHBOARD_TEST_PROMETHEUS_PASSWORD", PASSWORD)
    cluster = Cluster.objects.create(
        name="secured",
        kubeconfig_path="/nonexistent/kubeconfig",
        prometheus_url=secured.url,
        prometheus_ca_file=str(secured.ca_path),
        prometheus_username=USER,
        prometheus_password_env="MESHBOARD_TEST_PROMETHEUS_PASSWORD",
    )
    _ok(cluster)

    monkeypatch.delenv("MESHBOARD_TEST_PROMETHEUS_PASSWORD")
    run, error = collect_metrics(cluster, at=AT)
    assert error is not None and run.status == CollectionRun.Status.FAILED
    assert "the workers have no environment variable MESHBOARD_TEST_PROMETHEUS_PASSWORD" in run.error


def test_a_wrong_password_names_the_user_and_where_the_password_came_from(secured, tmp_path):
    cluster = _basic_cluster(secured, tmp_path, password="Tr0ub4dor&3")

    run, error = collect_metrics(cluster, at=AT)

    assert error is not None and error.status == 401 and run.status == CollectionRun.Status.FAILED
    assert (
        f"Prometheus at 127.0.0.1:{secured.port} refused access (401) to the basic-auth user 'meshboard' " in run.error
    )
    assert f"(password from the file {tmp_path / 'password'})" in run.error
    assert "Tr0ub4dor" not in run.error  # the password itself is never shown
    assert freshness(cluster, CollectionRun.Kind.METRICS).summary == REFUSED


def test_a_prometheus_certificate_from_an_unknown_ca_says_to_give_the_ca(secured, tmp_path):
    cluster = _basic_cluster(secured, tmp_path)
    Cluster.objects.filter(pk=cluster.pk).update(prometheus_ca_file="")
    cluster.refresh_from_db()

    run, error = collect_metrics(cluster, at=AT)

    assert error is not None and not error.transient and run.status == CollectionRun.Status.FAILED
    assert "TLS: the CA in the system's CA bundle does not sign Prometheus's certificate" in run.error
    assert "Give the cluster a CA file for Prometheus (add_cluster --prometheus-ca-file)." in run.error
    assert "cannot reach" not in run.error
    assert freshness(cluster, CollectionRun.Kind.METRICS).summary == (
        "Prometheus: Meshboard does not trust Prometheus's certificate: its CA is not in the cluster's Prometheus CA "
        "file (add_cluster --prometheus-ca-file). Do not turn verification off."
    )

    other = CertificateAuthority("someone-else").write(tmp_path / "other-ca.crt")
    Cluster.objects.filter(pk=cluster.pk).update(prometheus_ca_file=str(other))
    cluster.refresh_from_db()
    run, _ = collect_metrics(cluster, at=AT)
    assert f"TLS: the CA in the CA bundle {other} does not sign Prometheus's certificate" in run.error


def test_a_url_naming_a_host_the_certificate_does_not_hold_says_so(secured, tmp_path):
    # Same CA, a certificate for the Service's DNS name only, reached by address.
    names_only = SecuredPrometheus(
        tmp_path / "p2", {"global": {}}, ca=secured.ca, users={USER: PASSWORD}, tls_names=("prometheus.svc",)
    ).start()
    try:
        cluster = _basic_cluster(names_only, tmp_path)
        run, error = collect_metrics(cluster, at=AT)
    finally:
        names_only.stop()

    assert error is not None and not error.transient
    assert f"TLS: Prometheus's certificate is not valid for the name in the URL 127.0.0.1:{names_only.port}" in (
        run.error
    )
    assert "certificate is not valid for '127.0.0.1'" in run.error
    assert "Use a name the certificate holds in the cluster's Prometheus URL." in run.error
    assert freshness(cluster, CollectionRun.Kind.METRICS).summary == (
        "Prometheus: Prometheus's certificate does not hold the name in the cluster's Prometheus URL. Use a name it "
        "holds."
    )


def test_metrics_through_a_bearer_token_proxy_and_a_rotated_token_file(bearer_proxy, tmp_path):
    token_file = _secret_file(tmp_path / "token", "token-a\n")
    cluster = Cluster.objects.create(
        name="azure",
        kubeconfig_path="/nonexistent/kubeconfig",
        prometheus_url=bearer_proxy.url,
        prometheus_bearer_token_file=str(token_file),
    )
    _ok(cluster)

    # The token is rotated to one the proxy does not accept: the next collection sends it, and says so.
    _secret_file(token_file, "token-expired")
    run, error = collect_metrics(cluster, at=AT)
    assert error is not None and error.status == 401 and run.status == CollectionRun.Status.FAILED
    assert f"refused access (401) to the bearer token from {token_file}, read 0 s ago" in run.error
    assert "token-expired" not in run.error
    assert freshness(cluster, CollectionRun.Kind.METRICS).summary == REFUSED

    # Rotated again, to a good one: picked up without a restart.
    _secret_file(token_file, "token-b")
    _ok(cluster)


def test_one_gateway_reads_the_token_file_again_when_it_changes(bearer_proxy, tmp_path):
    token_file = _secret_file(tmp_path / "token", "token-a")
    cluster = Cluster.objects.create(
        name="azure",
        kubeconfig_path="/nonexistent/kubeconfig",
        prometheus_url=bearer_proxy.url,
        prometheus_bearer_token_file=str(token_file),
    )
    with gateway_for(cluster) as gateway:
        assert gateway.build_version()
        token_file.write_text("token-b")  # rewritten in place this time
        os.utime(token_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))
        assert gateway.build_version()
        token_file.write_text("nope")
        with pytest.raises(PrometheusError, match=r"refused access \(401\) to the bearer token from"):
            gateway.build_version()

    token_file.unlink()
    with gateway_for(cluster) as gateway, pytest.raises(PrometheusError, match="cannot be read"):
        gateway.build_version()


def test_add_cluster_takes_the_prometheus_ca_and_credentials(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    call_command(
        "add_cluster",
        "aks",
        "--kubeconfig",
        str(kubeconfig),
        "--prometheus-url",
        "https://prometheus.example:9090",
        "--prometheus-ca-file",
        "/etc/meshboard/prometheus-ca.crt",
        "--prometheus-username",
        "meshboard",
        "--prometheus-password-env",
        "PROMETHEUS_PASSWORD",
    )
    cluster = Cluster.objects.get(name="aks")
    assert (cluster.prometheus_ca_file, cluster.prometheus_username, cluster.prometheus_password_env) == (
        "/etc/meshboard/prometheus-ca.crt",
        "meshboard",
        "PROMETHEUS_PASSWORD",
    )
    call_command(
        "add_cluster",
        "aks",
        "--kubeconfig",
        str(kubeconfig),
        "--prometheus-url",
        "https://amw.prometheus.monitor.azure.com",
        "--prometheus-bearer-token-file",
        "/var/run/secrets/azure/prometheus-token",
    )
    cluster.refresh_from_db()
    assert cluster.prometheus_bearer_token_file == "/var/run/secrets/azure/prometheus-token"
    assert cluster.prometheus_username == "" and cluster.prometheus_password_env == ""
    for bad, message in (
        (["--prometheus-username", "u"], "Give the password's file or environment variable too."),
        (["--prometheus-password-file", "/p"], "Give the basic-auth user the password belongs to."),
        (
            ["--prometheus-username", "u", "--prometheus-password-file", "/p", "--prometheus-bearer-token-file", "/t"],
            "Use basic auth or a bearer token, not both.",
        ),
        (["--prometheus-username", "u", "--prometheus-password-env", "NOT A NAME"], "environment variable name"),
    ):
        with pytest.raises(CommandError, match=message):
            call_command("add_cluster", "aks", "--kubeconfig", str(kubeconfig), *bad)


def test_no_credentials_says_which_options_give_them(bearer_proxy):
    cluster = Cluster.objects.create(
        name="azure", kubeconfig_path="/nonexistent/kubeconfig", prometheus_url=bearer_proxy.url
    )

    run, error = collect_metrics(cluster, at=AT)

    assert error is not None and error.status == 401
    assert "refused access (401) and Meshboard sent no credentials" in run.error
    assert "--prometheus-bearer-token-file" in run.error
    assert freshness(cluster, CollectionRun.Kind.METRICS).summary == REFUSED
