"""Internal addresses (the API server, Prometheus, Redis) reach operators only (apps/clusters/addresses.py).

Each case puts an address where the code really puts it (a write while the API server is down, a chart query to a
Prometheus that is not there, a collection that fails, a metrics run's warnings) and reads every page a viewer can
open: the address is nowhere, the operator still sees it.
"""

from __future__ import annotations

import html as html_lib
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from apps.clusters.addresses import INTERNAL, internal_addresses
from apps.clusters.models import CollectionRun
from apps.mesh.models import TrafficSplit
from apps.mesh.services import collect_and_record
from tests.conftest import free_port

VIEWER_PAGES = (
    "/",
    "/?cluster=lab",
    "/services/bookstore/bookstore/",
    "/services/bookstore/bookstore/series?window=1h",
    "/splits/",
    "/splits/audit/",
    "/splits/bookstore/bookstore-split/",
    "/graph/",
    "/graph/data",
    "/policies/",
    "/mesh/",
)


@pytest.fixture
def leaky(bookstore, kubeapi, operator, redis):
    """The bookstore cluster after a write failed on a dead API server, with a Prometheus nobody runs, a failed
    collection and a metrics run whose warnings name Prometheus, as the metrics collector words them."""
    dead_prometheus = f"http://127.0.0.1:{free_port()}"
    bookstore.prometheus_url = dead_prometheus
    bookstore.save()
    split = TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")
    api_server = urlsplit(kubeapi.url)
    kubeapi.stop()
    client = Client()
    client.force_login(operator)
    data = {"resource_version": split.resource_version, "action": "apply"}
    for i, (service, weight) in enumerate([("bookstore-v1", "50"), ("bookstore-v2", "50")]):
        data[f"backend_{i}"], data[f"weight_{i}"] = service, weight
    assert "cannot reach the API server" in client.post("/splits/bookstore/bookstore-split/", data).content.decode()
    _run, error = collect_and_record(bookstore)
    assert error is not None
    prometheus_host = urlsplit(dead_prometheus).netloc
    CollectionRun.objects.create(
        cluster=bookstore,
        kind=CollectionRun.Kind.METRICS,
        status=CollectionRun.Status.PARTIAL,
        finished_at=timezone.now(),
        warnings=[f"reading the scrape config: Prometheus at {prometheus_host} refused access (403); assuming 15 s"],
    )
    return {"api_server": api_server.netloc, "prometheus": prometheus_host}


def _pages(client: Client) -> dict[str, str]:
    out = {}
    for path in VIEWER_PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        out[path] = html_lib.unescape(response.content.decode())
    # The htmx partials too (the refreshing parts of the overview and the Mesh page).
    for path in ("/", "/mesh/"):
        out[f"{path} (htmx)"] = html_lib.unescape(client.get(path, HTTP_HX_REQUEST="true").content.decode())
    return out


def test_a_viewer_sees_no_internal_address_anywhere(leaky, viewer):
    client = Client()
    client.force_login(viewer)
    pages = _pages(client)
    for path, text in pages.items():
        for name, address in leaky.items():
            assert address not in text, f"{path} shows the {name} address to a viewer"
            port = address.rsplit(":", 1)[1]
            assert f"port={port}" not in text, f"{path} shows the {name} address to a viewer, as urllib3 words it"
    # Where the reasons were, the viewer reads that there is an address, not what it is.
    assert INTERNAL in pages["/splits/audit/"]
    assert INTERNAL in pages["/mesh/"]
    assert INTERNAL in pages["/services/bookstore/bookstore/series?window=1h"]


def test_an_operator_still_sees_them(leaky, operator):
    client = Client()
    client.force_login(operator)
    audit = html_lib.unescape(client.get("/splits/audit/").content.decode())
    assert f"cannot reach the API server at http://{leaky['api_server']}" in audit
    assert leaky["prometheus"] in html_lib.unescape(client.get("/mesh/").content.decode())


def test_it_knows_each_clusters_addresses(leaky, bookstore, settings):
    addresses = internal_addresses()
    assert f"http://{leaky['api_server']}" in addresses and leaky["api_server"] in addresses
    assert bookstore.prometheus_url in addresses and leaky["prometheus"] in addresses
    assert urlsplit(settings.REDIS_URL).netloc in addresses
    # Longest first, so a whole URL is replaced before its host:port could split it.
    assert addresses.index(f"http://{leaky['api_server']}") < addresses.index(leaky["api_server"])
