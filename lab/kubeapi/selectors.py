"""labelSelector and fieldSelector, parsed as k8s.io/apimachinery parses them; a parse error is a 400."""

from __future__ import annotations

import re
from collections.abc import Callable

from .status import bad_request

Matcher = Callable[[dict], bool]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_TOKEN_RE = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise bad_request(f"unable to parse requirement: unexpected text at {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise bad_request(
            f'unable to parse requirement: invalid label key "{key}": name part must consist of '
            "alphanumeric characters, '-', '_' or '.'"
        )
    return key


def _check_value(value: str) -> str:
    if not _VALUE_RE.match(value):
        raise bad_request(f'unable to parse requirement: invalid label value: "{value}"')
    return value


def parse_label_selector(text: str | None) -> Matcher:
    if not text or not text.strip():
        return lambda labels: True
    tokens = _tokens(text)
    requirements: list[Matcher] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise bad_request(f"unable to parse requirement: unexpected end of selector {text!r}")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        tok = take()
        if tok == "!":
            key = _check_key(take())
            requirements.append(lambda labels, k=key: k not in labels)
        else:
            key = _check_key(tok)
            op = tokens[i] if i < len(tokens) else ","
            if op == ",":
                requirements.append(lambda labels, k=key: k in labels)
            else:
                take()
                if op in ("=", "=="):
                    value = _check_value(_value_token(tokens, i))
                    i += 1 if value else 0
                    requirements.append(lambda labels, k=key, v=value: labels.get(k) == v)
                elif op == "!=":
                    value = _check_value(_value_token(tokens, i))
                    i += 1 if value else 0
                    requirements.append(lambda labels, k=key, v=value: labels.get(k) != v)
                elif op in ("in", "notin"):
                    if take() != "(":
                        raise bad_request(f"unable to parse requirement: found '{tokens[i - 1]}', expected: '('")
                    values: set[str] = set()
                    while True:
                        t = take()
                        if t == ")":
                            break
                        if t == ",":
                            continue
                        values.add(_check_value(t))
                    if op == "in":
                        requirements.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
                    else:
                        requirements.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
                elif op in ("gt", "lt"):
                    bound = take()
                    if not re.fullmatch(r"-?\d+", bound):
                        raise bad_request(
                            f"unable to parse requirement: for 'gt', 'lt' operators, the value must be "
                            f"an integer: {bound!r}"
                        )
                    requirements.append(_numeric(key, op, int(bound)))
                else:
                    raise bad_request(
                        f"unable to parse requirement: found '{op}', expected: in, notin, =, ==, !=, gt, lt"
                    )
        if i < len(tokens):
            if tokens[i] != ",":
                raise bad_request(f"unable to parse requirement: found '{tokens[i]}', expected: ','")
            i += 1
            if i == len(tokens):
                raise bad_request("unable to parse requirement: found '', expected: identifier")

    return lambda labels: all(r(labels) for r in requirements)


def _value_token(tokens: list[str], i: int) -> str:
    if i >= len(tokens) or tokens[i] == ",":
        return ""
    return tokens[i]


def _numeric(key: str, op: str, bound: int) -> Matcher:
    def match(labels: dict) -> bool:
        try:
            value = int(labels[key])
        except (KeyError, ValueError):
            return False
        return value > bound if op == "gt" else value < bound

    return match


def _field_value(obj: dict, path: str) -> str:
    value: object = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def parse_field_selector(text: str | None, supported: tuple[str, ...]) -> Callable[[dict], bool]:
    """Matches whole objects; only `metadata.name`, `metadata.namespace` and the kind's extra fields are allowed."""
    if not text or not text.strip():
        return lambda obj: True
    requirements = []
    for part in re.split(r"(?<!\\),", text):
        m = re.fullmatch(r"\s*([^!=\s]+)\s*(!=|==|=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.group(1), m.group(2), m.group(3).replace("\\,", ",").replace("\\=", "=")
        if field not in ("metadata.name", "metadata.namespace", *supported):
            raise bad_request(
                f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                + "".join(f', "{s}"' for s in supported)
            )
        if op == "!=":
            requirements.append(lambda o, f=field, v=value: _field_value(o, f) != v)
        else:
            requirements.append(lambda o, f=field, v=value: _field_value(o, f) == v)
    return lambda obj: all(r(obj) for r in requirements)
