"""Weights as plain data: validation limits, presets, percentages, and the YAML preview of a change.

SMI weights are relative. OSM sums them into Envoy's uint32 total weight and casts each to uint32, so a valid
change has integers 0..2^31-1 whose sum is 1..2^32-1 (reference/osm.md §1.1).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import yaml

MAX_WEIGHT = 2_147_483_647
MAX_TOTAL = 4_294_967_295


@dataclass(frozen=True)
class BackendWeight:
    service: str
    weight: int


@dataclass(frozen=True)
class WeightChangeRequest:
    """A validated change, as the form hands it to the canary service."""

    namespace: str
    split: str
    backends: tuple[BackendWeight, ...]
    resource_version: str
    confirm_flagger: bool = False

    def as_spec(self) -> list[dict[str, object]]:
        return [{"service": b.service, "weight": b.weight} for b in self.backends]


def percentages(weights: list[int]) -> list[float]:
    total = sum(weights)
    return [w / total * 100 if total else 0.0 for w in weights]


def _from_percent(percent: list[float]) -> list[int]:
    """Whole percentages summing to exactly 100 (largest remainders get the rounding)."""
    floors = [int(p) for p in percent]
    short = 100 - sum(floors)
    order = sorted(range(len(percent)), key=lambda i: percent[i] - floors[i], reverse=True)
    for i in order[: max(0, short)]:
        floors[i] += 1
    return floors


PRESETS = {
    "shift10": "Shift 10% more to the canary",
    "even": "50/50",
    "promote": "Promote the canary to 100%",
    "rollback": "Roll back to stable 100%",
}


def apply_preset(preset: str, weights: list[int]) -> list[int]:
    """New weights (as percentages summing to 100) for a preset. The first backend is the stable one, the last the
    canary, as in OSM's demo (bookstore-v1 then bookstore-v2)."""
    n = len(weights)
    if n < 2 or preset not in PRESETS:
        return list(weights)
    if preset == "even":
        return _from_percent([100 / n] * n)
    if preset == "promote":
        return [0] * (n - 1) + [100]
    if preset == "rollback":
        return [100] + [0] * (n - 1)
    percent = percentages(weights) if sum(weights) else [100.0] + [0.0] * (n - 1)
    moved = min(10.0, 100.0 - percent[-1])
    percent[-1] += moved
    # Taken from the others in proportion to what they have, so a three-way split keeps its shape.
    others = sum(percent[:-1])
    for i in range(n - 1):
        percent[i] -= moved * (percent[i] / others) if others else 0
    return _from_percent(percent)


def yaml_diff(before: list[dict[str, object]], after: list[dict[str, object]], name: str) -> str:
    """A unified diff of `spec.backends` as `kubectl get -o yaml` would show it."""

    def render(backends: list[dict[str, object]]) -> list[str]:
        return yaml.safe_dump({"spec": {"backends": backends}}, sort_keys=False).splitlines(keepends=True)

    return "".join(difflib.unified_diff(render(before), render(after), f"{name} (now)", f"{name} (after)"))
