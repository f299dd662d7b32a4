"""Paged lists through the collector, against the stand-in: small pages give the same snapshot as whole lists, and a
list whose continue token expires mid-way is read again from the start."""

from __future__ import annotations

import tracemalloc

import pytest

from apps.clusters.kube import KubeGateway, KubeTarget
from apps.mesh.collector import PODS, collect, prune_item
from lab.seeds.loader import load_seed

# Every count known and large: each kind in pages. Every count known and tiny: each kind whole, from the watch cache.
ALL_LARGE = {key: 10**6 for key in ("pods", "services", "serviceaccounts", "endpointslices", "workloads")}


@pytest.fixture
def synthetic(kubeapi_factory):
    # 60 services: ~300 pods, ~900 objects in all.
    return kubeapi_factory(load_seed("synthetic", services=60))


def _gateway(server) -> KubeGateway:
    return KubeGateway(KubeTarget(kubeconfig_path=str(server.kubeconfig)))


def test_it_collects_the_same_snapshot_in_small_pages_as_in_whole_lists(synthetic):
    with _gateway(synthetic) as whole_gateway:
        whole = collect(whole_gateway, sizes={key: 1 for key in ALL_LARGE})
    with _gateway(synthetic) as paged_gateway:
        paged = collect(paged_gateway, sizes=ALL_LARGE, page_size=7)

    assert whole.rows.keys() == paged.rows.keys()
    for kind, rows in whole.rows.items():
        assert paged.rows[kind] == rows, kind
    assert paged.state == whole.state and paged.warnings == whole.warnings
    assert len(paged.rows["pods"]) > 250
    assert whole.list_requests["pods"] == 1
    assert paged.list_requests["pods"] == -(-paged.list_sizes["pods"] // 7)  # ceil: one request per page
    assert paged.api_requests == whole.api_requests + sum(paged.list_requests.values()) - len(paged.list_requests)


def test_it_lists_again_from_the_start_when_the_continue_token_expires(synthetic):
    whole = len(_gateway(synthetic).list(PODS))
    compacted = []

    def compact_once(page: list[dict]) -> list[dict]:  # runs as the first page arrives: etcd compacts before the second
        if not compacted:
            compacted.append(page[0]["metadata"]["name"])
            synthetic.store.compact()
        return page

    with _gateway(synthetic) as gateway:
        items = gateway.list(PODS, page_size=50, transform=compact_once)

    assert len(items) == whole and len({(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}) == whole
    # The first page, the second refused with 410, then the whole list again in pages.
    assert gateway.list_requests["pods"] == 2 + -(-whole // 50)


def test_it_drops_each_managed_fields_entrys_field_set_and_keeps_who_wrote_when(synthetic):
    with _gateway(synthetic) as gateway:
        full = gateway.list(PODS, page_size=100)
        pruned = gateway.list(PODS, page_size=100, transform=lambda page: [prune_item(i) for i in page])

    def writers(items: list[dict]) -> list:
        return [
            [(e["manager"], e["operation"], e["time"], e.get("subresource")) for e in i["metadata"]["managedFields"]]
            for i in items
        ]

    assert all(e.get("fieldsV1") for i in full for e in i["metadata"]["managedFields"])  # the seed carries them
    assert not any("fieldsV1" in e for i in pruned for e in i["metadata"]["managedFields"])
    assert writers(pruned) == writers(full)
    assert [{**i, "metadata": {**i["metadata"], "managedFields": []}} for i in pruned] == [
        {**i, "metadata": {**i["metadata"], "managedFields": []}} for i in full
    ]


def test_it_holds_a_fraction_of_the_memory_in_pages_that_whole_lists_take(synthetic):
    # What bounds the worker's memory at 5,000 services (BENCHMARKS.md), in small: pages are decoded and dropped as
    # they arrive, where a whole list is held raw until decoded.
    def peak(**options) -> int:
        with _gateway(synthetic) as gateway:
            tracemalloc.start()
            try:
                collect(gateway, **options)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    whole = peak(sizes={key: 1 for key in ALL_LARGE})
    paged = peak(sizes=ALL_LARGE, page_size=20)
    assert paged < whole / 2, (paged, whole)
