"""OSM's regexes read for Istio: what an SMI `pathRegex` or header regex matches, whether Istio's string forms can say
the same, and strings inside and just outside it for the equivalence check.

OSM hands `pathRegex` and header values to Envoy as RE2 regexes that must match the whole path (query string removed)
or the whole header value; an empty `pathRegex` means `.*`. Istio's AuthorizationPolicy has no regex: a value is an
exact string `/a`, a prefix `/a*`, a suffix `*/a`, or `*` (present and not empty). So:

- a literal, or a small finite set of literals (`/a|/b`, `/v[12]`), becomes exact values: exact;
- a finite head followed by `.*` becomes prefixes, `.*` followed by a finite tail becomes suffixes: exact;
- `L.+` becomes the prefix `L*` with `notPaths`/`notValues` `L`: exact;
- anything else has no Istio form. The translation never guesses silently: it takes the nearest form that matches
  *less* (narrower, so Istio denies what OSM allowed rather than the reverse), says so, names the broader
  alternative a person could choose, and gives an example value the two treat differently.

Python's `re`, compiled with `re.ASCII` and used with `fullmatch`, stands in for RE2. For the patterns at hand they
agree; where they differ:
- Python accepts what RE2 refuses: lookaround, backreferences, conditionals, atomic groups, possessive repeats and
  repeat counts above 1000. Envoy rejects such a route (and with it the inbound route update OSM sends), so
  `re2_problem` names them and the translation calls them manual.
- RE2 accepts what Python refuses or reads differently: `\\pL` classes, `\\z`, `(?<name>...)` before Python 3.12,
  POSIX classes `[[:alpha:]]`. These are manual too ("check by hand"), never evaluated with the wrong meaning.
- `\\d`, `\\w`, `\\s`, `\\b` are ASCII in RE2; `re.ASCII` makes Python's the same.
- `$` in Python also matches before a final newline; whole-value matches of paths and header values, which hold no
  newline, make that moot.
"""

from __future__ import annotations

import re
import re._constants as C
import re._parser as P
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

EXACT, NARROWER, BROADER, MANUAL = "exact", "narrower", "broader", "manual"
LEVELS = (EXACT, NARROWER, BROADER, MANUAL)
PATH, HEADER = "path", "header"

RE2_MAX_REPEAT = 1000
FINITE_LIMIT = 32  # a finite language larger than this is not spelled out as exact values

_RE2_REFUSES = {
    C.GROUPREF: "a backreference",
    C.GROUPREF_EXISTS: "a conditional group",
    C.ASSERT: "a lookahead or lookbehind",
    C.ASSERT_NOT: "a negative lookahead or lookbehind",
    C.ATOMIC_GROUP: "an atomic group",
    C.POSSESSIVE_REPEAT: "a possessive repeat",
}
_RE2_ONLY = (
    (re.compile(r"\\[pP]"), "a Unicode class (\\p...)"),
    (re.compile(r"\\z"), "\\z"),
    (re.compile(r"\(\?<(?![=!])"), "a named group written (?<name>...)"),
    (re.compile(r"\[:\^?[a-z]+:\]"), "a POSIX class such as [[:alpha:]]"),
    (re.compile(r"\\C"), "\\C"),
)
_SAMPLE_CHARS = "xa0/-_.Z "


def level_rank(level: str) -> int:
    return LEVELS.index(level)


def worst(levels: list[str] | tuple[str, ...]) -> str:
    """Exact < narrower < broader < manual: the one to report for several items together (narrower and broader
    together are manual: no single direction)."""
    found = set(levels)
    if NARROWER in found and BROADER in found:
        return MANUAL
    return max(found, key=level_rank) if found else EXACT


@lru_cache(maxsize=8192)
def compiled(regex: str) -> re.Pattern[str] | None:
    """The regex as Envoy would hold it (None when Python cannot read it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(regex, re.ASCII)
    except (re.error, OverflowError, RecursionError):
        return None


def full_match(regex: str, value: str | None) -> bool:
    """RE2's full match, as Envoy applies `pathRegex` and header regexes; a missing value never matches."""
    pattern = compiled(regex)
    return value is not None and pattern is not None and pattern.fullmatch(value) is not None


