"""Service health with Kiali's default tolerances, and the reason a person can read.

Each rule that fires says what it measured ("5xx 12.5% of 4.0 req/s ≥ 10%"); the worst level wins and every rule
at that level is reported, so the page can say exactly why a service is red.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HEALTHY, DEGRADED, FAILING, UNKNOWN = "healthy", "degraded", "failing", "unknown"
_RANK = {UNKNOWN: 0, HEALTHY: 1, DEGRADED: 2, FAILING: 3}


@dataclass(frozen=True)
class Health:
    status: str
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def rank(self) -> int:
        return _RANK[self.status]


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f}%".replace(".0%", "%")


def assess(
    *,
    request_rate: float | None,
    rate_4xx: float | None,
    rate_5xx: float | None,
    pods_total: int,
    pods_ready: int,
    tolerances: Mapping[str, float],
) -> Health:
    fired: list[tuple[str, str]] = []
    if pods_total:
        if pods_ready == 0:
            fired.append((FAILING, f"no pod ready (0/{pods_total})"))
        elif pods_ready < pods_total:
            fired.append((DEGRADED, f"{pods_total - pods_ready} of {pods_total} pods not ready"))
    if request_rate:
        for klass, rate in (("5xx", rate_5xx), ("4xx", rate_4xx)):
            if rate is None:
                continue
            ratio = rate / request_rate
            failing, degraded = tolerances[f"{klass}_failing"], tolerances[f"{klass}_degraded"]
            measured = f"{klass} {_pct(ratio)} of {request_rate:.3g} req/s"
            if ratio > 0 and ratio >= failing:
                fired.append((FAILING, f"{measured} ≥ {_pct(failing)}"))
            elif ratio > 0 and ratio >= degraded:
                rule = "any 5xx" if klass == "5xx" and degraded == 0 else f"≥ {_pct(degraded)}"
                fired.append((DEGRADED, f"{measured} ({rule})"))
    if fired:
        worst = max(fired, key=lambda item: _RANK[item[0]])[0]
        return Health(worst, [reason for status, reason in fired if status == worst])
    if request_rate is None and not pods_total:
        return Health(UNKNOWN, ["no pods selected and no traffic measured"])
    facts = []
    if pods_total:
        facts.append(f"{pods_ready}/{pods_total} pods ready")
    facts.append("no errors" if request_rate else "no traffic")
    return Health(HEALTHY, [", ".join(facts)])
