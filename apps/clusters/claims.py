"""The claim → role mapping of single sign-on, as plain data: what an identity provider's claims grant.

One claim (`roles` by default: Entra ID's app roles) holds a list of values. A value the settings name for a role
grants it everywhere; the same value followed by `:<namespace>` grants it in that namespace only:

    ["Meshboard.Viewer"]                               viewer of every namespace
    ["Meshboard.Operator"]                             operator of every namespace
    ["Meshboard.Viewer", "Meshboard.Operator:team-a"]  sees everything, changes weights in team-a only
    ["Meshboard.Viewer:team-a", "Meshboard.Viewer:team-b"]  sees team-a and team-b only
    ["Meshboard.Operator:team-a"]                      sees team-a only, and changes weights there

Values naming no role are ignored (the claim carries the app's other roles too); a namespace that is not a
Kubernetes name is ignored and reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .roles import OPERATOR, VIEWER

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Grant:
    role: str | None  # VIEWER, OPERATOR, or None: no Meshboard role
    namespaces: list[str] = field(default_factory=list)  # seen; empty: every namespace
    operate_namespaces: list[str] = field(default_factory=list)  # where weights may change; empty: all seen
    ignored: list[str] = field(default_factory=list)  # values naming a role with a namespace that is no name

    def describe(self) -> str:
        if self.role is None:
            return "no Meshboard role"
        seen = ", ".join(self.namespaces) or "every namespace"
        if self.role == VIEWER:
            return f"viewer of {seen}"
        return f"operator of {', '.join(self.operate_namespaces) or seen} (sees {seen})"


def claim_values(claims: dict, claim: str) -> list[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def grant_from_claims(
    claims: dict, *, claim: str, viewer_values: Iterable[str], operator_values: Iterable[str]
) -> Grant:
    viewer_values, operator_values = set(viewer_values), set(operator_values)
    everywhere: set[str] = set()
    limited: dict[str, set[str]] = {VIEWER: set(), OPERATOR: set()}
    ignored = []
    for value in claim_values(claims, claim):
        base, sep, namespace = value.partition(":")
        role = OPERATOR if base in operator_values else VIEWER if base in viewer_values else None
        if role is None:
            continue
        if not sep:
            everywhere.add(role)
        elif _NAMESPACE.match(namespace):
            limited[role].add(namespace)
        else:
            ignored.append(value)
    if OPERATOR in everywhere:
        return Grant(OPERATOR, ignored=ignored)
    if limited[OPERATOR]:
        seen = [] if VIEWER in everywhere else sorted(limited[OPERATOR] | limited[VIEWER])
        return Grant(OPERATOR, seen, sorted(limited[OPERATOR]), ignored)
    if VIEWER in everywhere:
        return Grant(VIEWER, ignored=ignored)
    if limited[VIEWER]:
        return Grant(VIEWER, sorted(limited[VIEWER]), ignored=ignored)
    return Grant(None, ignored=ignored)