def istio_match(form: str, value: str | None) -> bool:
    """Istio's string match: `*` present and not empty, `*abc` suffix, `abc*` prefix, else exact."""
    if value is None:
        return False
    if form == "*":
        return value != ""
    if form.startswith("*"):
        return value.endswith(form[1:])
    if form.endswith("*"):
        return value.startswith(form[:-1])
    return value == form


# ---------------------------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class Parsed:
    items: tuple  # the parser's sequence, with the anchors at both ends removed
    ignorecase: bool


def re2_problem(regex: str) -> str:
    """Why RE2 (Envoy) or Python cannot take this regex as it is meant, or "" when both read it the same."""
    for pattern, what in _RE2_ONLY:
        if pattern.search(regex):
            return f"it uses {what}, which RE2 reads but Python's re does not, so it is not evaluated here"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = P.parse(regex, re.ASCII)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"it is not a valid regular expression ({exc})"
    found = _refused(list(parsed))
    if found:
        return f"it uses {found}, which RE2 refuses: Envoy rejects the route"
    return ""


def _refused(items: list) -> str:
    for op, av in items:
        if op in _RE2_REFUSES:
            return _RE2_REFUSES[op]
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            if lo > RE2_MAX_REPEAT or (hi is not C.MAXREPEAT and hi > RE2_MAX_REPEAT):
                return f"a repeat count above {RE2_MAX_REPEAT}"
            if found := _refused(list(sub)):
                return found
        elif op is C.SUBPATTERN:
            if found := _refused(list(av[3])):
                return found
        elif op is C.BRANCH:
            for branch in av[1]:
                if found := _refused(list(branch)):
                    return found
    return ""


def _ignorecase(items: list) -> bool:
    for op, av in items:
        if op is C.SUBPATTERN and (av[1] & C.SRE_FLAG_IGNORECASE or _ignorecase(list(av[3]))):
            return True
        if op is C.BRANCH and any(_ignorecase(list(b)) for b in av[1]):
            return True
        if op in (C.MAX_REPEAT, C.MIN_REPEAT) and _ignorecase(list(av[2])):
            return True
    return False


