"""The metrics pre-flight's table logic on name sets, its one request, and the configuration it advises.

The name sets are what OSM v1.2 sidecars expose (a sample of the lab's "byo" Prometheus, which keeps everything), and
the same filtered by OSM's keep-list as OSM's Prometheus config applies it (apps.metrics.osm_scrape, copied
from osm@v1.2.4). Against real Prometheus servers: tests/metrics/test_preflight_lab.py and
tests/policies/test_preflight_lab.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from apps.metrics import preflight
from apps.metrics.prometheus import PrometheusGateway
from lab.mesh.prom import OSM_KEEP_LIST
from tests.conftest import free_port

# What one OSM v1.2 sidecar exposes, among ~900 names: everything Meshboard reads, its truncated headless-StatefulSet
# forms, and names nobody reads.
SIDECAR_NAMES = {
    "envoy_server_live",
    "envoy_cluster_upstream_rq_xx",
    "envoy_cluster_upstream_rq_total",
    "envoy_cluster_upstream_cx_active",
    "envoy_cluster_upstream_cx_tx_bytes_total",
    "envoy_cluster_upstream_cx_rx_bytes_total",
    "envoy_cluster_upstream_cx_total",
    "envoy_cluster_upstream_rq_time_bucket",
    "envoy_cluster_upstream_rq_time_count",
    "envoy_cluster_external_upstream_rq_time_bucket",
    "envoy_cluster_upstream_rq_retry",
    "envoy_cluster_upstream_rq_retry_success",
    "envoy_cluster_upstream_rq_pending_overflow",
    "envoy_cluster_mysql_3306_upstream_rq_retry",
    "envoy_http_local_rate_limit_rate_limited",
    "envoy_http_local_rate_limit_ok",
    "envoy_cluster_ssl_handshake",
    "envoy_cluster_ssl_connection_error",
    "envoy_cluster_ssl_fail_verify_san",
    "envoy_cluster_ssl_fail_verify_no_cert",
    "envoy_cluster_ssl_ciphers",
    "envoy_cluster_ssl_certificate_expiration_unix_time_seconds",
    "envoy_cluster_mysql_3306_upstream_cx_tx_bytes_total",
    "envoy_cluster_mysql_3306_upstream_cx_rx_bytes_total",
    "envoy_cluster_mysql_3306_upstream_cx_active",
    "envoy_cluster_mysql_3306_ssl_handshake",
    "envoy_listener_ssl_certificate_expiration_unix_time_seconds",
    "envoy_listener_no_filter_chain_match",
    "envoy_listener_admin_no_filter_chain_match",
    "envoy_rbac_denied",
    "envoy_rbac_allowed",
    "envoy_http_rds_inbound_14001_rbac_denied",
    "envoy_http_rds_outbound_14001_rbac_denied",
    "envoy_http_downstream_rq_xx",
    "envoy_tcp_passthrough_outbound_downstream_cx_total",
}
# The labels OSM's relabeling and Envoy's tag extraction put on envoy_cluster_upstream_rq_xx.
RQ_XX_LABELS = {
    "__name__",
    "instance",
    "job",
    "envoy_cluster_name",
    "envoy_response_code_class",
    "source_namespace",
    "source_pod_name",
    "source_service",
    "source_workload_kind",
    "source_workload_name",
}
SERIES_OSM_DROPS = {
    "envoy_cluster_upstream_rq_time_bucket",
    "envoy_cluster_ssl_handshake",
    "envoy_cluster_ssl_connection_error, envoy_cluster_ssl_fail_verify_*",
    "envoy_cluster_ssl_certificate_expiration_unix_time_seconds",
    "envoy_listener_ssl_certificate_expiration_unix_time_seconds",
    "envoy_listener_no_filter_chain_match",
    "envoy_rbac_denied (envoy_network_rbac_denied on older Envoys)",
    "envoy_http_rds_inbound_<port>_rbac_denied",
    'envoy_cluster_upstream_cx_total{envoy_cluster_name="passthrough-outbound"}',
    "envoy_http_local_rate_limit_rate_limited",
}
OSM_SUMMARY = (
    "Prometheus keeps 6 of 16 series and all 6 labels Meshboard reads; missing ones blank: latency, TLS evidence, "
    "certificate expiry, refused traffic, passthrough, rate-limited requests."
)


def osm_kept(names: set[str]) -> set[str]:
    """What OSM's Prometheus keeps of `names` (Prometheus anchors the regex at both ends)."""
    return {n for n in names if re.fullmatch(OSM_KEEP_LIST, n)}


