"""OSM's policy API on the lab mesh, end to end: real Envoys programmed as OSM v1.2.4 programs them for the bookstore
seed's IngressBackends, Egress, UpstreamTrafficSetting and Retry, real traffic, a real Prometheus (OSM's relabeling,
1 s scrapes), and the generator's own counts.

Each check compares an Envoy counter, as Prometheus last scraped it, with what the lab itself counted up to the
scrape's timestamp (the generator's clients and the apps, sampled every 0.1 s and interpolated), within 10 %:
- ingress: each bookstore pod's `mesh-http-conn-manager.rds-ingress` requests (`envoy_http_rds_ingress_downstream_
  rq_total`) against those the Internet clients sent through the ingress controller's Envoy and that pod answered
  (HTTP to bookstore's pods, HTTPS to bookstore-v1's);
- egress: bookbuyer's requests on cluster `books_example_com_80` against its egress client's;
- rate limit: bookstore's `http_local_rate_limiter` rate-limited requests against the 429s bookbuyer got from it;
- retries: bookbuyer's retries to `bookstore/bookstore-v1|14001` against the attempts bookstore's app answered for
  bookbuyer minus the answers bookbuyer got from the app.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable

import pytest

from lab.mesh.pytest_plugin import LabStack
from lab.waiting import wait_for
from tests.labmesh.recording import Recorder, generator

pytestmark = pytest.mark.lab_mesh(prometheus_mode="byo", scrape_interval="1s")

BUYER = "bookbuyer -> bookstore/bookstore"
EGRESS = "bookbuyer -> books.example.com:80"
HTTP_IN, HTTPS_IN = "internet -> bookstore.example.com/", "internet -> bookstore.example.com/v1"
MC = ("config.openservicemesh.io", "v1alpha2", "osm-system", "meshconfigs", "osm-mesh-config")


def last_sample(stack: LabStack, selector: str) -> tuple[float, float]:
    """The newest raw sample (timestamp, value) of the one series `selector` picks."""
    rows = stack.query(f"{selector}[10s]")
    assert len(rows) == 1, (selector, [r["metric"] for r in rows])
    ts, value = rows[0]["values"][-1]
    return float(ts), float(value)


def compare(stack: LabStack, recorder: Recorder, selector: str, expected: Callable[[float], float]) -> tuple:
    """Envoy's count (as last scraped) and the lab's at that instant; they agree within 10 %."""
    ts, envoy = last_sample(stack, selector)
    ours = expected(ts)
    assert envoy == pytest.approx(ours, rel=0.10), (selector, envoy, ours)
    return envoy, ours


@pytest.fixture(scope="module")
def recorder(lab_stack: LabStack):
    with Recorder(lambda: generator(lab_stack)) as rec:
        yield rec


def test_ingress_reaches_bookstore_through_the_ingress_controller(lab_stack: LabStack, recorder: Recorder) -> None:
    """HTTP (IngressBackend bookstore-http) to both bookstore pods, HTTPS with the controller's client certificate
    (bookstore-mtls) to bookstore-v1's; each pod's sidecar counts them on its ingress connection manager."""
    # Envoy's tag for a connection manager's prefix ends at its first dot: `mesh-http-conn-manager.rds-ingress` comes
    # out as prefix `mesh-http-conn-manager` and metric names `envoy_http_rds_ingress_*`, as on an OSM sidecar.
    ingress = 'envoy_http_rds_ingress_downstream_rq_total{{envoy_http_conn_manager_prefix="mesh-http-conn-manager",source_workload_name="{}"}}'  # noqa: E501
    wait_for(
        lambda: (
            lab_stack.query(f"{ingress.format('bookstore')} > 20")
            and lab_stack.query(f"{ingress.format('bookstore-v2')} > 10")
        ),
        40,
    )
    time.sleep(1.5)  # the recorder covers the newest scrape
    # bookstore's pod answers the HTTPS route, and its share of the HTTP one (nginx balances over the Service's pods)
    v1 = compare(
        lab_stack,
        recorder,
        ingress.format("bookstore"),
        lambda t: recorder.at(t, f"{HTTP_IN} bookstore") + recorder.at(t, f"{HTTPS_IN} sent"),
    )
    v2 = compare(
        lab_stack, recorder, ingress.format("bookstore-v2"), lambda t: recorder.at(t, f"{HTTP_IN} bookstore-v2")
    )
    traffic = lab_stack.lab.traffic()
    assert traffic[HTTPS_IN]["by_backend"] == {"bookstore": {"200": traffic[HTTPS_IN]["requests"]}}  # no errors
    assert set(traffic[HTTP_IN]["by_backend"]) == {"bookstore", "bookstore-v2"}
    print(f"ingress: bookstore pod Envoy {v1[0]:.0f} / generator {v1[1]:.1f}; v2 pod {v2[0]:.0f} / {v2[1]:.1f}")


def _raw_get(port: int, source: str, *, tls: ssl.SSLContext | None = None, sni: str | None = None) -> int | None:
    """GET / from `source` to bookstore's inbound port; the status, or None when closed without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as raw:
        conn = tls.wrap_socket(raw, server_hostname=sni) if tls else raw
        conn.sendall(b"GET /books-bought HTTP/1.1\r\nhost: bookstore.example.com\r\nconnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := conn.recv(4096):
                data += chunk
        except (ConnectionError, ssl.SSLError):
            pass
    return int(data.split(b" ", 2)[1]) if data else None


def test_ingress_chains_admit_only_the_controllers_address_and_certificate(lab_stack: LabStack) -> None:
    """The ingress chains match the controller's address (the IngressBackends' Service source); HTTPS also needs a
    client certificate of the mesh's CA."""
    lab = lab_stack.lab
    port = lab.sidecar("bookstore").ports.inbound
    [controller] = lab.topology.ingress_controllers
    assert _raw_get(port, controller.address) == 200  # plain HTTP from the controller's address
    assert _raw_get(port, "127.0.0.9") is None  # from anywhere else: no filter chain matches
    ctx = ssl.create_default_context(cafile=str(lab.ca_path))
    ctx.check_hostname = False
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # a refused certificate then fails the handshake itself
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _raw_get(port, controller.address, tls=ctx, sni="bookstore.bookstore.cluster.local")
    ctx.load_cert_chain(str(lab.ingress_cert.cert), str(lab.ingress_cert.key))
    assert _raw_get(port, controller.address, tls=ctx, sni="bookstore.bookstore.cluster.local") == 200


def test_egress_reaches_the_external_host(lab_stack: LabStack, recorder: Recorder) -> None:
    """bookbuyer's calls to books.example.com go out through its Egress cluster, named as OSM names egress clusters
    (no `/`; `.` and `:` as `_`), to the lab's server for that host, found through the lab's DNS."""
    selector = (
        'envoy_cluster_upstream_rq_total{source_workload_name="bookbuyer",envoy_cluster_name="books_example_com_80"}'
    )
    wait_for(lambda: lab_stack.query(f"{selector} > 15"), 40)
    time.sleep(1.5)
    envoy, ours = compare(lab_stack, recorder, selector, lambda t: recorder.at(t, f"{EGRESS} sent"))
    snap = lab_stack.lab.traffic()[EGRESS]
    assert snap["errors"] == 0 and snap["by_backend"] == {"books.example.com": {"200": snap["requests"]}}
    assert lab_stack.lab.dns.queries > 0
    names = {
        r["metric"]["envoy_cluster_name"]
        for r in lab_stack.query('envoy_cluster_upstream_rq_total{source_workload_name="bookbuyer"}')
    }
    # the only cluster without a `/` that is not one of OSM's own (osm.md 4.3: dashboards leave those out)
    assert {n for n in names if "/" not in n} - {"passthrough-outbound", "envoy-metrics-cluster"} == {
        "books_example_com_80"
    }
    print(f"egress: Envoy {envoy:.0f} / generator {ours:.1f}")


def _route_retry(stack: LabStack) -> dict | None:
    url = f"{stack.lab.sidecar('bookbuyer').admin_url}/config_dump?resource=dynamic_route_configs"
    with urllib.request.urlopen(url, timeout=5) as r:
        configs = json.loads(r.read())["configs"]
    rc = next(c["route_config"] for c in configs if c["route_config"]["name"] == "rds-outbound.14001")
    vh = next(v for v in rc["virtual_hosts"] if v["name"].endswith("|bookstore.bookstore.svc.cluster.local"))
    return vh["routes"][0]["route"].get("retry_policy")


def test_retries_are_counted_as_bookbuyer_retries(lab_stack: LabStack, recorder: Recorder) -> None:
    """Retry bookbuyer-to-bookstore (5xx, 3 times): with bookstore failing every fifth answer, bookbuyer's sidecar
    retries each failure; its retry counter matches the extra attempts the app answered, and bookbuyer sees none
    of the failures."""
    assert _route_retry(lab_stack)["retry_on"] == "5xx"
    retries = 'envoy_cluster_upstream_rq_retry{source_workload_name="bookbuyer",envoy_cluster_name="bookstore/bookstore-v1|14001"}'  # noqa: E501
    lab_stack.lab.set_behaviour("bookstore", error_rate=0.2)
    try:
        wait_for(lambda: lab_stack.query(f"{retries} > 60"), 60, 0.5)
        time.sleep(1.5)
        envoy, ours = compare(
            lab_stack,
            recorder,
            retries,
            lambda t: recorder.at(t, f"bookstore answered {BUYER}") - recorder.at(t, f"{BUYER} bookstore"),
        )
        failed = lab_stack.lab.traffic()[BUYER]["by_backend"].get("bookstore", {}).get("500", 0)
        assert failed < 0.02 * envoy, "retries hide the failures from bookbuyer"
    finally:
        lab_stack.lab.set_behaviour("bookstore", error_rate=0.0)
    print(f"retries: Envoy {envoy:.0f} / lab {ours:.1f}")


def test_the_retry_flag_is_honoured(lab_stack: LabStack) -> None:
    api = lab_stack.custom_api()
    try:
        api.patch_namespaced_custom_object(*MC, {"spec": {"featureFlags": {"enableRetryPolicy": False}}})
        wait_for(lambda: _route_retry(lab_stack) is None, 5, 0.05)
    finally:
        api.patch_namespaced_custom_object(*MC, {"spec": {"featureFlags": {"enableRetryPolicy": True}}})
    wait_for(lambda: _route_retry(lab_stack) is not None, 5, 0.05)


def test_rate_limited_requests_are_counted_by_bookstores_sidecar(lab_stack: LabStack, recorder: Recorder) -> None:
    """UpstreamTrafficSetting bookstore-rate-limit: 480 a minute on the buy-a-book route (bucket 488), under
    bookbuyer's 10/s there. A burst from bookbuyer's client empties the bucket sooner than its steady rate would
    (about 4 minutes); from then on about 2 of its 10 buy-a-book requests a second get bookstore's 429."""
    limited = 'envoy_http_local_rate_limit_rate_limited{source_workload_name="bookstore",envoy_local_http_ratelimit_prefix="http_local_rate_limiter"}'  # noqa: E501
    lab_stack.lab.clients[BUYER].burst(1200, connections=4)
    wait_for(lambda: lab_stack.query(f"{limited} > 40"), 60, 0.5)
    time.sleep(1.5)
    envoy, ours = compare(lab_stack, recorder, limited, lambda t: recorder.at(t, f"{BUYER} - 429"))
    assert set(lab_stack.lab.traffic()[BUYER]["by_backend"].get("-", {})) == {"429"}
    print(f"rate limited: Envoy {envoy:.0f} / generator {ours:.1f}")
