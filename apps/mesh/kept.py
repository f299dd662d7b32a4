"""What a process derives from one cluster's snapshot tables, kept until the snapshot changes.

Every commit that writes or deletes snapshot rows, or changes the mesh's state, draws a new
`MeshState.snapshot_version` (apps.mesh.services.snapshot_changed). A reader that keeps what it derived under the
version it read first (the version before the rows: rows newer than it only cause one more read next time) can
reuse it for as long as the version stays: the metrics cycle's resolver, the graph's policy and service accounts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from .models import MeshState

T = TypeVar("T")
_UNREAD = object()


def snapshot_version(cluster: Any) -> Any:
    """The cluster's current snapshot version; None before its first collection."""
    return MeshState.objects.filter(cluster=cluster).values_list("snapshot_version", flat=True).first()


class KeptPerSnapshot(Generic[T]):
    """Values per (cluster, key), each kept with the snapshot version it was derived from, least recently used dropped
    first once their weights add up to more than `budget` (the last one kept always stays)."""

    def __init__(self, budget: int, weigh: Callable[[T], int]) -> None:
        self.budget = budget
        self.weigh = weigh
        self._kept: OrderedDict[tuple[int, Hashable], tuple[Any, T, int]] = OrderedDict()
        self._lock = threading.Lock()
        # One derivation of an entry at a time: requests that miss together (every open graph refreshing after a
        # metrics cycle) wait for the first one's value instead of each deriving it. Striped, so that the locks are
        # few and fixed; reentrant, so that a derivation may ask this store for another entry of its stripe.
        self._deriving = tuple(threading.RLock() for _ in range(64))

    def get(self, cluster: Any, key: Hashable, derive: Callable[[], T], *, version: Any = _UNREAD) -> T:
        """The value kept for (cluster, key) if the cluster's snapshot has not changed since, else `derive()`. A caller
        that read snapshot rows `derive` uses before calling gives the `version` it read before those rows."""
        if version is _UNREAD:
            version = snapshot_version(cluster)
        if version is None:
            return derive()
        entry = (cluster.pk, key)
        kept = self._current(entry, version)
        if kept is None:
            with self._deriving[hash(entry) % len(self._deriving)]:
                kept = self._current(entry, version)  # derived meanwhile by the thread this one waited for
                if kept is None:
                    return self._keep(entry, version, derive(), None)
        return self._keep(entry, version, kept[1], kept)

    def _current(self, entry: tuple[int, Hashable], version: Any) -> tuple[Any, T, int] | None:
        with self._lock:
            kept = self._kept.get(entry)
        return kept if kept is not None and kept[0] == version else None

    def _keep(self, entry: tuple[int, Hashable], version: Any, value: T, found: tuple[Any, T, int] | None) -> T:
        """Keeps `value` as the entry's, the most recently used; a value `found` kept is weighed again, as it may grow
        while kept (the graph's verdicts said so far), unless another thread replaced it meanwhile."""
        with self._lock:
            if found is None or self._kept.get(entry) is found:
                self._kept[entry] = (version, value, self.weigh(value))
            if entry in self._kept:
                self._kept.move_to_end(entry)
            while len(self._kept) > 1 and sum(w for _v, _value, w in self._kept.values()) > self.budget:
                self._kept.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
