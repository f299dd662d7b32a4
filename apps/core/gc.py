"""Garbage-collector control for code that builds large acyclic structures (JSON decoding, graph building)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building large acyclic structures (call it from one thread: the switch is global).

    Decoding a 35 MB pod list allocates millions of dicts; each allocation burst triggers generation scans that
    find nothing to free, and cost about twice the decoding itself (measured: 0.9 s vs 0.33 s for 4,845 pods).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