@lru_cache(maxsize=4096)
def parse(regex: str) -> Parsed:
    """The regex's top-level sequence without the anchors at its ends (ValueError when `re2_problem` finds one)."""
    if problem := re2_problem(regex):
        raise ValueError(problem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = P.parse(regex, re.ASCII)
    items = list(parsed)
    while items and items[0] in ((C.AT, C.AT_BEGINNING), (C.AT, C.AT_BEGINNING_STRING)):
        items = items[1:]
    while items and items[-1] in ((C.AT, C.AT_END), (C.AT, C.AT_END_STRING)):
        items = items[:-1]
    icase = bool(parsed.state.flags & C.SRE_FLAG_IGNORECASE) or _ignorecase(items)
    return Parsed(tuple(items), icase)


def _dots(item: tuple, minimum: int) -> bool:
    """`.*` (minimum 0) or `.+` (minimum 1)."""
    op, av = item
    return (
        op in (C.MAX_REPEAT, C.MIN_REPEAT)
        and av[0] == minimum
        and av[1] is C.MAXREPEAT
        and list(av[2]) == [(C.ANY, None)]
    )


def _alternatives(items: tuple) -> list[tuple]:
    """`a|b` (or `(a|b)`) as its branches; anything else as itself."""
    if len(items) == 1:
        op, av = items[0]
        if op is C.BRANCH:
            return [tuple(b) for b in av[1]]
        if op is C.SUBPATTERN and not av[1] and not av[2]:
            inner = tuple(av[3])
            if len(inner) == 1 and inner[0][0] is C.BRANCH:
                return [tuple(b) for b in inner[0][1][1]]
    return [items]


# ---------------------------------------------------------------------------------------------------------------
# Finite languages and samples


def _in_class(members: list, ch: str) -> bool:
    code, negate, found = ord(ch), False, False
    for op, av in members:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            found = found or av == code
        elif op is C.RANGE:
            found = found or av[0] <= code <= av[1]
        elif op is C.CATEGORY:
            found = found or _category(av, ch)
    return found != negate


def _category(category: object, ch: str) -> bool:
    tests = {
        C.CATEGORY_DIGIT: ch.isascii() and ch.isdigit(),
        C.CATEGORY_NOT_DIGIT: not (ch.isascii() and ch.isdigit()),
        C.CATEGORY_WORD: ch.isascii() and (ch.isalnum() or ch == "_"),
        C.CATEGORY_NOT_WORD: not (ch.isascii() and (ch.isalnum() or ch == "_")),
        C.CATEGORY_SPACE: ch in " \t\n\r\f\v",
        C.CATEGORY_NOT_SPACE: ch not in " \t\n\r\f\v",
    }
    return tests.get(category, False)


def _finite(items: tuple | list, limit: int = FINITE_LIMIT) -> list[str] | None:
    """Every string the sequence matches, when there are at most `limit` (else None)."""
    out = [""]
    for op, av in items:
        options = _finite_item(op, av, limit)
        if options is None:
            return None
        out = [a + b for a in out for b in options]
        if len(out) > limit:
            return None
    return list(dict.fromkeys(out))


def _finite_item(op: object, av: object, limit: int) -> list[str] | None:
    if op is C.LITERAL:
        return [chr(av)]  # type: ignore[arg-type]
    if op is C.IN:
        members = list(av)  # type: ignore[call-overload]
        if any(o in (C.NEGATE, C.CATEGORY) for o, _ in members):
            return None
        chars: list[str] = []
        for o, a in members:
            if o is C.LITERAL:
                chars.append(chr(a))
            elif o is C.RANGE:
                if a[1] - a[0] + 1 > limit:
                    return None
                chars += [chr(c) for c in range(a[0], a[1] + 1)]
        return list(dict.fromkeys(chars))
    if op is C.SUBPATTERN:
        return _finite(av[3], limit)  # type: ignore[index]
    if op is C.BRANCH:
        out: list[str] = []
        for branch in av[1]:  # type: ignore[index]
            found = _finite(branch, limit)
            if found is None:
                return None
            out += found
        return list(dict.fromkeys(out)) if len(out) <= limit else None
    if op in (C.MAX_REPEAT, C.MIN_REPEAT):
        lo, hi, sub = av  # type: ignore[misc]
        if hi is C.MAXREPEAT or hi > 8:
            return None
        options = _finite(sub, limit)
        if options is None:
            return None
        out = []
        for count in range(lo, hi + 1):
            strings = [""]
            for _ in range(count):
                strings = [a + b for a in strings for b in options]
                if len(strings) > limit:
                    return None
            out += strings
        return list(dict.fromkeys(out)) if len(out) <= limit else None
    return None


@dataclass(frozen=True)
class _Mode:
    fill: str  # what `.` becomes
    extra: bool  # repeats one more than their minimum
    last: bool  # the last branch and class member instead of the first
    star: str | None = None  # what `.*` becomes, when not `fill` repeated


_MODES = {
    PATH: (_Mode("x", False, False), _Mode("/", True, False), _Mode("x", True, False), _Mode("x", True, True)),
    HEADER: (_Mode("x", False, False), _Mode("x", True, False), _Mode("x", True, True), _Mode("/", True, False)),
}


def _sample(items: tuple | list, mode: _Mode) -> str:
    out = []
    for op, av in items:
        out.append(_sample_item(op, av, mode))
    return "".join(out)


def _sample_item(op: object, av: object, mode: _Mode) -> str:
    if op is C.LITERAL:
        return chr(av)  # type: ignore[arg-type]
    if op is C.NOT_LITERAL:
        return next(ch for ch in _SAMPLE_CHARS if ord(ch) != av)
    if op is C.ANY:
        return mode.fill
    if op is C.IN:
        members = list(av)  # type: ignore[call-overload]
        candidates = list(_SAMPLE_CHARS)
        for o, a in members:
            if o is C.LITERAL:
                candidates.insert(0, chr(a))
            elif o is C.RANGE:
                candidates.insert(0, chr(a[0]))
        fits = [ch for ch in dict.fromkeys(candidates) if _in_class(members, ch)]
        if not fits:
            return "x"
        return fits[-1] if mode.last else fits[0]
    if op is C.SUBPATTERN:
        return _sample(av[3], mode)  # type: ignore[index]
    if op is C.BRANCH:
        branches = av[1]  # type: ignore[index]
        return _sample(branches[-1] if mode.last else branches[0], mode)
    if op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
        if mode.star is not None and _dots((op, av), 0):
            return mode.star
        lo, hi, sub = av  # type: ignore[misc]
        count = lo + 1 if mode.extra and (hi is C.MAXREPEAT or hi > lo) else lo
        return _sample(sub, mode) * count
    if op is C.CATEGORY:
        return {C.CATEGORY_DIGIT: "0", C.CATEGORY_SPACE: " "}.get(av, "a")
    return ""  # anchors, boundaries


def _as_path(value: str, regex: str) -> str | None:
    """A request path starts with `/`: the value itself, or `/` + value, when the regex still matches it."""
    for candidate in (value, "/" + value):
        if candidate.startswith("/") and full_match(regex, candidate):
            return candidate
    return None


@lru_cache(maxsize=4096)
def samples(regex: str, kind: str = PATH) -> tuple[str, ...]:
    """A few values the regex matches (paths start with `/`), deterministic; () when it cannot be read."""
    if kind == PATH and regex == "":
        regex = ".*"
    try:
        parsed = parse(regex)
    except ValueError:
        return ()
    found: list[str] = []
    for alternative in _alternatives(parsed.items):
        for mode in _MODES[kind]:
            value = _sample(alternative, mode)
            if parsed.ignorecase:
                value = value.swapcase() if mode.last else value
            if kind == PATH:
                path = _as_path(value, regex)
                if path is None and value and not value.startswith("/"):
                    path = _as_path(value.lstrip("x"), regex)
                if path is not None:
                    found.append(path)
            elif full_match(regex, value):
                found.append(value)
    return tuple(dict.fromkeys(found))[:8]


@lru_cache(maxsize=4096)
def outside(regex: str, kind: str = PATH) -> tuple[str, ...]:
    """Values just outside the regex: its samples with a character added, removed or changed (paths start with /)."""
    if kind == PATH and regex == "":
        regex = ".*"
    found: list[str] = []
    for value in samples(regex, kind)[:3]:
        candidates = [value + "x", value[:-1], value + "/", "/x" + value[1:] if value.startswith("/") else "x" + value]
        if value:
            last = value[-1]
            candidates.append(value[:-1] + ("y" if last != "y" else "z"))
        for candidate in candidates:
            if kind == PATH and not candidate.startswith("/"):
                continue
            if compiled(regex) is not None and not full_match(regex, candidate):
                found.append(candidate)
    if kind == HEADER and not full_match(regex, ""):
        found.append("")
    return tuple(dict.fromkeys(found))[:6]


# ---------------------------------------------------------------------------------------------------------------
# Translation


@dataclass(frozen=True)
class Translation:
    """How one regex becomes Istio string forms."""

    regex: str
    kind: str  # path | header
    values: tuple[str, ...] = ()  # Istio forms, any of which matches; with `any` nothing constrains
    not_values: tuple[str, ...] = ()  # forms that must not match (notPaths / notValues)
    any: bool = False  # every value matches: omit the field (paths) or use presence (headers)
    level: str = EXACT
    reason: str = ""  # one sentence
    example: str | None = None  # for narrower/broader: a value the two meshes treat differently
    alternative: str = ""  # the form in the other direction, for a person to choose instead
    matches_nothing: bool = False  # nothing to generate: the route cannot match (or is manual and left out)
    notes: tuple[str, ...] = field(default=(), compare=False)

    def istio_matches(self, value: str | None) -> bool:
        if self.matches_nothing:
            return False
        if self.any:
            return value is not None
        return any(istio_match(v, value) for v in self.values) and not any(
            istio_match(v, value) for v in self.not_values
        )

    @property
    def forms_text(self) -> str:
        if self.matches_nothing:
            return "nothing"
        if self.any:
            return "any"
        text = ", ".join(self.values)
        return text + (f" except {', '.join(self.not_values)}" if self.not_values else "")


@dataclass
class _Part:
    values: list[str]
    level: str = EXACT
    not_values: list[str] = field(default_factory=list)
    any: bool = False
    alternative: str = ""


def _has_star(values: list[str]) -> bool:
    return any("*" in v for v in values)


def _alternative(items: tuple, kind: str, icase: bool) -> _Part:
    n = len(items)
    if n == 1 and (_dots(items[0], 0) or _dots(items[0], 1)):
        if kind == PATH:
            return _Part([], any=True)  # a request path is never empty
        if _dots(items[0], 1):
            return _Part(["*"])
        return _Part(["*"], level=NARROWER)  # `.*` also matches an empty header value, Istio's `*` does not
    if not icase:
        finite = _finite(items)
        if finite is not None and not _has_star(finite):
            return _Part(finite)
        if n > 1 and _dots(items[-1], 0) and not _dots(items[0], 0):
            head = _finite(items[:-1])
            if head is not None and "" not in head and not _has_star(head):
                return _Part([h + "*" for h in head])
        if n > 1 and _dots(items[0], 0) and not _dots(items[-1], 0):
            tail = _finite(items[1:])
            if tail is not None and "" not in tail and not _has_star(tail):
                return _Part(["*" + t for t in tail])
        if n > 1 and _dots(items[-1], 1):
            head = _finite(items[:-1])
            if head is not None and len(head) == 1 and head[0] and "*" not in head[0]:
                return _Part([head[0] + "*"], not_values=[head[0]])
        if n > 1 and _dots(items[0], 1):
            tail = _finite(items[1:])
            if tail is not None and len(tail) == 1 and tail[0] and "*" not in tail[0]:
                return _Part(["*" + tail[0]], not_values=[tail[0]])
    return _approximate(items, kind, icase)


def _literal_run(items: tuple | list) -> str:
    out = []
    for op, av in items:
        if op is not C.LITERAL:
            break
        out.append(chr(av))
    return "".join(out)


_STAR = "\x00"


def _fill_stars(value: str) -> str:
    """A `.*` inside a path becomes one path separator, or `x` where a separator is already beside it."""
    out = []
    for i, ch in enumerate(value):
        if ch != _STAR:
            out.append(ch)
            continue
        before = out[-1] if out else ""
        after = value[i + 1] if i + 1 < len(value) else ""
        out.append("x" if "/" in (before, after) else "/")
    return "".join(out)


def _approximate(items: tuple, kind: str, icase: bool) -> _Part:
    """The nearest narrower form: a `.*` between fixed parts becomes `/` for paths (one path separator) and nothing
    for header values; the broader alternative keeps only the literal prefix or suffix."""
    fill = _Mode("x", False, False, star=_STAR if kind == PATH else "")
    prefix = "" if icase else _literal_run(items)
    suffix = "" if icase else _literal_run(list(reversed(items)))[::-1]
    if prefix:
        broader = prefix + "*"
    elif suffix:
        broader = "*" + suffix
    else:
        broader = "any value" if kind == PATH else "*"
    n = len(items)
    if not icase and n > 1 and _dots(items[0], 0):
        narrower = "*" + _sample(items[1:], fill)
    elif not icase and n > 1 and _dots(items[-1], 0):
        narrower = _sample(items[:-1], fill) + "*"
    else:
        narrower = _sample(items, fill)
        if kind == PATH and not narrower.startswith("/"):
            narrower = "/" + narrower
    narrower = _fill_stars(narrower)
    if narrower in ("*", "**") or "*" in narrower.strip("*"):
        return _Part([], level=MANUAL, alternative=broader)
    return _Part([narrower], level=NARROWER, alternative=broader)


def _example(translation: Translation, regex: str, kind: str, level: str) -> str | None:
    """A value the two treat differently: OSM matches and Istio not (narrower), or the reverse (broader)."""
    if level in (NARROWER, MANUAL):
        for value in samples(regex, kind):
            if not translation.istio_matches(value):
                return value
    if level in (BROADER, MANUAL):
        for value in outside(regex, kind):
            if translation.istio_matches(value):
                return value
        for form in translation.values:
            probe = form.replace("*", "zz") if form != "*" else "zz"
            if kind == PATH and not probe.startswith("/"):
                probe = "/" + probe
            if translation.istio_matches(probe) and not full_match(regex, probe):
                return probe
    return None


@lru_cache(maxsize=4096)
def translate(regex: str, kind: str = PATH) -> Translation:
    """The Istio forms for an OSM regex (`kind` path or header), with the fidelity and its reason."""
    what = "pathRegex" if kind == PATH else "header regex"
    source = regex
    if kind == PATH and regex == "":
        regex = ".*"
    problem = re2_problem(regex)
    if problem:
        return Translation(
            source,
            kind,
            level=MANUAL,
            matches_nothing=True,
            reason=f"The {what} `{source}` cannot be translated: {problem}; nothing is generated for it.",
        )
    parsed = parse(regex)
    parts = [_alternative(alt, kind, parsed.ignorecase) for alt in _alternatives(parsed.items)]
    if any(p.any for p in parts):
        result = Translation(source, kind, any=True)  # paths only: one branch matching every path matches all
    else:
        values = tuple(dict.fromkeys(v for p in parts for v in p.values))
        not_values = tuple(dict.fromkeys(v for p in parts for v in p.not_values))
        level = worst([p.level for p in parts])
        if not_values and len(parts) > 1:
            level = worst([level, BROADER])
            not_values = ()
        if kind == HEADER and "" in values:
            values = tuple(v for v in values if v) or ("*",)
            level = worst([level, NARROWER])
        result = Translation(source, kind, values=values, not_values=not_values, level=level)
        if level == MANUAL and not values:
            result = Translation(source, kind, level=MANUAL, matches_nothing=True)
    alternative = "; ".join(p.alternative for p in parts if p.alternative)
    # Check the claim on sample values: a form that disagrees with the regex on any of them is not what it claims.
    inside, out = samples(regex, kind), outside(regex, kind)
    misses = [v for v in inside if not result.istio_matches(v)]
    extras = [v for v in out if result.istio_matches(v)]
    level = result.level
    if misses and level == EXACT:
        level = NARROWER
    if extras and level in (EXACT, NARROWER):
        level = worst([level, BROADER])
    if kind == PATH and not inside and not result.any:
        # The regex matches no request path (every path starts with /): OSM's route never matches.
        return Translation(
            source,
            kind,
            level=EXACT,
            matches_nothing=True,
            reason=f"The {what} `{source}` matches no request path (paths start with /), in OSM as in Istio.",
        )
    example = _example(result, regex, kind, level) if level != EXACT else None
    reason = _reason(source, what, result, level, alternative)
    return Translation(
        source,
        kind,
        values=result.values,
        not_values=result.not_values,
        any=result.any,
        level=level,
        reason=reason,
        example=example,
        alternative=alternative,
        matches_nothing=result.matches_nothing,
    )


def _reason(source: str, what: str, result: Translation, level: str, alternative: str) -> str:
    forms = result.forms_text
    if level == EXACT:
        if result.any:
            return f"The {what} `{source or '.*'}` matches every value: no constraint is needed."
        return f"The {what} `{source}` is the same set of values as Istio's `{forms}`."
    if level == NARROWER:
        other = f" (the broader alternative `{alternative}` would allow more than OSM)" if alternative else ""
        return (
            f"Istio has no regex: the {what} `{source}` becomes the nearest narrower form `{forms}`, which denies some "
            f"values OSM allows{other}."
        )
    if level == BROADER:
        return f"The {what} `{source}` becomes `{forms}`, which also matches values OSM refuses."
    if result.matches_nothing:
        return f"The {what} `{source}` has no Istio form close enough to generate; nothing is generated for it."
    return f"The {what} `{source}` becomes `{forms}`, which both refuses some values OSM allows and allows others."
