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
    "rollback": "Roll back the canary to 0%",
}


def _give(percent: list[float], canary: int, target: float) -> list[int]:
    """Whole percentages with the canary at `target` and the others sharing the rest in proportion to what they
    have now (evenly when none has any), so a three-way split keeps its shape."""
    others = [i for i in range(len(percent)) if i != canary]
    held = sum(percent[i] for i in others)
    out = [0.0] * len(percent)
    out[canary] = target
    for i in others:
        out[i] = (100.0 - target) * (percent[i] / held if held else 1 / len(others))
    return _from_percent(out)


def preset_problem(preset: str, weights: list[int], canary: int | None) -> str:
    """Why `preset` cannot apply to these weights, or "" when it can."""
    if preset not in PRESETS:
        return "unknown preset"
    if len(weights) < 2:
        return "needs at least two backends"
    if canary is None or not 0 <= canary < len(weights):
        return "mark which backend is the canary first"
    total = sum(weights)
    share = weights[canary] / total * 100 if total else None
    if preset in ("shift10", "promote") and share == 100:
        return "the canary already has all the traffic"
    if preset == "rollback" and share == 0:
        return "the canary already has no traffic"
    if preset == "shift10" and share is None:
        return "the weights add up to 0: set them first"
    return ""


def apply_preset(preset: str, weights: list[int], canary: int | None) -> list[int]:
    """New weights (whole percentages summing to 100) for a preset, or the weights unchanged when it cannot apply.
    `canary` is the index of the backend the operator marked as the canary; every other backend is stable."""
    if preset_problem(preset, weights, canary) or canary is None:
        return list(weights)
    percent = percentages(weights)
    if preset == "even":
        return _give(percent, canary, 50.0)
    if preset == "promote":
        return _give(percent, canary, 100.0)
    if preset == "rollback":
        return _give(percent, canary, 0.0)
    return _give(percent, canary, min(100.0, percent[canary] + 10.0))


def yaml_diff(before: list[dict[str, object]], after: list[dict[str, object]], name: str) -> str:
    """A unified diff of `spec.backends` as `kubectl get -o yaml` would show it."""

    def render(backends: list[dict[str, object]]) -> list[str]:
        return yaml.safe_dump({"spec": {"backends": backends}}, sort_keys=False).splitlines(keepends=True)

    return "".join(difflib.unified_diff(render(before), render(after), f"{name} (now)", f"{name} (after)"))
