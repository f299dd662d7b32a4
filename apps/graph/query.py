"""The graph's find/hide expressions: a small language parsed into a predicate over plain node/edge dicts.

Grammar (case-insensitive keywords; whitespace, `,`, `and` or `&&` mean AND; `or` or `||` mean OR, which binds less
tightly; `!` or `not` negate; parentheses group):

    expr   := and ( ("or" | "||") and )*
    and    := unary ( ("and" | "&&" | ",")? unary )*
    unary  := ("!" | "not") unary | "(" expr ")" | term
    term   := field op value | flag
    field  := rps | error | success | p99 | latency | denied | ns | namespace | name | health | kind
    op     := > >= < <= = == !=   (ns, name, health and kind take only = and !=; a value may use * as a wildcard)
    flag   := mtls | unknown | unmeshed | sidecar | root | backend | split | workload | service | denied | idle
              | healthy | degraded | failing

`error` and `success` are percentages (`error>1%` and `error>1` mean the same); `p99`/`latency` are milliseconds
(`p99>100ms`). A value the snapshot does not know (None) never matches a comparison, so `rps<1` does not pick nodes
without metrics. `idle` is an edge with nothing measured (known from configuration only) or a peer seen only on
such edges. On an edge, `ns` and `name` match either end; on a node, `rps`, `error` and `p99` are its inbound
KPIs. Bad input raises QueryError with the position and what was expected.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Element = dict[str, Any]
Predicate = Callable[[Element], bool]

NUMERIC = {
    "rps": ("rps", 1.0),
    "error": ("error", 0.01),  # percent in the expression, ratio in the data
    "success": ("success", 0.01),
    "p99": ("p99_ms", 1.0),
    "latency": ("p99_ms", 1.0),
    "denied": ("denied_rps", 1.0),
}
TEXT = {"ns": "namespace", "namespace": "namespace", "name": "name", "health": "health", "kind": "kind"}
FLAGS = (
    "mtls",
    "unknown",
    "unmeshed",
    "sidecar",
    "root",
    "backend",
    "split",
    "workload",
    "service",
    "denied",
    "idle",
    "healthy",
    "degraded",
    "failing",
)
OPS = ("<=", ">=", "!=", "==", "<", ">", "=")
MAX_LENGTH = 500

_TOKEN = re.compile(
    r"\s*(?:(?P<lpar>\()|(?P<rpar>\))|(?P<or>\|\||(?i:or)\b)|(?P<and>&&|,|(?i:and)\b)|(?P<not>!(?!=)|(?i:not)\b)"
    r"|(?P<term>[A-Za-z0-9_]+\s*(?:<=|>=|!=|==|<|>|=)\s*[^\s(),|&]*|[A-Za-z0-9_]+))"
)


class QueryError(ValueError):
    """A find/hide expression that cannot be read; the message says where and what was expected."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(source: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            bad = source[pos:].lstrip()
            at = len(source) - len(bad) + 1
            raise QueryError(f"cannot read {bad[:20]!r} at character {at}: expected a term such as rps>10, !mtls")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


def _value(element: Element, key: str) -> Any:
    return element.get(key)


def _either_end(element: Element, key: str) -> list[str]:
    if element.get("group") == "edges":
        return [str(element.get(f"source_{key}") or ""), str(element.get(f"target_{key}") or "")]
    return [str(element.get(key) or "")]


def _compare(op: str, left: float, right: float) -> bool:
    return {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
        "=": left == right,
        "==": left == right,
        "!=": left != right,
    }[op]