def by_name(items: list[dict]) -> dict[str, dict]:
    return {i["name"]: i for i in items}


def test_it_finds_everything_on_a_prometheus_that_keeps_everything():
    items = preflight.evaluate(SIDECAR_NAMES, RQ_XX_LABELS)

    assert preflight.summary(items) == "Prometheus keeps all 16 series and all 6 labels Meshboard reads."
    statuses = {i["name"]: i["status"] for i in items}
    assert statuses.pop("osm_request_duration_ms_bucket") == "not needed"
    assert set(statuses.values()) == {"present"}
    assert preflight.advice({"items": items}) is None


def test_it_names_what_osms_keep_list_drops_and_what_goes_blank():
    items = preflight.evaluate(osm_kept(SIDECAR_NAMES), RQ_XX_LABELS)

    missing = {i["name"] for i in items if i["status"] == "missing"}
    assert missing == SERIES_OSM_DROPS | {"osm_request_duration_ms_bucket"}
    assert preflight.summary(items) == OSM_SUMMARY
    rows = by_name(items)
    assert rows["envoy_cluster_upstream_rq_time_bucket"]["cost"].startswith(
        "The p50, p95 and p99 columns and the latency charts are blank"
    )
    assert "mTLS" in rows["envoy_listener_no_filter_chain_match"]["cost"]
    assert (
        "egress passthrough"
        in rows['envoy_cluster_upstream_cx_total{envoy_cluster_name="passthrough-outbound"}']["cost"]
    )
    assert rows["envoy_cluster_upstream_rq_xx"]["status"] == "present"


def test_latency_from_osms_wasm_metric_is_missing_envoys_histogram_but_blanks_nothing():
    items = preflight.evaluate(osm_kept(SIDECAR_NAMES) | {"osm_request_duration_ms_bucket"}, RQ_XX_LABELS)

    rows = by_name(items)
    assert rows["envoy_cluster_upstream_rq_time_bucket"]["status"] == "missing"
    assert "comes from OSM's WASM metric" in rows["envoy_cluster_upstream_rq_time_bucket"]["cost"]
    assert rows["osm_request_duration_ms_bucket"]["status"] == "present"
    assert "blank: TLS evidence," in preflight.summary(items)  # latency is no longer among what goes blank


def test_headless_statefulset_names_count_as_the_stat_they_carry():
    names = {"envoy_cluster_upstream_rq_xx", "envoy_cluster_mysql_3306_upstream_cx_tx_bytes_total"}

    rows = by_name(preflight.evaluate(names, RQ_XX_LABELS))

    assert rows["envoy_cluster_upstream_cx_tx_bytes_total"]["status"] == "present"
    assert rows["envoy_cluster_upstream_cx_rx_bytes_total"]["status"] == "missing"


def test_missing_source_labels_say_who_loses_the_callers():
    labels = RQ_XX_LABELS - {"source_workload_kind", "source_workload_name", "source_service"}

    items = preflight.evaluate(SIDECAR_NAMES, labels)

    rows = by_name(items)
    assert rows["source_workload_name"]["status"] == "missing"
    assert "a canary's v1 and v2 (one app label) cannot be told apart" in rows["source_workload_name"]["cost"]
    assert rows["source_service"]["cost"].startswith("Callers are unknown")
    assert preflight.summary(items) == (
        "Prometheus keeps all 16 series and 3 of 6 labels Meshboard reads; missing ones blank: callers, "
        "caller workloads."
    )
    advice = preflight.advice({"items": items})
    assert advice.missing_labels == ["source_service", "source_workload_kind", "source_workload_name"]
    assert advice.missing_series == []


