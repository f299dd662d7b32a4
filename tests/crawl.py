"""A page crawler for tests: every page and JSON endpoint a user can reach from the navigation, with its status.

    result = crawl_as(client, viewer)          # or None for an anonymous visitor
    assert result.failures() == [], result.report(result.failures())
    result.pages()                             # the HTML pages that answered 200, e.g. to open each in Chromium

It starts from the navigation's pages (apps.core.context_processors.NAV) and follows, on the same host and with GET
only, what a browser or our scripts would request from each answer:
- links (`<a href>`), and 3xx `Location`s;
- `hx-get` URLs, requested as htmx requests (`HX-Request`, `HX-Target`), so the partials are crawled too;
- `data-*-url` attributes (the charts' series URLs);
- GET forms, submitted with their default values, and once per option of a `<datalist>` an input names;
- URLs in JSON: in `json_script` blocks of a page and in JSON answers, any string under a key `url`, `…Url` or
  `…_url` (the graph's `dataUrl` and its nodes' `url`).

It is bounded (`max_requests` in all, `max_per_path` query variants of one path) and never follows `/static/` nor
another host. A view that raises is recorded as a 500 with the exception, and a JSON answer that does not parse with
the reason, so one crawl reports every failure.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from django.test import Client
from django.urls import reverse

from apps.core.context_processors import NAV

HOST = "testserver"  # what Django's test client serves
SKIP_PREFIXES = ("/static/",)
DATALIST_TRIES = 4  # submissions per GET form with a datalist: one per option, at most this many


@dataclass(frozen=True)
class Request:
    url: str  # path and query, no fragment
    htmx_target: str | None = None  # None: a plain request; otherwise an htmx request aimed at this element id
    found_on: str = ""  # the URL whose answer led here ("" for a start URL)

    @property
    def htmx(self) -> bool:
        return self.htmx_target is not None


@dataclass(frozen=True)
class Visit:
    request: Request
    status: int
    content_type: str = ""
    location: str = ""  # of a redirect
    error: str = ""  # the exception a view raised (recorded as a 500)

    @property
    def url(self) -> str:
        return self.request.url

    def __str__(self) -> str:
        htmx = " (htmx)" if self.request.htmx else ""
        where = f" from {self.request.found_on}" if self.request.found_on else ""
        error = f": {self.error}" if self.error else ""
        return f"{self.status} GET {self.url}{htmx}{where}{error}"


@dataclass
class CrawlResult:
    visits: list[Visit] = field(default_factory=list)
    skipped: int = 0  # requests left out by the bounds

    def failures(self) -> list[Visit]:
        """Server errors (a view that raised included) and JSON answers that do not parse."""
        return [v for v in self.visits if v.status >= 500 or v.error]

    def statuses(self) -> Counter[int]:
        return Counter(v.status for v in self.visits)

    def pages(self) -> list[str]:
        """URLs of the full HTML pages that answered 200, in the order first seen."""
        return [
            v.url
            for v in self.visits
            if v.status == 200 and not v.request.htmx and v.content_type.startswith("text/html")
        ]

    def json_endpoints(self) -> list[Visit]:
        return [v for v in self.visits if v.content_type.startswith("application/json")]

    def not_as(self, expected: Iterable[int], *, but: dict[str, Iterable[int]] | None = None) -> list[Visit]:
        """The visits whose status is not in `expected` (per path prefix in `but`: the longest prefix wins)."""
        wrong = []
        for v in self.visits:
            path = urlsplit(v.url).path
            prefixes = sorted((p for p in (but or {}) if path.startswith(p)), key=len, reverse=True)
            allowed = set((but or {})[prefixes[0]]) if prefixes else set(expected)
            if v.status not in allowed:
                wrong.append(v)
        return wrong

    def report(self, visits: Iterable[Visit] | None = None) -> str:
        chosen = list(self.visits if visits is None else visits)
        lines = [str(v) for v in chosen]
        lines.append(f"({len(self.visits)} requests, {self.skipped} left out by the bounds; {dict(self.statuses())})")
        return "\n".join(lines)


def start_urls() -> list[str]:
    return [reverse(name) for _label, name in NAV]


def crawl_as(client: Client, user: Any | None, **options: Any) -> CrawlResult:
    """Crawl as `user` (logged in with force_login), or as an anonymous visitor for None."""
    client.logout()
    if user is not None:
        client.force_login(user)
    return crawl(client, **options)


def crawl(
    client: Client,
    start: Iterable[str] | None = None,
    *,
    max_requests: int = 400,
    max_per_path: int = 8,
) -> CrawlResult:
    """Breadth first from `start` (default: the navigation's pages) as whoever `client` is logged in as."""
    result = CrawlResult()
    queue: deque[Request] = deque(Request(url) for url in (start_urls() if start is None else start))
    seen: set[tuple[str, str | None]] = set()
    variants: Counter[tuple[str, bool]] = Counter()
    while queue:
        request = queue.popleft()
        if (request.url, request.htmx_target) in seen:
            continue
        seen.add((request.url, request.htmx_target))
        path_key = (urlsplit(request.url).path, request.htmx)
        if len(result.visits) >= max_requests or variants[path_key] >= max_per_path:
            result.skipped += 1
            continue
        variants[path_key] += 1
        visit, body = _fetch(client, request)
        result.visits.append(visit)
        queue.extend(_next_requests(visit, body))
    return result


def _fetch(client: Client, request: Request) -> tuple[Visit, bytes]:
    headers = {"HX-Request": "true", "HX-Target": request.htmx_target} if request.htmx_target is not None else {}
    try:
        response = client.get(request.url, headers={k: v for k, v in headers.items() if v})
    except Exception as exc:  # the test client re-raises a view's exception: that is the 500 a user would get
        return Visit(request, 500, error=f"{type(exc).__name__}: {exc}"), b""
    body = b"" if getattr(response, "streaming", False) else response.content
    content_type = response.get("Content-Type", "")
    error = ""
    if content_type.startswith("application/json") and body:
        try:
            json.loads(body)
        except ValueError as exc:
            error, body = f"the answer is not JSON: {exc}", b""
    location = response.get("Location", "") if 300 <= response.status_code < 400 else ""
    return Visit(request, response.status_code, content_type=content_type, location=location, error=error), body


def _next_requests(visit: Visit, body: bytes) -> Iterator[Request]:
    here = visit.url
    if visit.location:
        yield from _same_host(here, [(visit.location, None)])
    if visit.status >= 400 or not body:
        return
    if visit.content_type.startswith("application/json"):
        yield from _same_host(here, [(u, None) for u in json_urls(json.loads(body))])  # _fetch parsed it once
    elif visit.content_type.startswith("text/html"):
        parser = _LinkParser()
        parser.feed(body.decode("utf-8", "replace"))
        parser.close()
        yield from _same_host(here, parser.found(here))


def _same_host(here: str, found: Iterable[tuple[str, str | None]]) -> Iterator[Request]:
    base = f"http://{HOST}{here}"
    for href, target in found:
        href = href.strip()
        if not href or href.startswith("#"):
            continue
        parts = urlsplit(urljoin(base, href))
        if parts.scheme not in ("http", "https") or parts.netloc != HOST:
            continue
        if parts.path.startswith(SKIP_PREFIXES):
            continue
        yield Request(parts.path + (f"?{parts.query}" if parts.query else ""), htmx_target=target, found_on=here)


def json_urls(value: Any) -> Iterator[str]:
    """Strings under a key `url`, `…Url` or `…_url` that are paths on this host, anywhere in `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and _is_url_key(str(key)):
                if item.startswith("/") and not item.startswith("//"):
                    yield item
            else:
                yield from json_urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_urls(item)


def _is_url_key(key: str) -> bool:
    return key == "url" or key.endswith(("Url", "_url"))


@dataclass
class _Form:
    action: str | None
    fields: list[tuple[str, str]] = field(default_factory=list)
    datalist_inputs: list[tuple[str, str]] = field(default_factory=list)  # (input name, datalist id)
    htmx_target: str | None = None


@dataclass
class _Select:
    name: str
    multiple: bool
    options: list[tuple[str, bool]] = field(default_factory=list)  # (value, selected)


class _LinkParser(HTMLParser):
    """What a page would make a browser or our scripts request (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str | None]] = []
        self.forms: list[_Form] = []
        self.datalists: dict[str, list[str]] = {}
        self._form: _Form | None = None
        self._select: _Select | None = None
        self._option: list[str] | None = None  # the text of an option without a value attribute
        self._option_selected = False
        self._datalist: str | None = None
        self._json: list[str] | None = None
        self.json_blocks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("a", "area") and "href" in a:
            self.links.append((a["href"], None))
        if "hx-get" in a and tag != "form":
            self.links.append((a["hx-get"], _htmx_target(a)))
        for key, value in a.items():
            if key.startswith("data-") and key.endswith("url") and value:
                self.links.append((value, None))
        if tag == "form" and a.get("method", "get").lower() == "get":
            self._form = _Form(action=a.get("action"), htmx_target=_htmx_target(a) if "hx-get" in a else None)
            self.forms.append(self._form)
        elif tag == "form":
            self._form = None
        elif tag == "input" and self._form is not None and a.get("name") and "disabled" not in a:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self._form.fields.append((a["name"], a.get("value", "on" if kind in ("checkbox", "radio") else "")))
            if a.get("list"):
                self._form.datalist_inputs.append((a["name"], a["list"]))
        elif tag == "textarea" and self._form is not None and a.get("name"):
            self._form.fields.append((a["name"], ""))
        elif tag == "select" and a.get("name") and "disabled" not in a:
            self._select = _Select(a["name"], "multiple" in a)
        elif tag == "option":
            selected = "selected" in a
            if self._datalist is not None:
                self.datalists[self._datalist].append(a.get("value", ""))
            elif self._select is not None:
                if "value" in a:
                    self._select.options.append((a["value"], selected))
                else:
                    self._option, self._option_selected = [], selected
        elif tag == "datalist" and a.get("id"):
            self._datalist = a["id"]
            self.datalists.setdefault(self._datalist, [])
        elif tag == "script" and a.get("type") == "application/json":
            self._json = []

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option.append(data)
        if self._json is not None:
            self._json.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._option is not None and self._select is not None:
            self._select.options.append(("".join(self._option).strip(), self._option_selected))
            self._option = None
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._select.options if selected]
            if not chosen and not self._select.multiple and self._select.options:
                chosen = [self._select.options[0][0]]
            if self._form is not None:
                self._form.fields += [(self._select.name, v) for v in chosen]
            self._select = None
        elif tag == "datalist":
            self._datalist = None
        elif tag == "form":
            self._form = None
        elif tag == "script" and self._json is not None:
            self.json_blocks.append("".join(self._json))
            self._json = None

    def found(self, here: str) -> list[tuple[str, str | None]]:
        found = list(self.links)
        for form in self.forms:
            action = form.action or here.split("?", 1)[0]
            for fields in self._submissions(form):
                url = f"{action.split('?', 1)[0]}?{urlencode(fields)}"
                found.append((url, None))
                if form.htmx_target is not None:  # what htmx sends for the same submission
                    found.append((url, form.htmx_target))
        for block in self.json_blocks:
            try:
                found += [(u, None) for u in json_urls(json.loads(block))]
            except ValueError:
                continue
        return found

    def _submissions(self, form: _Form) -> Iterator[list[tuple[str, str]]]:
        yield form.fields
        lists = [(name, self.datalists.get(list_id, [])) for name, list_id in form.datalist_inputs]
        for i in range(min(DATALIST_TRIES, max((len(options) for _n, options in lists), default=0))):
            # Input k takes option i + k of its list, so two inputs on one list pair different options.
            chosen = {name: options[(i + k) % len(options)] for k, (name, options) in enumerate(lists) if options}
            yield [(name, chosen.get(name, value)) for name, value in form.fields]


def _htmx_target(attrs: dict[str, str]) -> str:
    """The id htmx would send as HX-Target: the `hx-target` selector's id, else the element's own id."""
    target = attrs.get("hx-target", "")
    if target.startswith("#"):
        return target[1:]
    return attrs.get("id", "")