def _number(field: str, raw: str, pos: int) -> float:
    text = raw.strip().lower()
    for suffix in ("%", "ms", "rps", "/s"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    try:
        value = float(text)
    except ValueError:
        raise QueryError(f"{field} needs a number at character {pos}, not {raw!r} (e.g. {field}>10)") from None
    if value != value:  # NaN
        raise QueryError(f"{field} needs a number at character {pos}, not {raw!r}")
    return value


def _flag(name: str) -> Predicate:
    if name == "mtls":
        return lambda e: e.get("lock") == "mtls" if e.get("group") == "edges" else e.get("sidecars") == "all"
    if name == "sidecar":
        return lambda e: e.get("sidecars") in ("all", "some") if e.get("group") == "nodes" else e.get("lock") != "plain"
    if name == "unmeshed":
        return lambda e: e.get("sidecars") == "none" if e.get("group") == "nodes" else e.get("lock") == "plain"
    if name == "unknown":
        return lambda e: (
            e.get("kind") == "unknown"
            or (e.get("group") == "edges" and "unknown" in (e.get("source_kind"), e.get("target_kind")))
        )
    if name in ("root", "backend"):
        return lambda e: e.get("split") == name
    if name == "split":
        return lambda e: bool(e.get("split")) or e.get("kind") == "split"
    if name in ("workload", "service"):
        return lambda e: e.get("kind") == name
    if name == "denied":
        return lambda e: (e.get("denied_rps") or 0) > 0
    if name == "idle":
        return lambda e: bool(e.get("idle"))
    return lambda e: e.get("health") == name


def _term(tok: _Tok) -> Predicate:
    text = tok.text.strip()
    m = re.fullmatch(r"([A-Za-z0-9_]+)\s*(<=|>=|!=|==|<|>|=)\s*(.*)", text)
    if m is None:
        name = text.lower()
        if name in FLAGS:
            return _flag(name)
        if name in NUMERIC or name in TEXT:
            raise QueryError(f"{name} at character {tok.pos} needs a comparison, e.g. {_example(name)}")
        raise QueryError(
            f"unknown word {text!r} at character {tok.pos}: use a field ({_fields()}) or a flag ({_flags()})"
        )
    field, op, raw = m.group(1).lower(), m.group(2), m.group(3)
    if not raw:
        raise QueryError(f"{text!r} at character {tok.pos} needs a value after {op}, e.g. {_example(field)}")
    if field in NUMERIC:
        key, scale = NUMERIC[field]
        target = _number(field, raw, tok.pos) * scale

        def numeric(e: Element) -> bool:
            value = _value(e, key)
            return value is not None and _compare(op, float(value), target)

        return numeric
    if field in TEXT:
        if op not in ("=", "==", "!="):
            raise QueryError(f"{field} at character {tok.pos} takes = or !=, not {op}")
        key, pattern = TEXT[field], raw.lower()

        def text_match(e: Element) -> bool:
            values = _either_end(e, key) if key in ("namespace", "name") else [str(e.get(key) or "")]
            hit = any(fnmatch.fnmatchcase(v.lower(), pattern) for v in values)
            return hit if op != "!=" else not hit

        return text_match
    raise QueryError(f"unknown field {m.group(1)!r} at character {tok.pos}: use one of {_fields()}")


def _example(field: str) -> str:
    return {"ns": "ns=shop", "namespace": "ns=shop", "name": "name=book*", "health": "health=failing"}.get(
        field, f"{field}>10"
    )


def _fields() -> str:
    return ", ".join([*NUMERIC, "ns", "name", "health", "kind"])


def _flags() -> str:
    return ", ".join(FLAGS)


class _Parser:
    def __init__(self, tokens: list[_Tok], source: str) -> None:
        self.tokens, self.i, self.source = tokens, 0, source

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expr(self) -> Predicate:
        parts = [self.conj()]
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def conj(self) -> Predicate:
        parts = [self.unary()]
        while (tok := self.peek()) is not None and tok.kind not in ("or", "rpar"):
            if tok.kind == "and":
                self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda e: all(p(e) for p in parts))

    def unary(self) -> Predicate:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"the expression ends too early: expected a term after {self.source.strip()!r}")
        if tok.kind == "not":
            self.take()
            inner = self.unary()
            return lambda e: not inner(e)
        if tok.kind == "lpar":
            self.take()
            inner = self.expr()
            close = self.peek()
            if close is None or close.kind != "rpar":
                raise QueryError(f"missing ')' for the '(' at character {tok.pos}")
            self.take()
            return inner
        if tok.kind == "term":
            return _term(self.take())
        raise QueryError(f"unexpected {tok.text!r} at character {tok.pos}: expected a term such as rps>10")


def parse(source: str) -> Predicate | None:
    """A predicate for the expression, or None for a blank one (nothing to find or hide)."""
    if not source or not source.strip():
        return None
    if len(source) > MAX_LENGTH:
        raise QueryError(f"the expression is longer than {MAX_LENGTH} characters")
    parser = _Parser(_tokens(source), source)
    predicate = parser.expr()
    if (tok := parser.peek()) is not None:
        raise QueryError(f"unexpected {tok.text!r} at character {tok.pos}")
    return predicate
