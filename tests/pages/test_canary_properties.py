"""Whatever is posted, the editor answers without a 500, never leaves an invalid split in the cluster, and leaves
exactly one audit record per attempt to write; and a split Flagger drives needs an explicit confirmation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.canary.models import WeightChange
from apps.clusters.models import Cluster
from apps.mesh.models import TrafficSplit
from apps.mesh.services import collect_and_record
from lab.seeds.loader import load_seed
from tests.helpers import bookstore_split

URL = "/splits/bookstore/bookstore-split/"

weight_text = st.one_of(
    st.integers(min_value=-(2**33), max_value=2**33).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
    st.sampled_from(["", " 7 ", "1e3", "0x10", "٣", "10;DROP", "<b>1</b>", "\x00", "9" * 40]),
)


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    weights=st.lists(weight_text, min_size=0, max_size=4),
    names=st.lists(
        st.sampled_from(["bookstore-v1", "bookstore-v2", "bookstore", "ghost", "", "../x", "bookstore-v1\n"]),
        min_size=0,
        max_size=4,
    ),
)
def test_it_never_fails_and_never_writes_an_invalid_split(operator_client, bookstore, kubeapi, weights, names):
    split = TrafficSplit.objects.get(cluster=bookstore, name="bookstore-split")
    data = {"resource_version": split.resource_version, "action": "apply"}
    for i, (name, weight) in enumerate(zip(names, weights, strict=False)):
        data[f"backend_{i}"] = name
        data[f"weight_{i}"] = weight

    records = WeightChange.objects.count()
    response = operator_client.post(URL, data)

    assert response.status_code in (200, 302)
    assert WeightChange.objects.count() == records + 1
    record = WeightChange.objects.latest("id")
    assert record.result == ("applied" if response.status_code == 302 else "invalid"), record.reason
    live = bookstore_split(kubeapi)
    live_weights = [b["weight"] for b in live["spec"]["backends"]]
    assert all(isinstance(w, int) and 0 <= w <= 2_147_483_647 for w in live_weights)
    assert 1 <= sum(live_weights) <= 4_294_967_295
    assert {b["service"] for b in live["spec"]["backends"]} <= {"bookstore-v1", "bookstore-v2", "bookstore"}


def test_it_requires_confirmation_when_flagger_drives_the_split(client, operator, kubeapi_factory):
    seed = load_seed("bookstore")
    seed.objects.append(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "bookstore", "namespace": "bookstore"},
            "spec": {
                "provider": "osm",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "bookstore"},
                "service": {"port": 14001},
                "analysis": {"interval": "30s", "threshold": 5, "maxWeight": 50, "stepWeight": 10},
            },
        }
    )
    server = kubeapi_factory(seed)
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(server.kubeconfig))
    collect_and_record(cluster)
    split = TrafficSplit.objects.get(cluster=cluster, name="bookstore-split")
    client.force_login(operator)
    data = {
        "resource_version": split.resource_version,
        "action": "apply",
        "backend_0": "bookstore-v1",
        "weight_0": "90",
    }

    html = client.post(URL, data).content.decode()
    assert "Flagger Canary bookstore manages this split" in html and "Confirm to apply anyway" in html

    response = client.post(URL, {**data, "confirm_flagger": "on"})
    assert response.status_code == 302


def test_it_shows_no_flagger_warning_without_the_canary_crd(client, operator, bookstore):
    client.force_login(operator)
    assert "Flagger" not in client.get(URL).content.decode()