def test_it_says_could_not_check_when_prometheus_does_not_answer_the_label_request():
    gateway = PrometheusGateway(f"http://127.0.0.1:{free_port()}", connect_timeout=1, read_timeout=1)

    report = preflight.run(gateway, osm_kept(SIDECAR_NAMES), 1000.0, 1300.0)

    assert gateway.requests == 1
    labels = [i for i in report["items"] if i["kind"] == "label"]
    assert {i["status"] for i in labels} == {"unchecked"}
    assert all(i["reason"].startswith("listing label names: cannot reach Prometheus at 127.0.0.1:") for i in labels)
    assert report["summary"].startswith("Prometheus keeps 6 of 16 series Meshboard reads (its labels could not be")
    assert report["checked_at"] == 1300.0 and report["window_seconds"] == 300.0
    assert preflight.advice(report).missing_labels == []


def test_it_asks_nothing_when_there_is_no_request_counter_to_read_labels_from():
    gateway = PrometheusGateway(f"http://127.0.0.1:{free_port()}")

    report = preflight.run(gateway, {"up", "envoy_server_live"}, 1000.0, 1300.0)

    assert gateway.requests == 0
    reasons = {i["reason"] for i in report["items"] if i["kind"] == "label"}
    assert reasons == {"no envoy_cluster_upstream_rq_xx series in the last 300 s to read labels from"}
    assert by_name(report["items"])["envoy_cluster_upstream_rq_xx"]["status"] == "missing"
    assert "missing ones blank: requests, TCP bytes, active connections, latency" in report["summary"]


def test_the_keep_rule_is_osms_keep_list_plus_what_meshboard_reads():
    keep = preflight.keep_regex()

    kept = {n for n in SIDECAR_NAMES if re.fullmatch(keep, n)}

    assert osm_kept(SIDECAR_NAMES) <= kept  # nothing OSM's dashboards use is lost
    assert preflight.evaluate(kept, RQ_XX_LABELS) == preflight.evaluate(SIDECAR_NAMES, RQ_XX_LABELS)
    assert "envoy_cluster_mysql_3306_upstream_cx_tx_bytes_total" in kept  # headless StatefulSets' truncated names
    # Not everything: names nobody reads stay out.
    assert not kept & {"envoy_cluster_ssl_ciphers", "envoy_rbac_allowed", "envoy_http_downstream_rq_xx"}


def _promtool_check(config: dict, tmp_path: Path) -> None:
    """promtool's own check; the Debian build has no Kubernetes discovery, so the job gets a static target instead
    (the relabel rules and the keep regex, RE2 included, are what is checked)."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
        job["static_configs"] = [{"targets": ["127.0.0.1:15010"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_advice_is_configuration_prometheus_and_azure_monitor_accept(tmp_path):
    items = preflight.evaluate(osm_kept(SIDECAR_NAMES), RQ_XX_LABELS)
    advice = preflight.advice({"items": items})
    assert advice.missing_series == [i["name"] for i in items if i["status"] == "missing"]

    plain = yaml.safe_load(advice.prometheus)
    [job] = plain["scrape_configs"]
    assert job["job_name"] == "kubernetes-pods"  # OSM's name, where Meshboard reads the scrape interval from
    assert job["metric_relabel_configs"] == [
        {"source_labels": ["__name__"], "regex": preflight.keep_regex(), "action": "keep"}
    ]
    targets = {r.get("target_label") or r.get("replacement") for r in job["relabel_configs"]}
    assert {"source_namespace", "source_pod_name", "source_service", "source_workload_kind"} <= targets
    _promtool_check(plain, tmp_path)

    configmap = yaml.safe_load(advice.azure)
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"] == {"name": "ama-metrics-prometheus-config", "namespace": "kube-system"}
    assert "prometheus-config: |\n" in advice.azure  # a literal block, as people write it
    inner = yaml.safe_load(configmap["data"]["prometheus-config"])
    [azure_job] = inner["scrape_configs"]
    assert azure_job["metric_relabel_configs"] == job["metric_relabel_configs"]
    assert azure_job["relabel_configs"] == job["relabel_configs"]
    _promtool_check(inner, tmp_path)
