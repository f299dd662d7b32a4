"""What the lab itself counted, sampled often enough to interpolate a count at any instant: the reference the lab
tests hold Envoy's counters, Prometheus's rates and Meshboard's KPIs to."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

from lab.mesh.pytest_plugin import LabStack
from lab.waiting import wait_for


class Recorder:
    """Samples `sample()` (name -> cumulative count) every 0.1 s, so a count at any instant can be interpolated."""

    def __init__(self, sample: Callable[[], dict[str, float]]) -> None:
        self.sample = sample
        self.times: list[float] = []
        self.values: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            values = self.sample()
            self.times.append(time.time())
            self.values.append(values)
            if self._stop.wait(0.1):
                return

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, when: float, name: str) -> float:
        # A loaded machine can delay the sampling thread past Prometheus's newest scrape: wait for it to cover `when`.
        wait_for(lambda: self.times and self.times[-1] > when, 15)
        i = bisect.bisect_left(self.times, when)
        assert 0 < i < len(self.times), "outside the recording"
        t0, t1 = self.times[i - 1], self.times[i]
        v0, v1 = self.values[i - 1].get(name, 0.0), self.values[i].get(name, 0.0)
        return v0 + (v1 - v0) * (when - t0) / (t1 - t0)


def generator(stack: LabStack) -> dict[str, float]:
    """The lab's own counts: per client, answers by who served them and status; per app, what it answered whom."""
    out: dict[str, float] = {}
    for client, snap in stack.lab.traffic().items():
        out[f"{client} sent"] = snap["requests"]
        for served_by, codes in (snap.get("by_backend") or {}).items():
            for code, n in codes.items():
                out[f"{client} {served_by} {code}"] = n
                out[f"{client} {served_by}"] = out.get(f"{client} {served_by}", 0) + n
    apps = {**stack.lab.servers, **stack.lab.external}
    for name, app in apps.items():
        if hasattr(app, "answered"):
            for client in stack.lab.clients:
                out[f"{name} answered {client}"] = sum(app.answered(client).values())
    return out
