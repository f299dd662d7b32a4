"""Watch streams: initial ADDED events, replay from a resourceVersion, live events, bookmarks, 410 when too old."""

from __future__ import annotations

import time
from collections.abc import Callable

from .registry import ResourceType
from .status import status
from .store import Event, Store, render

Emit = Callable[[dict], None]


def _type_event(kind: str, obj: dict) -> dict:
    return {"type": kind, "object": obj}


def _translate(event: Event, match: Callable[[dict], bool]) -> str | None:
    """The event type this watcher sees; a selector transition turns MODIFIED into ADDED or DELETED."""
    now_matches = match(event.obj)
    if event.type != "MODIFIED":
        return event.type if now_matches else None
    before = event.old is not None and match(event.old)
    if now_matches and before:
        return "MODIFIED"
    if now_matches:
        return "ADDED"
    if before:
        return "DELETED"
    return None


def stream(
    store: Store,
    rt: ResourceType,
    version: str,
    namespace: str | None,
    match: Callable[[dict], bool],
    resource_version: str | None,
    timeout: float | None,
    bookmarks: bool,
    bookmark_interval: float,
    emit: Emit,
) -> None:
    """Calls `emit` with each event dict until the timeout passes or the store closes; the caller frames them."""
    deadline = time.monotonic() + timeout if timeout is not None else None
    key = (rt.group, rt.plural)

    def wanted(obj: dict) -> bool:
        in_scope = namespace is None or obj["metadata"].get("namespace") == namespace
        return in_scope and match(obj)

    with store.cond:
        if not resource_version or resource_version == "0":
            initial, cursor = store.list(rt, namespace, match)
        else:
            try:
                cursor = int(resource_version)
            except ValueError:
                emit(_type_event("ERROR", status(400, f"invalid resource version: {resource_version}")))
                return
            if cursor < store.compacted_rv:
                emit(
                    _type_event(
                        "ERROR",
                        status(410, f"too old resource version: {cursor} ({store.compacted_rv + 1})", "Expired"),
                    )
                )
                return
            initial = []
    for obj in initial:
        emit(_type_event("ADDED", render(obj, rt, version)))

    next_bookmark = time.monotonic() + bookmark_interval
    while True:
        with store.cond:
            events = [e for e in store.history if e.rv > cursor and e.key == key]
            if not events:
                if store.closed:
                    return
                wait = 1.0
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                if bookmarks:
                    wait = min(wait, next_bookmark - time.monotonic())
                if wait > 0:
                    store.cond.wait(wait)
                    events = [e for e in store.history if e.rv > cursor and e.key == key]
            cursor = max(cursor, store.rv)
        for event in events:
            seen_as = _translate(event, wanted)
            if seen_as is not None:
                emit(_type_event(seen_as, render(event.obj, rt, version)))
        now = time.monotonic()
        closing = deadline is not None and now >= deadline
        if bookmarks and (now >= next_bookmark or closing):
            # The apiserver sends a bookmark just before a watch ends, so clients can resume from it.
            bookmark = {
                "kind": rt.kind,
                "apiVersion": rt.api_version(version),
                "metadata": {"resourceVersion": str(cursor)},
            }
            emit(_type_event("BOOKMARK", bookmark))
            next_bookmark = now + bookmark_interval
        if closing or store.closed:
            return
