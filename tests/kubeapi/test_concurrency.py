"""Optimistic concurrency under load: 20 clients merge-patching one TrafficSplit with the rv they read."""

from __future__ import annotations

import threading

from kubernetes import client, config

G, V = "split.smi-spec.io", "v1alpha2"


def test_it_applies_or_refuses_every_concurrent_write_and_loses_none(server):
    barrier = threading.Barrier(20)
    applied: list[tuple[int, int]] = []  # (weight written, rv returned)
    conflicts: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = client.CustomObjectsApi(config.new_client_from_config(str(server.kubeconfig)))
    # The store-wide counter, not the split's own rv: every write anywhere takes the next value.
    start_rv = int(start.list_namespaced_custom_object(G, V, "demo", "trafficsplits")["metadata"]["resourceVersion"])

    def worker(i: int) -> None:
        custom = client.CustomObjectsApi(config.new_client_from_config(str(server.kubeconfig)))
        try:
            current = custom.get_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split")
            barrier.wait()
            patch = {
                "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                "spec": {"backends": [{"service": "web-v1", "weight": 1000 + i}]},
            }
            result = custom.patch_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split", patch)
            with lock:
                applied.append((1000 + i, int(result["metadata"]["resourceVersion"])))
        except client.ApiException as exc:
            with lock:
                (conflicts if exc.status == 409 else errors).append(exc.status)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    assert len(applied) + len(conflicts) == 20
    assert len(applied) >= 1
    final = start.get_namespaced_custom_object(G, V, "demo", "trafficsplits", "web-split")
    final_rv = int(final["metadata"]["resourceVersion"])
    # Every applied write took exactly one rv, in order; the last one applied is what is stored.
    assert final_rv == start_rv + len(applied)
    assert sorted(rv for _, rv in applied) == list(range(start_rv + 1, final_rv + 1))
    last_weight = max(applied, key=lambda a: a[1])[0]
    assert final["spec"]["backends"] == [{"service": "web-v1", "weight": last_weight}]
    assert final["metadata"]["generation"] == 1 + len(applied)
